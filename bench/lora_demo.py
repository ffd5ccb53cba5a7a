"""The LoRA demonstration: teach the embedded model a shape its training never had (a star) from 40
images, then measure the new concept and the old categories before and after, with the evaluator.

    python -m bench.lora_demo [--steps 300] [--out runs/lora-star] [--per-category 50] [--skip-training]

Star accuracy: "single object" judging (exactly one object, the right colour, shape star) on prompts in
the held-out caption templates, 8 colours x --star-seeds seeds. Old categories: the held-out combinations
evaluation set, base model against base + LoRA, same prompts and seeds. Each change comes with its 95%
interval: the same prompt and seed is judged with and without the LoRA, so the interval is that of the
mean of paired differences (-1, 0 or +1 per prompt), mean +- 1.96 sd / sqrt(n).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np

from pipeline import Wordbrush
from pipeline.worlds.shapes import judge as evaluate
from pipeline.worlds.shapes import scenes as world
from pipeline.worlds.shapes.scenes import write_star_demo
from train.adapters import LORA_FILE
from train.lora import PRIOR_WEIGHT, train_lora


class WithLora:
    """`pipe` with each of its three calls carrying `lora` ("file.safetensors[:scale]")."""

    def __init__(self, pipe, lora: str | None):
        self.pipe, self.lora = pipe, lora

    def __getattr__(self, name):
        attr = getattr(self.pipe, name)
        return (
            functools.partial(attr, lora=self.lora) if name in ("text_to_image", "style_transfer", "inpaint") else attr
        )


def star_items(n_seeds: int, *, seed: int = 99) -> list[evaluate.EvalItem]:
    rng = random.Random(seed)
    items = []
    for color in world.COLORS:
        for _ in range(n_seeds):
            scene = world.Scene("single", (world.Obj(color, "star"),), "flat")
            prompt = world.caption(scene, rng, template_split="heldout")
            items.append(evaluate.EvalItem("single_object", scene, prompt, rng.getrandbits(31)))
    return items


def passes(wb: Wordbrush, items: list[evaluate.EvalItem]) -> list[bool]:
    """The evaluator's verdict on each item's image."""
    images = []
    for i in range(0, len(items), 16):
        chunk = items[i : i + 16]
        images += wb.text_to_image([it.prompt for it in chunk], seed=[it.seed for it in chunk]).images
    return [evaluate.judge(it, im) for it, im in zip(items, images)]


def paired_change(before: list[bool], after: list[bool]) -> tuple[float, float]:
    """Mean of after - before over the same prompts, and the half-width of its 95% interval."""
    d = np.array(after, float) - np.array(before, float)
    return float(d.mean()), float(1.96 * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="shapes")
    p.add_argument("--out", default="runs/lora-star")
    p.add_argument("--data", default="data/stars")
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--targets", default="attention", help="train/lora.py TARGETS")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--prior-weight", type=float, default=PRIOR_WEIGHT)
    p.add_argument("--prior-data", choices=["world", "base"], default="world")
    p.add_argument("--per-category", type=int, default=50)
    p.add_argument("--star-seeds", type=int, default=10)
    p.add_argument("--results", default="bench/results/lora_demo.md")
    p.add_argument("--seed", type=int, default=0, help="the LoRA training's seed (a second run of a recipe)")
    p.add_argument("--skip-training", action="store_true", help="measure the LoRA already in --out")
    args = p.parse_args()

    if args.skip_training:  # describe the LoRA by its own record, not by this command's flags
        lora = Path(args.out) / "model" / LORA_FILE
        meta = json.loads(lora.with_name("lora.json").read_text())
        args.rank, args.targets, args.steps = meta["rank"], meta["targets"], meta["step"]
        args.prior_weight, args.prior_data = meta["prior_weight"], meta["prior_data"]
        trained = f"trained in {meta['train_minutes']} min ({args.out}, measured here with --skip-training)"
    else:
        data = write_star_demo(Path(args.data), n=args.images)
        shutil.rmtree(args.out, ignore_errors=True)  # a fresh run: the time below is the whole training
        t0 = time.time()
        lora = train_lora(
            model=args.model,
            data=data,
            out=args.out,
            rank=args.rank,
            targets=args.targets,
            steps=args.steps,
            lr=args.lr,
            mixed_precision="bf16",
            prior_weight=args.prior_weight,
            prior_data=args.prior_data,
            validation_prompts=["a red star", "a blue star", "a green star", "a yellow star"],
            seed=args.seed,
        )
        trained = f"trained in {(time.time() - t0) / 60:.1f} min on this machine's CPU (bf16 autocast)"
        print(f"{lora}: {trained}", flush=True)

    wb = Wordbrush.load(args.model, device="cpu")
    stars, old = star_items(args.star_seeds), evaluate.eval_set("combos", per_category=args.per_category)
    items = stars + old
    before = passes(wb, items)
    after = passes(WithLora(wb, str(lora)), items)
    n = len(stars)
    cats = {"star": (before[:n], after[:n])}
    b_old, a_old = evaluate.by_category(old, before[n:]), evaluate.by_category(old, after[n:])
    cats |= {c: (b_old[c], a_old[c]) for c in evaluate.CATEGORIES}
    rate_b, rate_a = evaluate.pass_rates(b_old), evaluate.pass_rates(a_old)
    rate_b["star"], rate_a["star"] = float(np.mean(before[:n])), float(np.mean(after[:n]))
    change = {c: paired_change(b, a) for c, (b, a) in cats.items()}
    lines = [
        f"LoRA rank {args.rank} on {args.targets} layers, {args.steps} steps x batch 16 on {args.images} star "
        f"images, prior preservation on {args.prior_data} images, weight {args.prior_weight}, "
        f"training seed {args.seed}, {trained}; "
        f"evaluator on {len(stars)} star prompts (held-out templates) and {args.per_category} held-out "
        f"combinations per old category. Change: mean paired difference, +- its 95% interval.",
        "",
        "| category | base | base + star LoRA | change |",
        "|---|---:|---:|---:|",
        *[
            f"| {c} | {rate_b[c]:.3f} | {rate_a[c]:.3f} | {change[c][0]:+.3f} +- {change[c][1]:.3f} |"
            for c in ["star", *evaluate.CATEGORIES]
        ],
        f"| overall | {rate_b['overall']:.3f} | {rate_a['overall']:.3f} | "
        f"{rate_a['overall'] - rate_b['overall']:+.3f} |",
    ]
    worst = min(evaluate.CATEGORIES, key=lambda c: change[c][0])
    lines += [
        "",
        f"Largest drop on an old category: {change[worst][0]:+.3f} +- {change[worst][1]:.3f} ({worst}).",
    ]
    print("\n".join(lines))
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
