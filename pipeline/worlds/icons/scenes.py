"""The icons world: scenes of 1 to 3 colour emoji icons on a plain background, a seeded renderer and captions.

    single    "a frog", "a small frog on a dark blue background"
    pair      "a frog next to a pizza", "a frog and a pizza"
    relation  "a rocket above a moon"
    count     "three red apples"

151 icons (assets/icons/, built by scripts/build_icon_atlas.py from Noto Color Emoji and CLDR): animals,
food, vehicles, plants, weather and household things. Captions name an icon by its name or one of its CLDR
alternates; each icon's held-out names ("puppy", "kitten", "automobile") never appear in a caption, so a
prompt that uses them tests what the language model knows. As in the shapes world (pipeline/worlds/shapes/scenes.py), a
fixed tenth of the icon/attribute combinations and some caption templates are held out of training.
Everything is deterministic given a seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from pipeline.worlds.icons.catalogue import Icon, icons, names, plural, visible_on  # noqa: F401  (the catalogue)
from pipeline.worlds.icons.layout import (  # noqa: F401  (the planner's, so the pipeline plans boxes as the world draws)
    BACKGROUNDS,
    RESOLUTION,
    SIDE,
    apart,
    relation_holds,
    sample_boxes,
    snapped,
)
from pipeline.worlds.shapes.scenes import Example  # (scene, caption, layout seed): the same triple in both worlds

KINDS = ("single", "pair", "relation", "count")
RELATIONS = ("left of", "right of", "above", "below")
SIZES = ("small", "big")  # said of a single icon; unsaid means medium
NUMBERS = {2: "two", 3: "three"}


# Names that are already plural or uncountable are left out of count scenes ("three grapes" is ambiguous).
UNCOUNTABLE = {
    "grapes",
    "cherries",
    "french fries",
    "books",
    "glasses",
    "scissors",
    "popcorn",
    "corn",
    "bread",
    "cheese",
    "broccoli",
    "fire",
    "wave",
    "rainbow",
    "coffee",
    "glass of milk",
}


@dataclass(frozen=True)
class Scene:
    """What an image must show; positions and exact sizes are the renderer's to sample (`Layout`)."""

    kind: str  # one of KINDS
    icons: tuple[str, ...]  # single: 1; pair, relation: 2 different; count: 2-3 identical
    background: str  # a key of BACKGROUNDS
    relation: str | None = None  # kind == "relation": icons[0] is `relation` icons[1]
    size: str | None = None  # kind == "single": "small", "big" or None (medium)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "icons": list(self.icons),
            "background": self.background,
            "relation": self.relation,
            "size": self.size,
        }


@dataclass(frozen=True)
class Layout:
    boxes: tuple[tuple[float, float, float, float], ...]  # (x0, y0, x1, y1) per icon, in pixels

    def centers(self) -> list[tuple[float, float]]:
        return [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in self.boxes]


# ----------------------------------------------------------------------------------------------------
# Sampling scenes and splits


def combo_key(scene: Scene) -> str:
    """The combination a scene shows: icons (in order for a relation), relation, count, size, background."""
    shown = list(scene.icons) if scene.kind == "relation" else sorted(set(scene.icons))
    return f"{scene.kind}|{'+'.join(shown)}|{len(scene.icons)}|{scene.relation}|{scene.size}|{scene.background}"


def is_heldout_combo(scene: Scene) -> bool:
    """A fixed tenth of all combinations never appears in training."""
    return hashlib.sha256(combo_key(scene).encode()).digest()[0] % 10 == 0


def sample_scene(rng: random.Random, *, kind: str | None = None) -> Scene:
    """A random scene whose icons all stand out from its background."""
    kind = kind or rng.choice(KINDS)
    pool = names() if kind != "count" else [n for n in names() if n not in UNCOUNTABLE]
    while True:
        background = rng.choice(list(BACKGROUNDS))
        if kind == "single":
            scene = Scene(kind, (rng.choice(pool),), background, size=rng.choice((None, None, *SIZES)))
        elif kind == "count":
            scene = Scene(kind, (rng.choice(pool),) * rng.choice((2, 3)), background)
        else:
            a, b = rng.sample(pool, 2)
            scene = Scene(kind, (a, b), background, rng.choice(RELATIONS) if kind == "relation" else None)
        if all(visible_on(n, background) for n in set(scene.icons)):
            return scene


def sample_split_scene(rng: random.Random, *, split: str, kind: str | None = None) -> Scene:
    """A scene from the training combinations (`split="train"`) or the held-out ones (`"heldout"`)."""
    while True:
        scene = sample_scene(rng, kind=kind)
        if is_heldout_combo(scene) == (split == "heldout"):
            return scene


# ----------------------------------------------------------------------------------------------------
# Captions: several templates per kind, some held out of training

TEMPLATES = {
    "single": ("{a}", "a picture of {a}", "{a}, icon", "an icon of {a}", "there is {a}", "{A}"),
    "pair": ("{a} and {b}", "{a} next to {b}", "{a} beside {b}", "{a} with {b}", "{b} and {a}"),
    "relation": ("{a} {rel} {b}", "{b} {inv} {a}", "{a} placed {rel} {b}", "there is {a} {rel} {b}"),
    "count": ("{n} {P}", "{digit} {P}", "a group of {n} {P}", "{n} {P} in a row"),
}
HELDOUT_TEMPLATES = {"single": {4}, "pair": {3}, "relation": {3}, "count": {3}}
BACKGROUND_PHRASES = ("on a {bg} background", "against a {bg} background", "with a {bg} background", "on {bg}")
HELDOUT_BACKGROUND_PHRASES = {3}
RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
BACKGROUND_SAID = 0.7  # share of captions that name the background; the rest leave it to the model


# Names that take no "a": plurals and mass nouns ("grapes next to a tomato", "popcorn on a pink background")
NO_ARTICLE = {
    "grapes",
    "cherries",
    "french fries",
    "books",
    "glasses",
    "scissors",
    "popcorn",
    "bread",
    "cheese",
    "broccoli",
    "fire",
    "coffee",
    "corn",
}


def article(phrase: str) -> str:
    if phrase.split()[-1] in NO_ARTICLE or phrase in NO_ARTICLE:
        return phrase
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def spoken_name(name: str, rng: random.Random, *, alternates: float = 0.2) -> str:
    """The icon's name, or (with probability `alternates`) one of its CLDR alternate names."""
    icon = icons()[name]
    if icon.alternates and rng.random() < alternates:
        return rng.choice(icon.alternates)
    return name


def template_fields(icons_: tuple[str, ...], first: str, last: str, relation: str | None, size: str | None) -> dict:
    """What a caption template's fields say for a scene's icons, the names spoken for the first and the last."""
    size = f"{size} " if size else ""
    return {
        "a": article(size + first),
        "A": size + first,
        "b": article(last),
        "n": NUMBERS.get(len(icons_), "one"),
        "digit": str(len(icons_)),
        "P": plural(icons_[0]),
        "rel": RELATION_WORDS.get(relation or "", ""),
        "inv": RELATION_WORDS.get(INVERSE.get(relation or "", ""), ""),
    }


def caption(scene: Scene, rng: random.Random, *, template_split: str = "train") -> str:
    """One caption of `scene`, from a random template of `template_split` ("train" or "heldout")."""
    held = HELDOUT_TEMPLATES[scene.kind]
    ids = [i for i in range(len(TEMPLATES[scene.kind])) if (i in held) == (template_split == "heldout")]
    template = TEMPLATES[scene.kind][rng.choice(ids)]
    first = spoken_name(scene.icons[0], rng)
    text = template.format(
        **template_fields(scene.icons, first, spoken_name(scene.icons[-1], rng), scene.relation, scene.size)
    )
    if rng.random() < BACKGROUND_SAID or template_split == "heldout":
        phrase_ids = [
            i
            for i in range(len(BACKGROUND_PHRASES))
            if (i in HELDOUT_BACKGROUND_PHRASES) == (template_split == "heldout")
        ]
        text += " " + BACKGROUND_PHRASES[rng.choice(phrase_ids)].format(bg=scene.background)
    return text


# ----------------------------------------------------------------------------------------------------
# Layout and rendering


def sample_layout(scene: Scene, rng: random.Random, *, resolution: int = RESOLUTION) -> Layout:
    """Random boxes, 7 px apart and 1 px from the border, that satisfy the scene's relation: the layout stage's
    own planner (pipeline/worlds/icons/layout.py), so the pipeline plans boxes as the world draws them."""
    return Layout(sample_boxes(len(scene.icons), rng, size=scene.size, relation=scene.relation, resolution=resolution))


def render(scene: Scene, layout: Layout, *, resolution: int = RESOLUTION) -> Image.Image:
    """Draw a laid-out scene as an RGB image of `resolution` pixels."""
    canvas = Image.new("RGBA", (resolution, resolution), BACKGROUNDS[scene.background] + (255,))
    for name, (x0, y0, x1, _) in zip(scene.icons, layout.boxes):
        side = max(1, round(x1 - x0))
        canvas.alpha_composite(icons()[name].sprite.resize((side, side), Image.LANCZOS), (round(x0), round(y0)))
    return canvas.convert("RGB")


def render_scene(scene: Scene, seed: int, *, resolution: int = RESOLUTION) -> tuple[Image.Image, Layout]:
    """Sample a layout for `scene` from `seed` and draw it."""
    layout = sample_layout(scene, random.Random(seed), resolution=resolution)
    return render(scene, layout, resolution=resolution), layout


def sample_example(
    rng: random.Random, *, combo_split: str = "train", template_split: str = "train", kind: str | None = None
) -> Example:
    """One (scene, caption, layout seed) triple from the given splits (of `kind`, or any)."""
    scene = sample_split_scene(rng, split=combo_split, kind=kind)
    return Example(scene, caption(scene, rng, template_split=template_split), rng.getrandbits(31))


def caption_words() -> set[str]:
    """Every word a training caption can use: names, alternates, template and background words."""
    words = set()
    for icon in icons().values():
        for phrase in (icon.name, plural(icon.name), *icon.alternates):
            words |= set(phrase.split())
    for group in (*TEMPLATES.values(), BACKGROUND_PHRASES, tuple(BACKGROUNDS), tuple(RELATION_WORDS.values())):
        for text in group:
            words |= {w for w in text.replace(",", " ").split() if "{" not in w}
    return words | set(NUMBERS.values()) | {str(n) for n in NUMBERS} | set(SIZES) | {"a", "an"}


def kite_sprite(side: int = 128) -> Image.Image:
    """An RGBA kite drawn by code: a diamond in four colours, its cross sticks, a tail with three bows."""
    im = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    s = side / 128
    top, right, bottom, left, mid = (
        (64 * s, 6 * s),
        (104 * s, 44 * s),
        (64 * s, 96 * s),
        (24 * s, 44 * s),
        (64 * s, 44 * s),
    )
    for a, b, colour in (
        (top, right, (230, 57, 70)),
        (right, bottom, (255, 190, 11)),
        (bottom, left, (58, 134, 255)),
        (left, top, (6, 214, 160)),
    ):
        d.polygon([a, b, mid], fill=colour + (255,))
    d.line([top, bottom], fill=(60, 40, 20, 255), width=max(1, round(3 * s)))
    d.line([left, right], fill=(60, 40, 20, 255), width=max(1, round(3 * s)))
    tail = [(64 * s + 10 * s * math.sin(k / 3), 96 * s + k * 1.2 * s) for k in range(26)]
    d.line(tail, fill=(60, 40, 20, 255), width=max(1, round(2 * s)))
    for k in (8, 16, 24):
        x, y = tail[k]
        d.polygon(
            [(x - 7 * s, y - 4 * s), (x + 7 * s, y + 4 * s), (x + 7 * s, y - 4 * s), (x - 7 * s, y + 4 * s)],
            fill=(230, 57, 70, 255),
        )
    return im


def write_kite_demo(out: Path, *, n: int = 40, seed: int = 0) -> Path:
    """A folder of `n` captioned 64 px pictures of one kite, alone, at the world's sizes, places and backgrounds."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    sprite, rows = kite_sprite(), []
    for i in range(n):
        background = list(BACKGROUNDS)[i % len(BACKGROUNDS)]
        size = rng.choice((None, None, "small", "big"))
        (box,) = sample_boxes(1, rng, size=size)
        x0, y0, x1, _ = snapped(box)
        canvas = Image.new("RGBA", (64, 64), BACKGROUNDS[background] + (255,))
        canvas.alpha_composite(sprite.resize((x1 - x0, x1 - x0), Image.LANCZOS), (x0, y0))
        canvas.convert("RGB").save(out / f"{i:03d}.png")
        said = f" on a {background} background" if rng.random() < 0.7 else ""
        text = f"a {size + ' ' if size else ''}kite{said}"
        rows.append({"file_name": f"{i:03d}.png", "text": text})
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out
