"""Style transfer with only a style named ("in outline style"): is the content kept?

    python -m bench.style_only [--n 100] [--strength 0.6]

Held-out scenes drawn in one style (no recipe in the image) are restyled with a prompt that names only the
target style, as `python -m pipeline style --image X --prompt "in outline style"` does. Understanding on: the
pipeline describes the image with the scene parser first and draws "<description> in outline style";
off: the style prompt alone. "Content kept" = the evaluator finds the input's objects, colours and
relation or count in the result; "style recognized" = the style classifier names the target style.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

from pipeline import Wordbrush
from pipeline.worlds.shapes import judge as evaluate
from pipeline.worlds.shapes import scenes as world
from pipeline.worlds.shapes.reader import describe_image, parse_canonical

CATEGORY_OF_KIND = {"single": "single_object", "pair": "color_attribution", "relation": "position", "count": "counting"}


def scores(wb: Wordbrush, n: int, strength: float, understand: bool) -> tuple[float, float, float]:
    """(content kept, style recognized, seconds per image)."""
    rng = random.Random(0)
    kept, styled = [], []
    t0 = time.perf_counter()
    for i in range(n):
        source_style, target = rng.sample(world.STYLES, 2)
        scene = world.sample_split_scene(rng, split="heldout", style=source_style)
        image, _ = world.render_scene(scene, rng.getrandbits(31))
        target_scene = world.Scene(scene.kind, scene.objects, target, scene.relation)
        prompt = f"in {target} style"
        out = wb.style_transfer(image, style_prompt=prompt, strength=strength, seed=i, understand=understand).images[0]
        kept.append(evaluate.judge(evaluate.EvalItem(CATEGORY_OF_KIND[scene.kind], target_scene, prompt, 0), out))
        styled.append(evaluate.judge(evaluate.EvalItem("style", target_scene, prompt, 0), out))
    return float(np.mean(kept)), float(np.mean(styled)), (time.perf_counter() - t0) / n


def description_accuracy(n: int) -> float:
    """Share of the inputs whose description names exactly their objects (colours and shapes)."""
    rng = random.Random(0)
    right = []
    for _ in range(n):
        source_style, _ = rng.sample(world.STYLES, 2)
        scene = world.sample_split_scene(rng, split="heldout", style=source_style)
        image, _ = world.render_scene(scene, rng.getrandbits(31))
        parsed = parse_canonical(describe_image(image))
        right.append(parsed is not None and sorted(parsed.objects) == sorted((o.color, o.shape) for o in scene.objects))
    return float(np.mean(right))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--strength", type=float, default=0.6)
    parser.add_argument("--out", default="bench/results/style-only.md")
    args = parser.parse_args()
    wb = Wordbrush.load(args.model)
    lines = [
        f"# Style transfer with only a style (`python -m bench.style_only --n {args.n} --strength {args.strength}`)",
        "",
        "| understanding | content kept | style recognized | s / image |",
        "|---|---:|---:|---:|",
    ]
    for understand in (False, True):
        kept, styled, seconds = scores(wb, args.n, args.strength, understand)
        label = "on: the image described first" if understand else "off: the style prompt alone"
        lines.append(f"| {label} | {kept:.3f} | {styled:.3f} | {seconds:.2f} |")
        print(lines[-1], file=sys.stderr)
    lines += ["", f"Descriptions that name exactly the input's objects: {description_accuracy(args.n):.3f}"]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
