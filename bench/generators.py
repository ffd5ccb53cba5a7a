"""The diffusion and GAN generators side by side, in one run: quality, speed and diversity.

    python -m bench.generators [--model shapes] [--per-category 50]

Quality: the evaluator on the same held-out-combination prompts and seeds. Speed: CPU seconds per image
at batch 1 and batch 64, prompt encoding included (a new prompt each call), and at batch 1 for a prompt
drawn again with new seeds (its states from the encoder's cache). Diversity: mean absolute pixel difference (0-255)
between images of the same prompt under different seeds; a collapsed generator scores near 0.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from pipeline import Wordbrush
from pipeline.worlds.shapes import judge as evaluate

DIVERSITY_PROMPTS = [
    "a red circle",
    "three green triangles",
    "a blue square above a yellow circle",
    "a striped white square",
]


def seconds_per_image(wb: Wordbrush, batch: int, repeats: int, *, cached: bool) -> float:
    """Median seconds per image over `repeats` calls (more when they take under 2 s together). cached: the
    prompt's states come from the encoder's cache (a prompt drawn again with new seeds); else the cache is
    emptied before every call (a new prompt each time)."""
    prompts = ["a red circle above a blue square"] * batch
    for _ in range(3):  # warm-up (oneDNN builds its kernels for these shapes on the first calls)
        wb.encoder.clear_cache()
        wb.text_to_image(prompts, seed=list(range(batch)))
    t0 = time.perf_counter()
    wb.text_to_image(prompts, seed=list(range(batch)))
    repeats = max(repeats, int(2.0 / (time.perf_counter() - t0)))  # at least ~2 s of calls: ms-scale timings are noisy
    times = []
    for r in range(repeats):
        if not cached:
            wb.encoder.clear_cache()
        t0 = time.perf_counter()
        wb.text_to_image(prompts, seed=[r * batch + i for i in range(batch)])
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / batch


def diversity(wb: Wordbrush, seeds: int = 8) -> float:
    scores = []
    for p in DIVERSITY_PROMPTS:
        images = np.stack(
            [np.asarray(im, np.float32) for im in wb.text_to_image([p] * seeds, seed=list(range(seeds))).images]
        )
        pairs = [np.abs(images[i] - images[j]).mean() for i in range(seeds) for j in range(i + 1, seeds)]
        scores.append(float(np.mean(pairs)))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--per-category", type=int, default=50)
    args = parser.parse_args()
    diffusion = Wordbrush.load(args.model, generator="diffusion", device="cpu")
    models = {"diffusion": diffusion, "gan": diffusion.with_generator("gan")}
    items = evaluate.eval_set("combos", per_category=args.per_category)
    results = {}
    for kind, wb in models.items():
        images = []
        for i in range(0, len(items), 64):
            chunk = items[i : i + 64]
            images += wb.text_to_image([it.prompt for it in chunk], seed=[it.seed for it in chunk]).images
        scores = evaluate.score(items, images)
        b1 = seconds_per_image(wb, 1, 10, cached=False)
        b1_cached = seconds_per_image(wb, 1, 10, cached=True)
        b64 = seconds_per_image(wb, 64, 3, cached=False)
        results[kind] = (scores, b1, b64, diversity(wb), b1_cached)
    gen = diffusion.generator
    print(
        f"model {args.model}; diffusion at {gen.default_steps} steps, guidance {gen.default_guidance}; "
        f"CPU, {torch.get_num_threads()} threads; {len(items)} held-out prompts\n"
    )
    print(evaluate.format_table({k: v[0] for k, v in results.items()}))
    d, g = results["diffusion"], results["gan"]
    print("\n| | diffusion | gan | gan vs diffusion |")
    print("|---|---:|---:|---:|")
    print(
        f"| overall score | {d[0]['overall']:.3f} | {g[0]['overall']:.3f} | {g[0]['overall'] - d[0]['overall']:+.3f} |"
    )
    print(f"| seconds per image, batch 1, new prompt | {d[1]:.4f} | {g[1]:.4f} | {d[1] / g[1]:.0f}x faster |")
    print(
        f"| seconds per image, batch 1, same prompt (encoder cache) | {d[4]:.4f} | {g[4]:.4f} | "
        f"{d[4] / g[4]:.0f}x faster |"
    )
    print(f"| seconds per image, batch 64 | {d[2]:.4f} | {g[2]:.4f} | {d[2] / g[2]:.0f}x faster |")
    print(f"| diversity (mean pixel distance between seeds) | {d[3]:.1f} | {g[3]:.1f} | |")


if __name__ == "__main__":
    main()
