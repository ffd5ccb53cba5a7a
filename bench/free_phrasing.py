"""Free phrasing: does the embedded model draw what people type in their own words? One run, side by side.

    python -m bench.free_phrasing [--per-category 100] [--out bench/results/free-phrasing.md]

1. Reading (text only): the prompt reader's exact-scene accuracy on free phrasing from each split of words and
   sentence forms (train/phrasing.py), scenes from held-out combinations, by kind of scene.
2. Drawing: the evaluator's scores of images drawn from the same scenes, phrased in the world's own words or
   freely, with understanding off (the prompt as written) and on. Same seeds in every column.
3. Speed: what understanding adds to a text-to-image call at batch 1 and 16, for prompts in the world's words
   (no language-model call) and free phrasing (the reader runs), against the same call with it off.
4. Bad input: prompts the reader cannot read, with what happened and how long it took.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from pipeline import Wordbrush
from pipeline.worlds.shapes import judge as evaluate
from pipeline.worlds.shapes import scenes as world
from train import phrasing
from train.understanding import EVAL_SPLITS, eval_examples

CATEGORIES = ("single_object", "position", "color_attribution", "counting")  # the kinds a prompt can name
BAD_INPUTS = {
    "keyboard mash": "asdf qwerty",
    "emoji": "🔴🟦🔺⭐🐱🍕",
    "5,000 words": " ".join(["a crimson disc beside a navy cube"] * 715),
    "another language": "un cercle rouge au-dessus d'un carré bleu",
    "another thing": "a photo of a cat on a sofa",
    "lone surrogate": "a red \ud800 circle",
}


def reading_table(wb: Wordbrush, n: int) -> str:
    reader = wb.understanding.reader()
    lines = ["| split | single | pair | relation | count | outside the world | all |", "|---|" + "---:|" * 6]
    for name, (words, templates) in EVAL_SPLITS.items():
        examples = eval_examples(words, templates, n=n)
        answers = []
        for start in range(0, n, 64):
            chunk = examples[start : start + 64]
            answers += [scene for scene, _ in reader.read([e.prompt for e in chunk])]
        by_kind: dict[str, list[bool]] = {}
        for e, got in zip(examples, answers):
            by_kind.setdefault(e.target.kind if e.target else "none", []).append(got == e.target)
        cells = [
            f"{statistics.mean(by_kind[k]):.3f}" if k in by_kind else "-"
            for k in ("single", "pair", "relation", "count", "none")
        ]
        overall = statistics.mean(v for vs in by_kind.values() for v in vs)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {overall:.3f} |")
    return "\n".join(lines)


def drawing_items(per_category: int, words: str | None, templates: str) -> list[evaluate.EvalItem]:
    """Held-out-combination scenes of each category (the same scenes and seeds for every phrasing), phrased in
    the world's own words (words=None: pipeline/worlds/shapes/scenes.py captions) or freely from the given splits."""
    items = []
    for cat in CATEGORIES:
        rng = random.Random(f"free-phrasing-{cat}")
        for _ in range(per_category):
            scene = world.sample_split_scene(rng, split="heldout", kind=evaluate.KIND_OF_CATEGORY[cat])
            seed = rng.getrandbits(31)
            text_rng = random.Random(f"{cat}-{seed}-{words}-{templates}")
            if words is None:
                prompt = world.caption(scene, text_rng, template_split=templates)
            else:
                prompt = phrasing.phrase_scene(scene, text_rng, words=words, templates=templates).prompt
            items.append(evaluate.EvalItem(cat, scene, prompt, seed))
    return items


def draw_and_score(wb: Wordbrush, items, *, understand: bool, batch: int = 16) -> dict[str, float]:
    images = []
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        result = wb.text_to_image([i.prompt for i in chunk], seed=[i.seed for i in chunk], understand=understand)
        images += result.images
    return evaluate.score(items, images)


def timed(fn, repeats: int = 7) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def speed_table(wb: Wordbrush) -> str:
    rng = random.Random(7)
    free = [phrasing.sample_phrased(rng, words="heldout", templates="heldout", other_share=0).prompt for _ in range(64)]
    own = ["a red circle above a blue square"]
    lines = [
        "| prompts | batch | understanding off (s) | on (s) | added (s) | reader alone (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    reader = wb.understanding.reader()
    for name, pool in (("world's own words", own * 16), ("free phrasing", free)):
        for batch in (1, 16):
            calls = iter(range(10**6))

            def call(on: bool, batch=batch, pool=pool, calls=calls):
                k = next(calls)
                prompts = [pool[(k * batch + i) % len(pool)] for i in range(batch)]
                wb.encoder.clear_cache()  # a new prompt every call: its states are computed, not remembered
                wb.text_to_image(prompts, seed=list(range(batch)), understand=on)

            off, on = timed(lambda call=call: call(False)), timed(lambda call=call: call(True))
            alone = timed(lambda batch=batch, pool=pool: reader.understand(pool[:batch]))
            lines.append(f"| {name} | {batch} | {off:.3f} | {on:.3f} | {on - off:+.3f} | {alone:.4f} |")
    return "\n".join(lines)


def bad_input_table(wb: Wordbrush) -> str:
    lines = ["| input | result | seconds |", "|---|---|---:|"]
    for name, prompt in BAD_INPUTS.items():
        t0 = time.perf_counter()
        try:
            recipe = wb.text_to_image(prompt, seed=0).recipes[0]
            result = f"drawn: {recipe.understood}"
        except ValueError as err:
            result = f"refused: {err}"
        lines.append(f"| {name} | {result} | {time.perf_counter() - t0:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--per-category", type=int, default=100)
    parser.add_argument("--reading", type=int, default=1000, help="prompts per split in the reading table")
    parser.add_argument("--out", default="bench/results/free-phrasing.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    wb = Wordbrush.load(args.model)
    sections = [f"# Free phrasing (`python -m bench.free_phrasing --per-category {args.per_category}`)\n"]

    print("reading...", file=sys.stderr)
    table = reading_table(wb, args.reading)
    sections.append(f"## Reading: exact scene, by kind (n = {args.reading} per split)\n\n{table}\n")

    print("drawing...", file=sys.stderr)
    columns = {
        "world's words, off": (None, "heldout", False),
        "world's words, on": (None, "heldout", True),
        "free: held-out templates, off": ("train", "heldout", False),
        "free: held-out templates, on": ("train", "heldout", True),
        "free: held-out words, on": ("heldout", "train", True),
        "free: held-out both, on": ("heldout", "heldout", True),
    }
    scores = {}
    for name, (words, templates, on) in columns.items():
        t0 = time.perf_counter()
        scores[name] = draw_and_score(wb, drawing_items(args.per_category, words, templates), understand=on)
        print(f"  {name}: {scores[name]['overall']:.3f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    sections.append(
        f"## Drawing: evaluator pass rates, held-out combinations, {args.per_category} per category\n\n"
        + evaluate.format_table(scores)
        + "\n"
    )

    print("speed...", file=sys.stderr)
    sections.append(f"## Speed: median seconds per call, {torch.get_num_threads()} threads\n\n{speed_table(wb)}\n")
    sections.append(f"## Bad input\n\n{bad_input_table(wb)}\n")
    text = "\n".join(sections)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
