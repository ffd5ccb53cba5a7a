"""The icons model's CPU latency against the obvious alternatives, in one run.

    python -m bench.icons_latency [--model icons] [--repeats 5]

Rows: batch 1 at the model's defaults (the bar: at most 0.5 s per image), the same without classifier-free
guidance (one UNet pass a step instead of two; guidance 3 for a model that samples unguided), batch 16 in
one call against the same 16 requests one by one, and what the layout stage itself costs (reading, planning,
encoding the things' names) against the whole call, and the model's GAN (one step) when it has one. Each
pair of rows takes turns call by call, so the machine's drift hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pipeline import Wordbrush
from pipeline.presets import available_generators
from pipeline.worlds.icons import ICONS
from pipeline.worlds.icons import layout as icons_layout

PROMPTS = list(ICONS.examples) * 4  # 16 prompts


def alternating(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, the functions taking turns (after one warm-up call each)."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="icons")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    wb = Wordbrush.load(args.model, device="cpu")
    steps, g, n = wb.default_steps, wb.default_guidance, len(PROMPTS)
    seeds = list(range(n))
    other = 1.0 if g != 1.0 else 3.0  # guided (two UNet passes a step) against unguided (one)
    calls = {
        "default": lambda: wb.text_to_image(PROMPTS[0], seed=0),
        "other": lambda: wb.text_to_image(PROMPTS[0], seed=0, guidance=other),
        "layout": lambda: icons_layout.layout_for(wb.encoder, [PROMPTS[0]], [0]),
    }
    if "gan" in available_generators(args.model):
        gan = wb.with_generator("gan")
        calls["gan"] = lambda: gan.text_to_image(PROMPTS[0], seed=0)
    one = alternating(calls, 2 * args.repeats)
    many = alternating(
        {
            "batch": lambda: wb.text_to_image(PROMPTS, seed=seeds),
            "one by one": lambda: [wb.text_to_image(p, seed=s) for p, s in zip(PROMPTS, seeds)],
        },
        max(1, args.repeats // 2),
    )
    params = sum(p.numel() for p in wb.generator.unet.parameters()) / 1e6
    print(
        f"model {args.model} ({params:.1f}M-param UNet), defaults {steps} steps, guidance {g}, "
        f"CPU, {torch.get_num_threads()} threads\n"
    )
    print("| run | seconds per image | ratio |")
    print("|---|---:|---:|")
    print(f"| batch 1, the model's defaults ({steps} steps, guidance {g}) | {one['default']:.3f} | 1.00x |")
    print(
        f"| batch 1, guidance {other:g} ({'one UNet pass' if other == 1 else 'two UNet passes'} a step) | "
        f"{one['other']:.3f} | {one['other'] / one['default']:.2f}x the default's time |"
    )
    print(
        f"| the layout stage alone (read, plan, encode, no map yet) | {one['layout']:.4f} | "
        f"{one['layout'] / one['default']:.1%} of the default's time |"
    )
    if "gan" in one:
        print(
            f"| batch 1, the GAN (one step) | {one['gan']:.4f} | diffusion {one['default'] / one['gan']:.0f}x slower |"
        )
    print(
        f"| batch 16 in one call | {many['batch'] / n:.3f} | "
        f"{one['default'] / (many['batch'] / n):.2f}x faster than batch 1 |"
    )
    print(
        f"| the same 16 one by one | {many['one by one'] / n:.3f} | "
        f"batch 16 is {many['one by one'] / many['batch']:.2f}x faster |"
    )


if __name__ == "__main__":
    main()
