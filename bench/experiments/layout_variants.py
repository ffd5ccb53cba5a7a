"""The layout stage (pipeline/layout.py) against the variants it was chosen from, on the same prompts.

    python -m bench.experiments.layout_variants [--per-category 100] [--variants off,shipped,other-box,sketch-0.7]

Variants, all with the same plans (boxes from each prompt's seed):
  off         the UNet alone (`layout=False`)
  shipped     each object's words hidden from every pixel outside its own box (the default)
  other-box   milder: each object's words hidden only from the pixels of the other object's box
  sketch-S    shipped, plus an SDEdit start (Meng et al., 2022): the plan painted as blurred colour blobs on a
              plain background, noised to strength S. Needs the model's palette; not shipped (README).

Scored by the evaluator on the held-out-combination items of the categories a plan can change.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import torch
from PIL import Image, ImageDraw, ImageFilter

from pipeline import Wordbrush, layout
from pipeline import images as imlib
from pipeline.images import to_pil
from pipeline.worlds.shapes import judge as evaluate
from pipeline.worlds.shapes import scenes as world

CATEGORIES = ("two_objects", "position", "color_attribution", "style")
SHIPPED_BIAS = layout.attention_bias


def other_box_bias(regions: layout.Regions, side: int, dtype: torch.dtype) -> torch.Tensor:
    """Milder: each object's words hidden only from the pixels of the other object's box (minus its own)."""
    inside = layout.inside_boxes(regions, side)  # (B, G, HW)
    in_other = inside.flip(1) & ~inside  # two objects: the other's box
    hidden = torch.einsum("bgn,bgt->bnt", in_other.float(), regions.tokens.float()) > 0
    return torch.zeros(hidden.shape, dtype=dtype, device=hidden.device).masked_fill(hidden, layout.HIDDEN)


def sketch(plan: layout.Plan | None, seed: int) -> Image.Image:
    """The plan as blurred colour blobs (70% of each box) on one of the world's backgrounds."""
    rng = random.Random(seed)
    image = Image.new("RGB", (128, 128), list(world.BACKGROUNDS.values())[rng.randrange(len(world.BACKGROUNDS))])
    draw = ImageDraw.Draw(image)
    for obj, (x0, y0, x1, y1) in zip(plan.objects, plan.boxes) if plan else ():
        cx, cy, r = (x0 + x1) * 64, (y0 + y1) * 64, (x1 - x0) * 64 * 0.7
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=world.COLORS[obj.color])
    return image.resize((32, 32), Image.BOX).filter(ImageFilter.GaussianBlur(1.5))


def sketched(wb: Wordbrush, prompts: list[str], seeds: list[int], strength: float) -> list[Image.Image]:
    cond = wb.encoder.encode(prompts)
    plans = [layout.plan(p, s) for p, s in zip(prompts, seeds)]
    length = cond.states.shape[1]
    regions = layout.regions(plans, wb._offsets(prompts, length), length)
    init = torch.cat([imlib.to_model(sketch(p, s), wb.generator.resolution) for p, s in zip(plans, seeds)])
    gen = wb.generator
    x = gen.generate(
        cond,
        wb._uncond,
        seeds=seeds,
        steps=gen.default_steps,
        guidance=gen.default_guidance,
        init=init,
        strength=strength,
        regions=regions,
    )
    return to_pil(x)


def run(wb: Wordbrush, variant: str, items: list[evaluate.EvalItem], batch: int = 50) -> list[Image.Image]:
    layout.attention_bias = other_box_bias if variant == "other-box" else SHIPPED_BIAS
    try:
        images = []
        for i in range(0, len(items), batch):
            prompts, seeds = [it.prompt for it in items[i : i + batch]], [it.seed for it in items[i : i + batch]]
            if variant.startswith("sketch-"):
                images += sketched(wb, prompts, seeds, float(variant.removeprefix("sketch-")))
            else:
                images += wb.text_to_image(prompts, seed=seeds, layout=variant != "off").images
        return images
    finally:
        layout.attention_bias = SHIPPED_BIAS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--per-category", type=int, default=100)
    parser.add_argument("--variants", default="off,shipped,other-box,sketch-0.7")
    args = parser.parse_args()
    wb = Wordbrush.load(args.model)
    items = [it for it in evaluate.eval_set("combos", per_category=args.per_category) if it.category in CATEGORIES]
    command = "python -m bench.experiments.layout_variants " + " ".join(sys.argv[1:])
    print(f"`{command}`: {len(items)} held-out-combination items\n")
    print("| variant | " + " | ".join(CATEGORIES) + " | seconds per image, batch 50 |")
    print("|---|" + "---:|" * (len(CATEGORIES) + 1))
    for variant in args.variants.split(","):
        t0 = time.perf_counter()
        images = run(wb, variant, items)
        per_image = (time.perf_counter() - t0) / len(items)
        scores = evaluate.score(items, images)
        cells = " | ".join(f"{scores[c]:.3f}" for c in CATEGORIES)
        print(f"| {variant} | {cells} | {per_image:.3f} |", flush=True)


if __name__ == "__main__":
    main()
