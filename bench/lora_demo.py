"""The LoRA demonstration: teach the embedded model a shape its training never had (a star) from 40
images, then measure the new concept and the old categories before and after, with the evaluator.

    python bench/lora_demo.py [--steps 300] [--out runs/lora-star] [--per-category 50]

Star accuracy: "single object" judging (exactly one object, the right colour, shape star) on prompts in
the held-out caption templates, 8 colours x --star-seeds seeds. Old categories: the held-out combinations
evaluation set, base model against base + LoRA, same prompts and seeds.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import Wordbrush  # noqa: E402
from train import evaluate, world  # noqa: E402
from train.lora import train_lora, write_star_demo  # noqa: E402


def star_items(n_seeds: int, *, seed: int = 99) -> list[evaluate.EvalItem]:
    rng = random.Random(seed)
    items = []
    for color in world.COLORS:
        for _ in range(n_seeds):
            scene = world.Scene("single", (world.Obj(color, "star"),), "flat")
            prompt = world.caption(scene, rng, template_split="heldout")
            items.append(evaluate.EvalItem("single_object", scene, prompt, rng.getrandbits(31)))
    return items


def scores(wb: Wordbrush, items: list[evaluate.EvalItem]) -> dict[str, float]:
    images = []
    for i in range(0, len(items), 16):
        chunk = items[i : i + 16]
        images += wb.text_to_image([it.prompt for it in chunk], seed=[it.seed for it in chunk]).images
    return evaluate.score(items, images)


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
    p.add_argument("--prior-weight", type=float, default=1.0)
    p.add_argument("--prior-data", choices=["world", "base"], default="world")
    p.add_argument("--per-category", type=int, default=50)
    p.add_argument("--star-seeds", type=int, default=10)
    p.add_argument("--results", default="bench/results/lora_demo.md")
    args = p.parse_args()

    data = write_star_demo(Path(args.data), n=args.images)
    shutil.rmtree(args.out, ignore_errors=True)  # a fresh run: the time below is the whole training
    t0 = time.time()
    lora = train_lora(
        model=args.model, data=data, out=args.out, rank=args.rank, targets=args.targets, steps=args.steps, lr=args.lr,
        mixed_precision="bf16", prior_weight=args.prior_weight, prior_data=args.prior_data,
        validation_prompts=["a red star", "a blue star", "a green star", "a yellow star"],
    )  # fmt: skip
    minutes = (time.time() - t0) / 60
    print(f"trained {lora} in {minutes:.1f} min", flush=True)

    wb = Wordbrush.load(args.model, device="cpu")
    stars, old = star_items(args.star_seeds), evaluate.eval_set("combos", per_category=args.per_category)
    before = {"star": scores(wb, stars)["single_object"], **scores(wb, old)}
    wb.set_lora(str(lora))
    after = {"star": scores(wb, stars)["single_object"], **scores(wb, old)}
    rows = ["star", *evaluate.CATEGORIES, "overall"]
    lines = [
        f"LoRA rank {args.rank} on {args.targets} layers, {args.steps} steps x batch 16 on {args.images} star "
        f"images, prior preservation on {args.prior_data} images, "
        f"weight {args.prior_weight}, trained in "
        f"{minutes:.1f} min on this machine's CPU (bf16 autocast); evaluator on {len(stars)} star prompts "
        f"(held-out templates) and {args.per_category} held-out combinations per old category.",
        "",
        "| category | base | base + star LoRA | change |",
        "|---|---:|---:|---:|",
        *[f"| {r} | {before[r]:.3f} | {after[r]:.3f} | {after[r] - before[r]:+.3f} |" for r in rows],
    ]
    worst = min(after[c] - before[c] for c in evaluate.CATEGORIES)
    lines += ["", f"Largest drop on an old category: {worst:+.3f}."]
    print("\n".join(lines))
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
