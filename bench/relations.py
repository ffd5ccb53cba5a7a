"""Where a model puts two objects it was asked to relate: the relation asked against the relation drawn.

    python bench/relations.py --model assets/shapes-diffusion --model assets/shapes-gan [--n 200]

The evaluator's position prompts (held-out combinations, all training phrasings, inverted ones included).
For each image in which both objects were found with the right colours and shapes, the relation of the
first-named object to the second as drawn. A model that has learnt only the axis of a relation ("left of"
is side by side, "above" is one over the other) fills the two cells of that axis evenly; one that has
learnt which object goes where fills the diagonal. Chance along the right axis is 0.5.

--noise-probe (diffusion models): a finer, cheaper signal of the same thing. From pure noise at a very noisy
timestep, one guided prediction of the clean image for "a RED SHAPE above a BLUE SHAPE" prompts; how many
pixels each colour's centre of mass sits on the asked side of the other's (mean), and how often (share).
A model with no sense of direction scores about 0 px and 0.5.
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
    pair = evaluate.object_pair(item.scene, evaluate.find_objects(image))
    if pair is None:
        return None
    return next(r for r in world.RELATIONS if evaluate.relation_holds(r, pair[0].center, pair[1].center))


def confusion(model: str, items: list[evaluate.EvalItem], batch: int = 50) -> dict[tuple[str, str | None], int]:
    wb = Wordbrush.load(model)
    counts: dict[tuple[str, str | None], int] = collections.Counter()
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        images = wb.text_to_image([it.prompt for it in chunk], seed=[it.seed for it in chunk]).images
        for item, image in zip(chunk, images):
            counts[item.scene.relation, drawn_relation(item, image)] += 1
    return counts


@torch.inference_mode()
def noise_probe(model: str, items: list[evaluate.EvalItem], ts: tuple[int, ...]) -> list[tuple[float, float]]:
    """(mean signed displacement in px, share on the asked side) of the x0 prediction at each timestep of ts."""
    from pipeline import diffusion
    from pipeline.encoders import load_encoder

    unet, cfg, meta = diffusion.load(model)
    encoder = load_encoder(meta["encoder"])
    items = [it for it in items if it.scene.objects[0].color != it.scene.objects[1].color]
    cond, uncond = encoder.encode([it.prompt for it in items]), encoder.encode([""] * len(items))
    noise = diffusion.seeded_noise([it.seed for it in items], (3, cfg.resolution, cfg.resolution), unet.device)
    alphas = diffusion.training_scheduler(cfg).alphas_cumprod
    results = []
    for t in ts:
        v = diffusion.denoise_step(unet, noise, torch.full((len(items),), t), cond, uncond, 3.0)
        results.append(_shift(items, noise, v, alphas[t]))
    return results


def _shift(items, noise, v, alpha) -> tuple[float, float]:
    """Mean and share of how far the first object's colour sits on the asked side of the second's."""
    x0 = ((alpha.sqrt() * noise - (1 - alpha).sqrt() * v).clamp(-1, 1) + 1) * 127.5  # (B, 3, H, W) in 0-255
    ys, xs = torch.meshgrid(*(torch.arange(x0.shape[-1], dtype=torch.float32),) * 2, indexing="ij")
    shifts = []
    for item, img in zip(items, x0):
        centres = []
        for obj in item.scene.objects:  # centre of mass of pixels near the object's colour
            colour = torch.tensor(world.COLORS[obj.color], dtype=torch.float32)[:, None, None]
            w = (1 - (img - colour).norm(dim=0) / 120).clamp(min=0) ** 2
            w = w / (w.sum() + 1e-6)
            centres.append(((w * xs).sum(), (w * ys).sum()))
        (ax, ay), (bx, by) = centres
        shift = {"left of": bx - ax, "right of": ax - bx, "above": by - ay, "below": ay - by}[item.scene.relation]
        shifts.append(float(shift))
    shifts = torch.tensor(shifts)
    return shifts.mean().item(), (shifts > 0).float().mean().item()


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
    parser.add_argument("--noise-probe", action="store_true", help="only the high-noise probe (diffusion models)")
    args = parser.parse_args()
    torch.manual_seed(0)
    items = [it for it in evaluate.eval_set("combos", per_category=args.n) if it.category == "position"]
    if args.noise_probe:
        lines = ["| model | t = 990 | t = 950 | t = 900 |", "|---|---:|---:|---:|"]
        for m in args.model:
            cells = noise_probe(m, items, (990, 950, 900))
            lines.append(f"| {m} | " + " | ".join(f"{d:+.2f} px, {share:.2f}" for d, share in cells) + " |")
        print("\n".join(lines))
        return
    report = "\n".join(table(m, confusion(m, items)) for m in args.model)
    print(report)
    Path(args.out).write_text(f"`python bench/relations.py {' '.join(sys.argv[1:])}`\n\n{report}")


if __name__ == "__main__":
    main()
