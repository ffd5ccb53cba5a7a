"""Does the prompt encoder say which object goes where? A linear probe on its per-token states.

    python -m bench.experiments.relation_probe [--encoder minilm] [--n 4000]

Relation captions from the training phrasings ("a red circle above a blue square", "a blue square below a
red circle", "a blue square with a red circle above it", ...). For each object, the state of its shape
word is labelled with the object's role in the picture: top, bottom, left or right. A logistic regression
(linear, as cross-attention's key projection is) learns the role from 80% of the captions and is scored on
the rest. If it scores high, the states carry the relation's direction, and a generator that draws the
direction at chance (bench/relations.py) is not using what it is given.

Then how large that signal is: how far a caption's pooled vector and its first object's shape-word state
move when the relation turns round, against when the objects swap, the axis changes or a colour changes.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

from pipeline.encoders import load_encoder
from pipeline.worlds.shapes import scenes as world

ROLES = ("top", "bottom", "left", "right")
ROLE_OF = {"above": (0, 1), "below": (1, 0), "left of": (2, 3), "right of": (3, 2)}  # (first object, second)


def shape_word(encoder, text: str, obj: world.Obj) -> int:
    """Token index of `obj`'s shape word ("circle" right after "red") in `text`, for WordPiece (MiniLM) and
    byte-level BPE (SmolLM2, "Ġred") tokenizers alike."""
    tokens = [t.lstrip("Ġ▁") for t in encoder.tokenizer.convert_ids_to_tokens(encoder.tokenizer(text)["input_ids"])]
    return next(p + 1 for p in range(len(tokens) - 1) if tokens[p : p + 2] == [obj.color, obj.shape])


def labelled_states(encoder, n: int, seed: int = 0):
    """(states (M, D), roles (M,), template ids (M,)) for the shape words of n relation captions."""
    rng = random.Random(seed)
    captions = []
    for _ in range(n):
        scene = world.sample_scene(rng, kind="relation", style="flat")
        template = rng.choice(world.template_ids("relation", "train"))
        a, b = (world._noun_phrase(o, "") for o in scene.objects)
        rel, inv = world.RELATION_WORDS[scene.relation], world.RELATION_WORDS[world.INVERSE[scene.relation]]
        captions.append((scene, world.TEMPLATES["relation"][template].format(a=a, b=b, rel=rel, inv=inv), template))
    states, roles, templates = [], [], []
    for i in range(0, n, 256):
        chunk = captions[i : i + 256]
        out = encoder.encode([c for _, c, _ in chunk], cache=False)
        for j, (scene, text, template) in enumerate(chunk):
            for k, obj in enumerate(scene.objects):
                states.append(out.states[j, shape_word(encoder, text, obj)].float())
                roles.append(ROLE_OF[scene.relation][k])
                templates.append(template)
    return torch.stack(states), torch.tensor(roles), torch.tensor(templates)


def linear_probe(x: torch.Tensor, y: torch.Tensor, train: torch.Tensor, steps: int = 1500) -> torch.Tensor:
    """Predicted classes for every row of x, from a logistic regression fitted on the `train` rows."""
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    z = (x - mean) / std
    w = torch.zeros(x.shape[1], len(ROLES), requires_grad=True)
    b = torch.zeros(len(ROLES), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(z[train] @ w + b, y[train]) + 1e-4 * w.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (z @ w + b).argmax(1).detach()


CHANGES = ("objects swapped", "relation turned", "relation on the other axis", "one colour changed")
OTHER_AXIS = {"above": "left of", "below": "right of", "left of": "above", "right of": "below"}


def swap_distances(encoder, n: int, seed: int = 1) -> dict[str, dict[str, float]]:
    """How far the encoder moves a caption "{a} {rel} {b}" when its objects trade places, the relation turns
    round ("above" -> "below") or changes axis ("above" -> "left of"), or one object changes colour: mean L2
    distance over n captions, of the pooled vector and of the first-named object's shape-word state."""
    rng = random.Random(seed)
    texts: dict[str, list[str]] = {k: [] for k in ("caption", *CHANGES)}
    tracked: dict[str, list[world.Obj]] = {k: [] for k in texts}  # the first-named object of "caption"
    for _ in range(n):
        scene = world.sample_scene(rng, kind="relation", style="flat")
        a, b = scene.objects
        other = world.Obj(rng.choice([c for c in world.COLORS if c not in (a.color, b.color)]), a.shape)
        rel, inv, cross = (
            world.RELATION_WORDS[r] for r in (scene.relation, world.INVERSE[scene.relation], OTHER_AXIS[scene.relation])
        )
        variants = {  # (first object, relation words, second object)
            "caption": (a, rel, b),
            "objects swapped": (b, rel, a),
            "relation turned": (a, inv, b),
            "relation on the other axis": (a, cross, b),
            "one colour changed": (other, rel, b),
        }
        for key, (x, r, y) in variants.items():
            texts[key].append(f"{world._noun_phrase(x, '')} {r} {world._noun_phrase(y, '')}")
            tracked[key].append(other if key == "one colour changed" else a)
    out = {k: encoder.encode(v, cache=False) for k, v in texts.items()}

    # (n, D) per variant: the pooled vector, and the first-named object's shape word wherever the change put it
    parts = {"pooled": {k: e.pooled.float() for k, e in out.items()}, "shape word": {}}
    for k, e in out.items():
        at = [shape_word(encoder, t, o) for t, o in zip(texts[k], tracked[k])]
        parts["shape word"][k] = e.states[torch.arange(n), torch.tensor(at)].float()
    return {k: {part: (v[k] - v["caption"]).norm(dim=1).mean().item() for part, v in parts.items()} for k in CHANGES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--n", type=int, default=4000, help="relation captions")
    parser.add_argument("--out", default="bench/experiments/results/relation-probe.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    encoder = load_encoder(args.encoder)
    x, y, templates = labelled_states(encoder, args.n)
    train = torch.arange(len(x)) < int(0.8 * len(x))
    pred = linear_probe(x, y, train)
    test = ~train
    acc = (pred[test] == y[test]).float().mean().item()
    axis = (pred[test] // 2 == y[test] // 2).float().mean().item()
    lines = [
        f"`python -m bench.experiments.relation_probe {' '.join(sys.argv[1:])}`",
        "",
        f"{args.encoder}: {len(x)} shape-word states ({int(test.sum())} held out). Role (top/bottom/left/right) "
        f"from one linear layer: **{acc:.3f}** (chance 0.25); axis only: {axis:.3f}.",
        "",
        "| phrasing | held-out states | role right |",
        "|---|---:|---:|",
    ]
    for t in sorted(set(templates.tolist())):
        m = test & (templates == t)
        right = (pred[m] == y[m]).float().mean().item()
        lines.append(f"| `{world.TEMPLATES['relation'][t]}` | {int(m.sum())} | {right:.2f} |")
    distances = swap_distances(encoder, 500)
    lines += [
        "",
        "How far each change moves the caption (mean L2 distance over 500 captions `{a} {rel} {b}`): the pooled "
        "vector (mean of the token states: all a cross-attention whose weights are uniform can pass on) and the "
        "first-named object's shape-word state.",
        "",
        "| change | pooled vector | shape-word state |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {d['pooled']:.3f} | {d['shape word']:.3f} |" for k, d in distances.items()]
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
