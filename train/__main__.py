"""Command line of the training side: `python -m train <command> ...`.

python -m train evaluate --clean                 # the evaluator on exact renders (its ceiling)
python -m train evaluate --images DIR            # images DIR/0000.png ... scored against DIR/manifest.jsonl
python -m train evaluate --export DIR            # write an evaluation set's prompts and manifest
python -m train style-classifier --out DIR       # train the evaluator's style classifier
python -m train world --out grid.png             # a grid of random training scenes with captions
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _evaluate(args: argparse.Namespace) -> int:
    from PIL import Image

    from train import evaluate

    splits = ["combos", "templates"] if args.split == "both" else [args.split]
    if args.export:
        out = Path(args.export)
        out.mkdir(parents=True, exist_ok=True)
        items = evaluate.eval_set(splits[0], per_category=args.per_category)
        evaluate.write_manifest(items, out / "manifest.jsonl")
        (out / "prompts.txt").write_text("".join(it.prompt + "\n" for it in items))
        print(f"wrote {len(items)} items to {out}/manifest.jsonl and {out}/prompts.txt")
        return 0
    columns = {}
    if args.images:
        folder = Path(args.images)
        items = evaluate.read_manifest(folder / "manifest.jsonl")
        images = [Image.open(folder / f"{i:04d}.png") for i in range(len(items))]
        columns[folder.name] = evaluate.score(items, images)
    elif args.clean:
        for split in splits:
            items = evaluate.eval_set(split, per_category=args.per_category)
            columns[f"clean renders, held-out {split}"] = evaluate.score(items, evaluate.clean_images(items))
    else:
        print("nothing to evaluate: pass --clean, --images DIR or --export DIR", file=sys.stderr)
        return 2
    print(evaluate.format_table(columns))
    return 0


def _style_classifier(args: argparse.Namespace) -> int:
    from train.style_classifier import train_style_classifier

    train_style_classifier(out=args.out, steps=args.steps, seed=args.seed)
    return 0


def _world(args: argparse.Namespace) -> int:
    import random

    from PIL import Image

    from train import world

    rng = random.Random(args.seed)
    n, tile = args.n, 128
    cols = 8
    grid = Image.new("RGB", (cols * tile, -(-n // cols) * tile), "white")
    for i in range(n):
        ex = world.sample_example(rng)
        image, _ = world.render_scene(ex.scene, ex.seed)
        grid.paste(image.resize((tile, tile), Image.NEAREST), ((i % cols) * tile, (i // cols) * tile))
        print(f"{i:3d}  {ex.caption}")
    grid.save(args.out)
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("evaluate", help="score images with the shapes-world evaluator")
    p.add_argument("--clean", action="store_true", help="score exact renders of the evaluation set")
    p.add_argument("--images", help="folder with NNNN.png and manifest.jsonl (from --export)")
    p.add_argument("--export", help="write the evaluation set's prompts.txt and manifest.jsonl here")
    p.add_argument("--split", choices=["combos", "templates", "both"], default="both")
    p.add_argument("--per-category", type=int, default=100)
    p.set_defaults(fn=_evaluate)

    p = sub.add_parser("style-classifier", help="train the evaluator's style classifier")
    p.add_argument("--out", default="assets/evaluator/style-classifier")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_style_classifier)

    p = sub.add_parser("world", help="draw a grid of random training scenes")
    p.add_argument("--out", default="world.png")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_world)

    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
