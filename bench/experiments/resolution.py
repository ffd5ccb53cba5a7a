"""The native-resolution trade-off: what 48 px would cost against 32 px for the same UNet, in one run.

    python -m bench.experiments.resolution

Training images/s (bf16 autocast, batch 32) and sampling seconds per image (12 guided steps, batch 1).
"""

from __future__ import annotations

import dataclasses
import time

import torch

from pipeline import diffusion


def measure(resolution: int) -> tuple[float, float]:
    cfg = dataclasses.replace(diffusion.SIZES["small"], resolution=resolution)
    unet = diffusion.build_unet(cfg)
    opt = torch.optim.AdamW(unet.parameters(), 1e-4)
    b = 32
    x, t = torch.randn(b, 3, resolution, resolution), torch.randint(0, 1000, (b,))
    c, p, m = torch.randn(b, 20, 384), torch.randn(b, 384), torch.ones(b, 20)
    for i in range(4):
        if i == 1:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = unet(x, t, c, class_labels=p, encoder_attention_mask=m).sample
        out.float().square().mean().backward()
        opt.step()
        opt.zero_grad()
    train = 3 * b / (time.perf_counter() - t0)
    unet.eval()
    with torch.inference_mode():
        x2 = torch.randn(2, 3, resolution, resolution)
        unet(x2, t[:2], c[:2], class_labels=p[:2])
        t0 = time.perf_counter()
        for _ in range(12):
            unet(x2, t[:2], c[:2], class_labels=p[:2])
    return train, time.perf_counter() - t0


def main() -> None:
    rows = {r: measure(r) for r in (32, 48)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| native size | training images/s | seconds per image (12 guided steps, batch 1) |")
    print("|---|---:|---:|")
    for r, (train, sample) in rows.items():
        print(f"| {r} px | {train:.1f} | {sample:.3f} |")
    (t32, s32), (t48, s48) = rows[32], rows[48]
    print(f"\n48 px trains {t32 / t48:.2f}x slower and samples {s48 / s32:.2f}x slower than 32 px.")


if __name__ == "__main__":
    main()
