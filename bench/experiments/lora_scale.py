"""The star LoRA at several scales: the new concept against the old categories (same sets as lora_demo).

python -m bench.experiments.lora_scale --lora runs/lora-star/model/lora.safetensors --scales 0.5 0.75 1.0
"""

from __future__ import annotations

import argparse

from bench.lora_demo import WithLora, scores, star_items
from pipeline import Wordbrush
from pipeline.worlds.shapes import judge as evaluate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="shapes")
    p.add_argument("--lora", required=True)
    p.add_argument("--scales", type=float, nargs="+", default=[0.5, 0.75, 1.0])
    p.add_argument("--per-category", type=int, default=50)
    p.add_argument("--star-seeds", type=int, default=10)
    args = p.parse_args()
    wb = Wordbrush.load(args.model, device="cpu")
    stars, old = star_items(args.star_seeds), evaluate.eval_set("combos", per_category=args.per_category)
    rows = {"base": {"star": scores(wb, stars)["single_object"], **scores(wb, old)}}
    for scale in args.scales:
        adapted = WithLora(wb, f"{args.lora}:{scale}")
        rows[f"LoRA x{scale:g}"] = {"star": scores(adapted, stars)["single_object"], **scores(adapted, old)}
    cats = ["star", *evaluate.CATEGORIES, "overall"]
    print("| category | " + " | ".join(rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for c in cats:
        print(f"| {c} | " + " | ".join(f"{r[c]:.3f}" for r in rows.values()) + " |")
    base = rows["base"]
    for name, r in list(rows.items())[1:]:
        print(f"{name}: largest drop on an old category {min(r[c] - base[c] for c in evaluate.CATEGORIES):+.3f}")


if __name__ == "__main__":
    main()
