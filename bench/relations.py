"""Where a model puts two objects it was asked to relate: the relation asked against the relation drawn.

    python bench/relations.py --model assets/shapes-diffusion --model assets/shapes-gan [--n 200]

The evaluator's position prompts (held-out combinations, all training phrasings, inverted ones included).
For each image in which both objects were found with the right colours and shapes, the relation of the
first-named object to the second as drawn. A model that has learnt only the axis of a relation ("left of"
is side by side, "above" is one over the other) fills the two cells of that axis evenly; one that has
learnt which object goes where fills the diagonal. Chance along the right axis is 0.5.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from pipeline import Wordbrush  # noqa: E402
from train import evaluate, world  # noqa: E402


def drawn_relation(item: evaluate.EvalItem, image) -> str | None:
    """The relation of the first object to the second as drawn, or None if they were not both found."""
    found = evaluate.find_objects(image)
    want = [(o.color, o.shape) for o in item.scene.objects]
    if sorted((f.color, f.shape) for f in found) != sorted(want):
        return None
    a = next(f for f in found if (f.color, f.shape) == want[0])
    b = next(f for f in found if (f.color, f.shape) == want[1])
    return next(r for r in world.RELATIONS if evaluate.relation_holds(r, a.center, b.center))


def confusion(model: str, items: list[evaluate.EvalItem], batch: int = 50) -> dict[tuple[str, str | None], int]:
    wb = Wordbrush.load(model)
    counts: dict[tuple[str, str | None], int] = collections.Counter()
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        images = wb.text_to_image([it.prompt for it in chunk], seed=[it.seed for it in chunk]).images
        for item, image in zip(chunk, images):
            counts[item.scene.relation, drawn_relation(item, image)] += 1
    return counts


def table(model: str, counts: dict) -> str:
    n = sum(counts.values())
    found = n - sum(v for (_, d), v in counts.items() if d is None)
    right = sum(counts[r, r] for r in world.RELATIONS)
    axis = {"left of": "h", "right of": "h", "above": "v", "below": "v"}
    on_axis = sum(v for (a, d), v in counts.items() if d is not None and axis[a] == axis[d])
    lines = [
        f"### {model}",
        "",
        f"{n} prompts; both objects right in {found}; of those, relation on the right axis "
        f"{on_axis / max(found, 1):.2f}, the right way round {right / max(found, 1):.2f} "
        f"(position score {right / n:.3f}).",
        "",
        "| asked \\ drawn | " + " | ".join(world.RELATIONS) + " | objects wrong |",
        "|---|" + "---:|" * (len(world.RELATIONS) + 1),
    ]
    for asked in world.RELATIONS:
        cells = [counts[asked, d] for d in world.RELATIONS] + [counts[asked, None]]
        lines.append(f"| {asked} | " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="preset or folder; repeat to compare")
    parser.add_argument("--n", type=int, default=200, help="position prompts")
    parser.add_argument("--out", default="bench/results/relations.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    items = [it for it in evaluate.eval_set("combos", per_category=args.n) if it.category == "position"]
    report = "\n".join(table(m, confusion(m, items)) for m in args.model)
    print(report)
    Path(args.out).write_text(f"`python bench/relations.py {' '.join(sys.argv[1:])}`\n\n{report}")


if __name__ == "__main__":
    main()
