"""The shapes world: scene specs, a seeded renderer and a caption grammar.

A scene is 1 to 4 coloured shapes on a plain background, drawn in one of four styles. Four kinds of scene
exist, one per sentence shape the generator must learn:

    single    "a red circle"
    pair      "a red circle and a blue square"
    relation  "a red circle to the left of a blue square"
    count     "three red circles"

Everything here is deterministic given a seed, so training data, evaluation sets and tests agree.
Splits: `combo_key(scene)` names the attribute combination a scene shows; a fixed tenth of all
combinations is held out of training (`is_heldout_combo`), and so are the templates in HELDOUT_TEMPLATES.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RESOLUTION = 32  # native size of every image in the world (pixels, square)
SUPERSAMPLE = 4  # shapes are drawn at 4x and box-filtered down: anti-aliased edges

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 70, 225),
    "yellow": (245, 225, 30),
    "purple": (145, 45, 200),
    "orange": (250, 135, 15),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle")
NEW_SHAPES = ("star",)  # drawable and detectable, but never in the base training data: the LoRA demo's concept
STYLES = ("flat", "outline", "striped", "soft")
RELATIONS = ("left of", "right of", "above", "below")
KINDS = ("single", "pair", "relation", "count")
# Plain mid-tone backgrounds, each at least 100 (RGB distance) from every object colour.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "slate": (95, 120, 140),
    "sand": (165, 140, 110),
}
NUMBERS = {2: "two", 3: "three", 4: "four"}


@dataclass(frozen=True)
class Obj:
    color: str  # a key of COLORS
    shape: str  # one of SHAPES

    @property
    def phrase(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """What an image must show. Layout (positions, sizes) is not part of it: the renderer samples one."""

    kind: str  # one of KINDS
    objects: tuple[Obj, ...]  # single: 1; pair, relation: 2; count: 2-4 identical objects
    style: str = "flat"  # one of STYLES, applies to every object
    relation: str | None = None  # kind == "relation": objects[0] is `relation` objects[1]

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "objects": [[o.color, o.shape] for o in self.objects],
            "style": self.style,
            "relation": self.relation,
        }

    @staticmethod
    def from_dict(d: dict) -> Scene:
        objs = tuple(Obj(c, s) for c, s in d["objects"])
        return Scene(d["kind"], objs, d.get("style", "flat"), d.get("relation"))


@dataclass(frozen=True)
class Placed:
    """One object as drawn: its box in native pixels (x0, y0 inclusive; x1, y1 exclusive)."""

    obj: Obj
    box: tuple[float, float, float, float]

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2


@dataclass
class Layout:
    placed: list[Placed] = field(default_factory=list)
    background: str = "grey"


# ----------------------------------------------------------------------------------------------------
# Sampling scenes and splits


def combo_key(scene: Scene) -> str:
    """The attribute combination a scene shows: its objects (as a multiset), relation and style."""
    objs = sorted(o.phrase for o in scene.objects)
    if scene.kind == "relation":  # order matters for a relation
        objs = [o.phrase for o in scene.objects]
    return f"{scene.kind}|{'+'.join(objs)}|{scene.relation}|{scene.style}"


def is_heldout_combo(scene: Scene) -> bool:
    """A fixed tenth of all attribute combinations never appears in training."""
    digest = hashlib.sha256(combo_key(scene).encode()).digest()
    return digest[0] % 10 == 0


def sample_scene(rng: random.Random, *, kind: str | None = None, style: str | None = None) -> Scene:
    """A random scene; `kind` and `style` may be fixed. Flat is as likely as the other styles together."""
    kind = kind or rng.choice(KINDS)
    if style is None:
        style = "flat" if rng.random() < 0.5 else rng.choice(STYLES[1:])

    def obj() -> Obj:
        return Obj(rng.choice(list(COLORS)), rng.choice(SHAPES))

    if kind == "single":
        return Scene(kind, (obj(),), style)
    if kind == "count":
        return Scene(kind, (obj(),) * rng.choice((2, 3, 4)), style)
    a = obj()
    b = obj()
    while b == a:  # two distinct objects, so "which is which" is always answerable
        b = obj()
    relation = rng.choice(RELATIONS) if kind == "relation" else None
    return Scene(kind, (a, b), style, relation)


def sample_split_scene(rng: random.Random, *, split: str, kind: str | None = None, style: str | None = None) -> Scene:
    """A scene from the training split (`split="train"`) or the held-out combinations (`"heldout"`)."""
    want_heldout = split == "heldout"
    while True:
        scene = sample_scene(rng, kind=kind, style=style)
        if is_heldout_combo(scene) == want_heldout:
            return scene


# ----------------------------------------------------------------------------------------------------
# Captions: many templates per kind, some held out of training.

STYLE_WORDS = {  # adjective before the colour, and phrases after the object
    "flat": ("flat", ("in flat style", "drawn flat", "in a flat style")),
    "outline": ("outlined", ("in outline style", "drawn as an outline", "as an outline")),
    "striped": ("striped", ("in striped style", "with stripes", "drawn with stripes")),
    "soft": ("soft", ("in soft style", "with soft edges", "drawn soft and blurry")),
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    # {a} {b}: noun phrases ("a red circle"); {A}/{B}: bare ("red circle"); {n}: number word
    "single": (
        "{a}",
        "a picture of {a}",
        "there is {a}",
        "one {A}",
        "{a} on a plain background",
        "an image showing {a}",
        "just {a}",
        "a single {A}",
        "{a} in the picture",
        "draw {a}",
    ),
    "pair": (
        "{a} and {b}",
        "{a} next to {b}",
        "{a} with {b}",
        "a picture of {a} and {b}",
        "there is {a} and {b}",
        "{a} as well as {b}",
        "both {a} and {b}",
        "{a} together with {b}",
    ),
    "relation": (
        "{a} {rel} {b}",
        "{a} is {rel} {b}",
        "there is {a} {rel} {b}",
        "a picture of {a} {rel} {b}",
        "{b} {inv} {a}",
        "{b} with {a} {rel} it",
        "{b}, and {a} {rel} it",
        "{b} is {inv} {a}",
    ),
    "count": (
        "{n} {P}",
        "exactly {n} {P}",
        "a group of {n} {P}",
        "there are {n} {P}",
        "{n} {shapes}, all {color}",
        "a picture of {n} {P}",
        "{n} {P} on a plain background",
        "{digit} {P}",
    ),
}
# Held out of training, kept for measuring generalization to new phrasings.
HELDOUT_TEMPLATES: dict[str, tuple[int, ...]] = {
    "single": (8, 9),
    "pair": (6, 7),
    "relation": (6, 7),
    "count": (6, 7),
}
RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(obj: Obj, style_adj: str) -> str:
    words = f"{style_adj} {obj.phrase}".strip()
    return f"{_article(words)} {words}"


def template_ids(kind: str, split: str) -> list[int]:
    """Template indices of a kind for `split`: "train" or "heldout"."""
    held = HELDOUT_TEMPLATES[kind]
    all_ids = range(len(TEMPLATES[kind]))
    return [i for i in all_ids if (i in held) == (split == "heldout")]


def caption(scene: Scene, rng: random.Random, *, template_split: str = "train") -> str:
    """One caption of `scene`, from a random template of `template_split` ("train" or "heldout")."""
    template = TEMPLATES[scene.kind][rng.choice(template_ids(scene.kind, template_split))]
    adj, phrases = STYLE_WORDS[scene.style]
    # Flat is the default: half the time it goes unsaid. Other styles are always named, either as an
    # adjective on every object or as a phrase at the end.
    style_mode = rng.choice(("adj", "phrase"))
    if scene.style == "flat" and rng.random() < 0.5:
        style_mode = "none"
    style_adj = adj if style_mode == "adj" else ""
    a = scene.objects[0]
    b = scene.objects[1] if len(scene.objects) > 1 else a
    n = len(scene.objects)
    fields = {
        "a": _noun_phrase(a, style_adj),
        "b": _noun_phrase(b, style_adj),
        "A": f"{style_adj} {a.phrase}".strip(),
        "n": NUMBERS.get(n, str(n)),
        "digit": str(n),
        "P": f"{style_adj} {a.color} {a.shape}s".strip(),
        "shapes": f"{style_adj} {a.shape}s".strip(),
        "color": a.color,
        "rel": RELATION_WORDS.get(scene.relation or "", ""),
        "inv": RELATION_WORDS.get(INVERSE.get(scene.relation or "", ""), ""),
    }
    text = template.format(**fields)
    if style_mode == "phrase":
        text = f"{text} {rng.choice(phrases)}"
    return text


# ----------------------------------------------------------------------------------------------------
# Rendering


def _size_range(n_objects: int) -> tuple[int, int]:
    """Object side in native pixels: big enough that a triangle is unmistakable, small enough to fit."""
    return {1: (12, 18), 2: (10, 14)}.get(n_objects, (8, 10))


def _relation_holds(relation: str, a: tuple[float, float], b: tuple[float, float], margin: float) -> bool:
    """True when centre `a` is `relation` centre `b`, along its axis by `margin` more than across it."""
    dx, dy = b[0] - a[0], b[1] - a[1]  # image y grows downwards
    along, across = {
        "left of": (dx, dy),
        "right of": (-dx, dy),
        "above": (dy, dx),
        "below": (-dy, dx),
    }[relation]
    return along > 0 and along >= abs(across) + margin


def sample_layout(scene: Scene, rng: random.Random, *, resolution: int = RESOLUTION) -> Layout:
    """Random non-overlapping boxes (4 px apart, 1 px from the border) that satisfy the scene's relation."""
    lo, hi = _size_range(len(scene.objects))
    scale = resolution / RESOLUTION
    for _ in range(10_000):
        boxes = []
        # Three or four objects go one to a quadrant (uniform placement rarely fits four); fewer anywhere.
        cells = rng.sample(range(4), 4) if len(scene.objects) > 2 else [None] * len(scene.objects)
        for _obj, cell in zip(scene.objects, cells):
            size = rng.randint(lo, hi) * scale
            x_lo, x_hi, y_lo, y_hi = 1.0, resolution - 1 - size, 1.0, resolution - 1 - size
            if cell is not None:
                half = resolution / 2
                x_lo, y_lo = (cell % 2) * half + 2 * scale, (cell // 2) * half + 2 * scale
                x_hi, y_hi = x_lo + half - 4 * scale - size, y_lo + half - 4 * scale - size
            x0, y0 = rng.uniform(max(x_lo, 1), x_hi), rng.uniform(max(y_lo, 1), y_hi)
            boxes.append((x0, y0, x0 + size, y0 + size))
        if any(_overlap(p, q, gap=4 * scale) for i, p in enumerate(boxes) for q in boxes[i + 1 :]):
            continue
        placed = [Placed(o, b) for o, b in zip(scene.objects, boxes)]
        if scene.relation and not _relation_holds(scene.relation, placed[0].center, placed[1].center, margin=3 * scale):
            continue
        return Layout(placed, rng.choice(list(BACKGROUNDS)))
    raise RuntimeError(f"could not lay out {scene}")  # pragma: no cover - sizes above always fit


def _overlap(p, q, gap: float) -> bool:
    return not (p[2] + gap <= q[0] or q[2] + gap <= p[0] or p[3] + gap <= q[1] or q[3] + gap <= p[1])


def _shape_mask(shape: str, box: tuple[float, float, float, float], size: int) -> Image.Image:
    """A filled shape as an 'L' mask of `size` x `size` (supersampled pixels)."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=255)
    elif shape == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)
    elif shape == "triangle":  # upright isosceles, base at the bottom
        draw.polygon([(x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2, y0)], fill=255)
    elif shape == "star":  # five points, one up; inner radius 0.45 of the outer
        cx, cy, r = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2 + 0.06 * (x1 - x0), (x1 - x0) / 2
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else 0.45 * r
            angle = math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy - radius * math.sin(angle)))
        draw.polygon(points, fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES + NEW_SHAPES}")
    return mask


def _style_mask(shape: str, box, style: str, size: int, ss: int) -> Image.Image:
    """Coverage of one object under a style, at supersampled resolution (`ss` = supersample factor)."""
    fill = _shape_mask(shape, box, size)
    if style == "flat":
        return fill
    if style == "soft":
        return fill.filter(ImageFilter.GaussianBlur(radius=1.1 * ss))
    ring = 2 * ss  # outline: a 2 px ring; striped: bands inside a 2 px border, so the object is one piece
    x0, y0, x1, y1 = box
    inner_box = (x0 + ring, y0 + ring, x1 - ring, y1 - ring)
    if shape == "triangle":  # an inset triangle needs more room at the apex and base corners
        inner_box = (x0 + 2.2 * ring, y0 + 2.2 * ring, x1 - 2.2 * ring, y1 - ring)
    inner = np.array(_shape_mask(shape, inner_box, size)) > 0
    cover = np.array(fill) > 0
    if style == "outline":
        cover &= ~inner
    elif style == "striped":  # background-coloured bands 1 px high every 2 px, inside the border
        rows = (np.arange(size) // ss) % 2 == 1
        cover &= ~(inner & rows[:, None])
    else:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    return Image.fromarray(cover.astype(np.uint8) * 255)


def render(scene: Scene, layout: Layout, *, resolution: int = RESOLUTION) -> Image.Image:
    """Draw a laid-out scene as an RGB image of `resolution` pixels."""
    ss = SUPERSAMPLE
    size = resolution * ss
    canvas = np.empty((size, size, 3), np.float32)
    canvas[:] = BACKGROUNDS[layout.background]
    for p in layout.placed:
        box = tuple(v * ss for v in p.box)
        alpha = np.asarray(_style_mask(p.obj.shape, box, scene.style, size, ss), np.float32)[..., None] / 255
        canvas = canvas * (1 - alpha) + np.float32(COLORS[p.obj.color]) * alpha
    big = Image.fromarray(canvas.round().astype(np.uint8))
    return big.resize((resolution, resolution), Image.BOX)


def render_scene(scene: Scene, seed: int, *, resolution: int = RESOLUTION) -> tuple[Image.Image, Layout]:
    """Sample a layout for `scene` from `seed` and draw it."""
    layout = sample_layout(scene, random.Random(seed), resolution=resolution)
    return render(scene, layout, resolution=resolution), layout


@dataclass(frozen=True)
class Example:
    scene: Scene
    caption: str
    seed: int  # layout seed: render_scene(scene, seed) draws the image


def sample_example(
    rng: random.Random, *, combo_split: str = "train", template_split: str = "train", kind: str | None = None
) -> Example:
    """One (scene, caption, layout seed) triple from the given splits (of `kind`, or any)."""
    scene = sample_split_scene(rng, split=combo_split, kind=kind)
    return Example(scene, caption(scene, rng, template_split=template_split), rng.getrandbits(31))


def write_star_demo(out: Path, *, n: int = 40, seed: int = 0) -> Path:
    """A folder of `n` captioned images of flat stars in every colour: a shape the base model never saw."""

    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        color = list(COLORS)[i % len(COLORS)]
        image, _ = render_scene(Scene("single", (Obj(color, "star"),), "flat"), rng.getrandbits(31))
        image.save(out / f"{i:03d}.png")
        text = rng.choice([f"a {color} star", f"one {color} star", f"a picture of a {color} star"])
        rows.append({"file_name": f"{i:03d}.png", "text": text})
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out
