"""Diffusion text-to-image latency on this machine, ours against the obvious alternatives, in one run.

    python -m bench.diffusion_latency [--model shapes] [--steps 12] [--repeats 5]

Rows: batch 1 (one request), batch 16 (16 prompts in one call), the same 16 served one by one, a
plain loop that runs the conditional and unconditional passes separately (as a first implementation
of classifier-free guidance would), the same calls with attention by PyTorch's fused SDPA kernel (as
diffusers' own processor computes it; ours multiplies explicitly for narrow heads, `layout.attend`), and
in fp32 (the default is bf16 autocast on CPUs that compute bf16 natively).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pipeline import Wordbrush, diffusion, layout

PROMPTS = [
    "a red circle above a blue square",
    "three green triangles",
    "a striped yellow square to the left of a purple circle",
    "an outlined white triangle",
] * 4


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def against_sdpa(fn, repeats: int) -> tuple[float, float]:
    """Median seconds of fn with our attention and with every layer on PyTorch's SDPA kernel, the two taking
    turns call by call (so the machine's drift hits both alike)."""
    narrow = layout.NARROW_HEAD
    times = {narrow: [], 0: []}
    fn()  # warm-up
    for _ in range(repeats):
        for width in (narrow, 0):
            layout.NARROW_HEAD = width  # 0: no head is narrow enough, SDPA everywhere
            t0 = time.perf_counter()
            fn()
            times[width].append(time.perf_counter() - t0)
    layout.NARROW_HEAD = narrow
    return statistics.median(times[narrow]), statistics.median(times[0])


def plain_loop(wb: Wordbrush, prompt: str, steps: int, guidance: float) -> torch.Tensor:
    """Unbatched guidance: two UNet calls per step."""
    gen = wb.generator
    cond, uncond = wb.encoder.encode([prompt]), wb.encoder.encode([""])
    sched = diffusion.sampling_scheduler(gen.cfg)
    sched.set_timesteps(steps)
    x = diffusion.seeded_noise([0], (3, gen.resolution, gen.resolution), gen.unet.device)
    with torch.inference_mode():
        for t in sched.timesteps:
            tt, x_in = t.expand(1), diffusion.unet_inputs(gen.unet, x)
            v_c = gen.unet(x_in, tt, cond.states, class_labels=cond.pooled, encoder_attention_mask=cond.mask).sample
            v_u = gen.unet(
                x_in, tt, uncond.states, class_labels=uncond.pooled, encoder_attention_mask=uncond.mask
            ).sample
            x = sched.step(v_u + guidance * (v_c - v_u), t, x).prev_sample
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    wb = Wordbrush.load(args.model, device="cpu")
    steps = args.steps or wb.generator.default_steps
    g = wb.generator.default_guidance
    n = len(PROMPTS)
    b1 = timed(lambda: wb.text_to_image(PROMPTS[0], seed=0, steps=steps, guidance=g), args.repeats)
    b1_free = timed(lambda: wb.text_to_image(PROMPTS[0], seed=0, steps=steps, guidance=g, layout=False), args.repeats)
    b16 = timed(lambda: wb.text_to_image(PROMPTS, seed=list(range(n)), steps=steps, guidance=g), args.repeats) / n
    seq = timed(lambda: [wb.text_to_image(p, seed=i, steps=steps, guidance=g) for i, p in enumerate(PROMPTS)], 1) / n
    plain = timed(lambda: plain_loop(wb, PROMPTS[0], steps, g), args.repeats)
    one = lambda: wb.text_to_image(PROMPTS[0], seed=0, steps=steps, guidance=g)  # noqa: E731
    b1_ours, b1_sdpa = against_sdpa(one, 2 * args.repeats)
    b16_ours, b16_sdpa = (
        s / n
        for s in against_sdpa(
            lambda: wb.text_to_image(PROMPTS, seed=list(range(n)), steps=steps, guidance=g), args.repeats
        )
    )
    fp32 = Wordbrush.load(args.model, device="cpu", precision="fp32")
    b1_32 = timed(lambda: fp32.text_to_image(PROMPTS[0], seed=0, steps=steps, guidance=g), args.repeats)
    b16_32 = timed(lambda: fp32.text_to_image(PROMPTS, seed=list(range(n)), steps=steps, guidance=g), args.repeats) / n
    params = sum(p.numel() for p in wb.generator.unet.parameters()) / 1e6
    threads = torch.get_num_threads()
    print(f"model {args.model} ({params:.1f}M-param UNet), {steps} steps, guidance {g}, CPU, {threads} threads\n")
    print("| run | seconds per image | vs ours at batch 1 |")
    print("|---|---:|---:|")
    print(f"| ours, batch 1 (encode + layout plan + {steps} guided steps) | {b1:.3f} | 1.00x |")
    print(f"| ours, batch 1, layout stage off (`layout=False`) | {b1_free:.3f} | {b1_free / b1:.2f}x ours' time |")
    print(f"| plain loop, batch 1 (cond and uncond passes apart) | {plain:.3f} | {plain / b1:.2f}x slower |")
    print(f"| ours, batch 16 | {b16:.3f} | {b1 / b16:.2f}x faster |")
    print(f"| 16 requests one by one | {seq:.3f} | batch 16 is {seq / b16:.2f}x faster |")
    print(f"| ours in fp32 (--precision fp32), batch 1 | {b1_32:.3f} | {b1_32 / b1:.2f}x slower |")
    print(f"| ours in fp32, batch 16 | {b16_32:.3f} | |")
    print("\nAttention, side by side (calls taking turns):\n")
    print("| run | ours (explicit products for narrow heads) | PyTorch's SDPA kernel (diffusers' processor) | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| batch 1, seconds per image | {b1_ours:.3f} | {b1_sdpa:.3f} | ours {b1_sdpa / b1_ours:.2f}x faster |")
    print(f"| batch 16, seconds per image | {b16_ours:.3f} | {b16_sdpa:.3f} | ours {b16_sdpa / b16_ours:.2f}x faster |")
    print(f"\nprecision: {'bf16 autocast' if wb.generator.autocast is not None else 'fp32'} (auto)")


if __name__ == "__main__":
    main()
