"""The icons LoRA demonstration: teach the embedded icons model a kite (a thing its world never had) from 40
pictures drawn by code, then measure the kite and the old categories with and without the LoRA.

    python -m bench.icons_lora_demo [--steps 300] [--out runs/kite-lora] [--per-category 50] [--skip-training]

Kite: prompts in phrasings the demo's captions never used ("a big kite against a teal background", "a kite to the
left of a frog"), each judged by `thing_found` (train/icons_lora.py: a blob nearer the kite than any of the 151
icons). In the pair prompts the other icon must be found by the evaluator's classifier too. Old categories: the
held-out combinations evaluation set (pipeline/worlds/icons/judge.py), base against base + LoRA, same prompts and seeds,
with the 95% interval of the mean paired difference.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np

from bench.lora_demo import WithLora, paired_change
from pipeline import Wordbrush
from pipeline.worlds.icons import judge as icons_eval
from pipeline.worlds.icons import scenes as world
from pipeline.worlds.icons.scenes import kite_sprite, write_kite_demo
from train.adapters import LORA_FILE
from train.icons_lora import thing_found
from train.lora import PRIOR_WEIGHT, train_lora

PHRASINGS = ("{a} kite against a {bg} background", "{a} kite with a {bg} background", "{a} kite, {bg} background")


def kite_prompts(n: int, *, seed: int = 7) -> list[tuple[str, str | None]]:
    """n single-kite prompts and n kite-and-icon prompts: (prompt, the other icon or None)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        size = rng.choice(("a", "a small", "a big"))
        out.append((rng.choice(PHRASINGS).format(a=size, bg=rng.choice(list(world.BACKGROUNDS))), None))
    for _ in range(n):
        other = rng.choice(world.names())
        relation = rng.choice(("to the left of", "to the right of", "above", "below", "next to"))
        pair = [f"a kite {relation} {world.article(other)}", f"{world.article(other)} {relation} a kite"]
        out.append((rng.choice(pair), other))
    return out


def draw(wb, prompts: list[str], seeds: list[int]) -> list:
    images = []
    for i in range(0, len(prompts), 16):
        images += wb.text_to_image(prompts[i : i + 16], seed=seeds[i : i + 16]).images
    return images


def kite_passes(wb, prompts: list[tuple[str, str | None]]) -> list[bool]:
    sprite = kite_sprite()
    images = draw(wb, [p for p, _ in prompts], list(range(len(prompts))))
    out = []
    for (_, other), image in zip(prompts, images):
        ok = thing_found(image, sprite)
        if other is not None:
            ok = ok and other in [f.name for f in icons_eval.find_icons(image)[1]]
        out.append(ok)
    return out


def old_passes(wb, items: list[icons_eval.EvalItem]) -> list[bool]:
    images = draw(wb, [it.prompt for it in items], [it.seed for it in items])
    return [
        icons_eval.judge(it.scene, im)["background" if it.category == "background" else "icons"]
        for it, im in zip(items, images)
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="icons")
    p.add_argument("--out", default="runs/kite-lora")
    p.add_argument("--data", default="data/kite")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--prior-weight", type=float, default=PRIOR_WEIGHT)
    p.add_argument("--per-category", type=int, default=50)
    p.add_argument("--kite-prompts", type=int, default=40, help="single-kite prompts, and as many kite pairs")
    p.add_argument("--results", default="bench/results/icons-lora-demo.md")
    p.add_argument("--skip-training", action="store_true", help="measure the LoRA already in --out")
    args = p.parse_args()

    if args.skip_training:
        lora = Path(args.out) / "model" / LORA_FILE
        meta = json.loads(lora.with_name("lora.json").read_text())
        args.rank, args.steps, args.prior_weight = meta["rank"], meta["step"], meta["prior_weight"]
        trained = f"trained in {meta['train_minutes']} min ({args.out}, measured here with --skip-training)"
    else:
        data = write_kite_demo(Path(args.data))
        shutil.rmtree(args.out, ignore_errors=True)
        t0 = time.time()
        lora = train_lora(
            model=args.model,
            data=data,
            out=args.out,
            rank=args.rank,
            steps=args.steps,
            prior_weight=args.prior_weight,
            validation_prompts=["a kite", "a small kite"],
        )
        trained = f"trained in {(time.time() - t0) / 60:.1f} min on this machine's CPU"

    wb = Wordbrush.load(args.model, device="cpu")
    kites, old = kite_prompts(args.kite_prompts), icons_eval.eval_set("combos", per_category=args.per_category)
    n = args.kite_prompts
    k_before, k_after = kite_passes(wb, kites), kite_passes(WithLora(wb, str(lora)), kites)
    o_before, o_after = old_passes(wb, old), old_passes(WithLora(wb, str(lora)), old)
    rows = {"kite alone": (k_before[:n], k_after[:n]), "kite with an icon": (k_before[n:], k_after[n:])}
    for category in icons_eval.CATEGORIES:
        pick = [i for i, it in enumerate(old) if it.category == category]
        rows[category] = ([o_before[i] for i in pick], [o_after[i] for i in pick])
    lines = [
        f"LoRA rank {args.rank} on the UNet's convolutions plus the sketch painter, {args.steps} steps x batch 16 on "
        f"40 kite pictures, prior preservation on icons-world renders, weight {args.prior_weight}, {trained}. "
        f"Kite: {n} single-kite and {n} kite-and-icon prompts in phrasings the demo never used; old categories: "
        f"{args.per_category} held-out combinations each. Change: mean paired difference, +- its 95% interval.",
        "",
        "| category | base | base + kite LoRA | change |",
        "|---|---:|---:|---:|",
    ]
    for name, (before, after) in rows.items():
        change, half = paired_change(before, after)
        lines.append(f"| {name} | {np.mean(before):.3f} | {np.mean(after):.3f} | {change:+.3f} +- {half:.3f} |")
    print("\n".join(lines))
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
