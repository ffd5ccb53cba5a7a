"""Our diffusers path against plain diffusers, side by side in one run, on an SD 1.5-architecture pipeline
with random weights at 512 px (the same work as the real checkpoint; no download needed).

    python -m bench.gpu_speed [--steps 25] [--out bench/results/gpu_speed.md]
    python -m bench.gpu_speed --tiny          # a 2-minute CPU check that the script itself works

plain:    StableDiffusionPipeline in fp16, as its docs load it, eager.
compiled: the same folder through pipeline.hub.HubPipeline.load(compile=True): bf16, SDPA,
          channels-last, fused QKV projections, torch.compile of the UNet (default mode).
eager:    HubPipeline the same way without torch.compile.
Reported: seconds per image at batch 1, images per second at batch 8, and model FLOP utilization (UNet,
text encoder and VAE decoder FLOPs counted by torch's FlopCounterMode) against the GPU's bf16 peak.
Rows are printed (and the table rewritten) as each finishes, so a time limit keeps what was measured;
a variant that fails is reported as such and the others still run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12}  # dense bf16 FLOP/s from the vendors' sheets


def build_sd15(folder: Path, *, tiny: bool) -> Path:
    """SD 1.5's UNet, VAE and CLIP text encoder shapes with random weights (tiny: a small stand-in)."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from scripts.clip_vocab import byte_clip_tokenizer_files

    vocab, merges = byte_clip_tokenizer_files(folder.parent / "vocab")
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    width = 16 if tiny else 768
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=2 if tiny else 12,
            num_attention_heads=2 if tiny else 12,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    blocks = (8, 16, 16, 16) if tiny else (320, 640, 1280, 1280)
    unet = UNet2DConditionModel(
        sample_size=8 if tiny else 64,
        cross_attention_dim=width,
        block_out_channels=blocks,
        layers_per_block=2,
        attention_head_dim=2 if tiny else 8,
        norm_num_groups=4 if tiny else 32,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 16, 16) if tiny else (128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=4 if tiny else 32,
        sample_size=64 if tiny else 512,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DPMSolverMultistepScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def flops_per_image(pipe, steps: int, device: str) -> float:
    """Model FLOPs for one image at guidance > 1: the text encoder on (prompt, empty prompt), the UNet at
    batch 2 once per step, the VAE decoder once."""
    from torch.utils.flop_counter import FlopCounterMode

    def count(fn) -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    r, dtype = pipe.unet.config.sample_size, pipe.unet.dtype
    ids = torch.zeros(2, 77, dtype=torch.long, device=device)
    states = pipe.text_encoder(ids)[0].to(dtype)
    latents = torch.randn(2, 4, r, r, device=device, dtype=dtype)
    text = count(lambda: pipe.text_encoder(ids))
    step = count(lambda: pipe.unet(latents, 10, encoder_hidden_states=states))
    decode = count(lambda: pipe.vae.decode(latents[:1].to(pipe.vae.dtype)))
    return text + step * steps + decode


def timed(fn, *, repeats: int, sync) -> float:
    fn()  # warm-up (and compilation)
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tiny", action="store_true", help="a small stand-in model, to check the script on a CPU")
    p.add_argument("--out", default=None, help="write the table to this markdown file")
    args = p.parse_args()
    from diffusers import StableDiffusionPipeline

    from pipeline.hub import HubPipeline

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    folder = build_sd15(Path(tempfile.mkdtemp()) / "sd15-random", tiny=args.tiny)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = next((v for k, v in BF16_PEAK.items() if k in name), None)

    plain = StableDiffusionPipeline.from_pretrained(
        folder, dtype=torch.float16 if device == "cuda" else torch.float32
    ).to(device)
    plain.set_progress_bar_config(disable=True)
    flops = flops_per_image(plain, args.steps, device)
    header = [
        f"SD 1.5 architecture, random weights, {'tiny stand-in' if args.tiny else '512 px'}, {args.steps} steps, "
        f"guidance 7.5, on {name}; {flops / 1e12:.2f} TFLOP per image.",
        "",
        "| pipeline | s/image, batch 1 | images/s, batch 8 | MFU at batch 8 (bf16 peak) | vs plain (batch 1, 8) |",
        "|---|---|---|---|---|",
    ]

    def ours(compile: bool):  # exactly what the app and the CLI load (fast path: pipeline/hub.py speed_up)
        wb = HubPipeline.load(str(folder), device=device, compile=compile and cuda)
        return lambda n: wb.text_to_image("a photo", steps=args.steps, guidance=7.5, num_images=n)

    def plain_run():
        return lambda n: plain(["a photo"] * n, num_inference_steps=args.steps)

    variants = [
        (f"plain diffusers ({'fp16' if cuda else 'fp32'}, eager)", plain_run),
        (f"Wordbrush ({'bf16, compiled' if cuda else 'fp32, eager'})", lambda: ours(compile=True)),
    ]
    if cuda:
        variants.append(("Wordbrush (bf16, eager)", lambda: ours(compile=False)))
    rows, base, table = [], None, "\n".join(header)
    for label, build in variants:
        try:
            run = build()
            b1 = timed(lambda run=run: run(1), repeats=args.repeats, sync=sync)
            b8 = timed(lambda run=run: run(8), repeats=max(1, args.repeats // 2), sync=sync)
        except Exception as err:  # noqa: BLE001 - a benchmark reports a failing variant and goes on
            print(f"{label}: failed: {err.__class__.__name__}: {err}", flush=True)
            rows.append(f"| {label} | failed: {err.__class__.__name__} | | | |")
            continue
        mfu = f"{flops * 8 / b8 / peak:.1%}" if peak else "n/a (no known peak)"
        print(f"{label}: {b1:.3f} s/image at batch 1, {8 / b8:.2f} images/s at batch 8, MFU {mfu}", flush=True)
        base = base or (b1, b8)  # speed-ups are against the first row (plain diffusers)
        rows.append(f"| {label} | {b1:.3f} | {8 / b8:.2f} | {mfu} | {base[0] / b1:.2f}x, {base[1] / b8:.2f}x |")
        table = "\n".join(header + rows)
        if args.out:
            Path(args.out).write_text(table + "\n")
        if device == "cuda":
            torch.cuda.empty_cache()
    print(table)


if __name__ == "__main__":
    main()
