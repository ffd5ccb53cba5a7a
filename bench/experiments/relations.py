"""Where a model puts two objects it was asked to relate: the relation asked against the relation drawn.

    python -m bench.experiments.relations --model assets/shapes-diffusion --model assets/shapes-gan [--n 200]

The evaluator's position prompts (held-out combinations, all training phrasings, inverted ones included).
For each image in which both objects were found with the right colours and shapes, the relation of the
first-named object to the second as drawn. A model that has learnt only the axis of a relation ("left of"
is side by side, "above" is one over the other) fills the two cells of that axis evenly; one that has
learnt which object goes where fills the diagonal. Chance along the right axis is 0.5.

Diffusion models sample with the layout stage (pipeline/layout.py) as the app does; --no-layout: without it.

--seen [KIND_WEIGHTS]: the same on captions the model was trained on (its run's caption pool), to tell a
model that memorised each combination's layout from one that never learnt the direction at all.

--noise-probe (diffusion models): a finer, cheaper signal of the same thing. From pure noise at a very noisy
timestep, one guided prediction of the clean image for "a RED SHAPE above a BLUE SHAPE" prompts; how many
pixels each colour's centre of mass sits on the asked side of the other's (mean), and how often (share).
A model with no sense of direction scores about 0 px and 0.5.

--attention-probe (diffusion models): where the words of each object attend. Each prompt's scene is drawn
(a layout that satisfies it), noised to t, and passed through the UNet once; per t, the share of each
object's attention (its colour and shape words, train/grounding.py) that falls inside its box, and how often
the centre of that attention puts the first object on the asked side of the second. At t near T the image
says nothing about the layout, so the share there is what the prompt alone tells the model.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import torch

from pipeline import Wordbrush
from pipeline.worlds.shapes import judge as evaluate
from pipeline.worlds.shapes import scenes as world


def seen_items(kind_weights: str, n: int) -> list[evaluate.EvalItem]:
    """The first `n` relation examples of the training caption pool (size 20000, seed 0) drawn with
    `kind_weights` ("relation=2.5,count=1.5"; "" for all kinds alike), as position items."""
    from train.diffusion import parse_kind_weights, pool_examples

    weights = parse_kind_weights(kind_weights)
    examples = [e for e in pool_examples(size=20000, seed=0, kind_weights=weights) if e.scene.kind == "relation"]
    return [evaluate.EvalItem("position", e.scene, e.caption, e.seed) for e in examples[:n]]


def drawn_relation(item: evaluate.EvalItem, image) -> str | None:
    """The relation of the first object to the second as drawn, or None if they were not both found."""
    pair = evaluate.object_pair(item.scene, evaluate.find_objects(image))
    if pair is None:
        return None
    return next(r for r in world.RELATIONS if evaluate.relation_holds(r, pair[0].center, pair[1].center))


def confusion(
    model: str, items: list[evaluate.EvalItem], batch: int = 50, *, layout: bool | None = None
) -> dict[tuple[str, str | None], int]:
    wb = Wordbrush.load(model)
    counts: dict[tuple[str, str | None], int] = collections.Counter()
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        prompts, seeds = [it.prompt for it in chunk], [it.seed for it in chunk]
        images = wb.text_to_image(prompts, seed=seeds, layout=layout).images
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
        v = diffusion.denoise_step(unet, noise, torch.full((len(items),), t), cond=cond, uncond=uncond, guidance=3.0)
        results.append(_shift(items, noise, v, alphas[t]))
    return results


@torch.inference_mode()
def attention_probe(model: str, items: list[evaluate.EvalItem], ts: tuple[int, ...]) -> list[tuple[float, float]]:
    """(share of the objects' attention inside their boxes, share right way round) at each timestep of ts."""
    from pipeline import diffusion
    from pipeline.encoders import load_encoder
    from train import grounding
    from train.diffusion import to_tensor

    unet, cfg, meta = diffusion.load(model)
    unet = unet.float()
    recorder = grounding.AttentionRecorder(unet)
    encoder = load_encoder(meta["encoder"])
    examples = [world.Example(it.scene, it.prompt, it.seed) for it in items]
    cond = encoder.encode([it.prompt for it in items])
    groups = grounding.token_groups(encoder.tokenizer, examples, cond.states.shape[1])
    drawn = [world.render_scene(it.scene, it.seed, resolution=cfg.resolution) for it in items]
    x0 = to_tensor([image for image, _ in drawn])
    masks = torch.stack(
        [grounding.box_masks(it.scene, layout, cfg.resolution) for it, (_, layout) in zip(items, drawn)]
    )
    noise = diffusion.seeded_noise([it.seed for it in items], tuple(x0.shape[1:]), "cpu")
    scheduler = diffusion.training_scheduler(cfg)
    named = groups.sum(-1).min(-1).values > 0  # both objects named (not twins)
    results = []
    for t in ts:
        steps = torch.full((len(items),), t)
        x_t = scheduler.add_noise(x0, noise, steps)
        with recorder.record() as maps:
            unet(
                diffusion.unet_inputs(unet, x_t),
                steps,
                cond.states.float(),
                class_labels=cond.pooled.float(),
                encoder_attention_mask=cond.mask,
            )
        inside = grounding.share_inside(maps, groups, masks)
        centres = grounding.attention_centres(maps, groups)  # (B, 2 objects, xy)
        right = [_asked_shift(it.scene.relation, *centres[i].tolist()) > 0 for i, it in enumerate(items) if named[i]]
        results.append((inside, sum(right) / max(len(right), 1)))
    return results


def _asked_shift(relation: str, a, b) -> float:
    """How far point a (x, y) lies on the `relation` side of point b along the relation's axis (image y
    grows downwards); positive when a is where the relation asks."""
    (ax, ay), (bx, by) = a, b
    return float({"left of": bx - ax, "right of": ax - bx, "above": by - ay, "below": ay - by}[relation])


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
        shifts.append(_asked_shift(item.scene.relation, *centres))
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
    parser.add_argument("--out", default="bench/experiments/results/relations.md")
    parser.add_argument("--noise-probe", action="store_true", help="only the high-noise probe (diffusion models)")
    parser.add_argument("--attention-probe", action="store_true", help="only the attention probe (diffusion models)")
    parser.add_argument(
        "--no-layout",
        dest="layout",
        action="store_const",
        const=False,
        default=None,
        help="sample without the layout stage (pipeline/layout.py), as the generator alone draws",
    )
    parser.add_argument(
        "--seen",
        metavar="KIND_WEIGHTS",
        nargs="?",
        const="",
        help="captions the model trained on instead: the relation examples of a run's caption pool "
        "(--pool-size 20000 --seed 0, and the run's --kind-weights, e.g. relation=2.5,count=1.5)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.seen is None:
        items = [it for it in evaluate.eval_set("combos", per_category=args.n) if it.category == "position"]
    else:
        items = seen_items(args.seen, args.n)
    if args.attention_probe:
        ts = (500, 900, 970, 999)
        lines = ["| model | " + " | ".join(f"t = {t}" for t in ts) + " |", "|---|" + "---:|" * len(ts)]
        for m in args.model:
            cells = attention_probe(m, items, ts)
            lines.append(
                f"| {m} | "
                + " | ".join(f"{inside:.2f} in box, {right:.2f} right way" for inside, right in cells)
                + " |"
            )
        print("\n".join(lines))
        return
    if args.noise_probe:
        lines = ["| model | t = 990 | t = 950 | t = 900 |", "|---|---:|---:|---:|"]
        for m in args.model:
            cells = noise_probe(m, items, (990, 950, 900))
            lines.append(f"| {m} | " + " | ".join(f"{d:+.2f} px, {share:.2f}" for d, share in cells) + " |")
        print("\n".join(lines))
        return
    suffix = " (layout stage off)" if args.layout is False else ""
    report = "\n".join(table(m + suffix, confusion(m, items, layout=args.layout)) for m in args.model)
    print(report)
    Path(args.out).write_text(f"`python -m bench.experiments.relations {' '.join(sys.argv[1:])}`\n\n{report}")


if __name__ == "__main__":
    main()
