"""The icons world's catalogue (assets/icons: 151 emoji icons with names, CLDR alternates and held-out
names; built by scripts/build_icon_atlas.py): its names, plurals, backgrounds and the words the layout stage
reads, and the names as the prompt encoder's states (`NameVectors`). The training scenes live in
pipeline/worlds/icons/scenes.py, the prompt reader in reader.py and understand.py.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ICONS_DIR = Path(__file__).resolve().parents[3] / "assets" / "icons"


@dataclass(frozen=True)
class Icon:
    name: str  # what captions call it
    category: str  # animal, food, vehicle, plant, weather, household
    alternates: tuple[str, ...]  # other names captions may use (CLDR keywords)
    heldout: tuple[str, ...]  # everyday synonyms no caption uses
    sprite: Image.Image = field(repr=False, compare=False)  # RGBA, square
    emoji: str = ""  # the Unicode emoji it was drawn from


@functools.cache
def icons() -> dict[str, Icon]:
    """The atlas's icons by name, in atlas order."""
    meta = json.loads((ICONS_DIR / "icons.json").read_text())
    atlas, side, cols = Image.open(ICONS_DIR / "atlas.png").convert("RGBA"), meta["sprite"], meta["columns"]
    out = {}
    for i, e in enumerate(meta["icons"]):
        x, y = (i % cols) * side, (i // cols) * side
        sprite = atlas.crop((x, y, x + side, y + side))
        out[e["name"]] = Icon(
            e["name"], e["category"], tuple(e["alternates"]), tuple(e["heldout"]), sprite, e.get("emoji", "")
        )
    return out


def names() -> list[str]:
    return list(icons())


IRREGULAR = {
    "mouse": "mice",
    "fish": "fish",
    "tropical fish": "tropical fish",
    "cherry blossom": "cherry blossoms",
    "maple leaf": "maple leaves",
    "glass of milk": "glasses of milk",
}


def plural(name: str) -> str:
    if name in IRREGULAR:
        return IRREGULAR[name]
    if name.endswith(("s", "sh", "ch", "x")):
        return name + "es"
    if name.endswith("y") and name[-2] not in "aeiou":
        return name[:-1] + "ies"
    return name + "s"


BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 240),
    "black": (20, 20, 24),
    "grey": (128, 128, 128),
    "dark blue": (25, 40, 110),
    "light blue": (160, 205, 240),
    "dark green": (25, 80, 45),
    "pink": (245, 185, 205),
    "beige": (225, 205, 165),
}
# Everyday words for the world's backgrounds, sizes, numbers and relations (longest phrases are matched first)
COLOUR_WORDS = {
    **{c: c for c in BACKGROUNDS},
    "gray": "grey",
    "navy": "dark blue",
    "navy blue": "dark blue",
    "sky blue": "light blue",
    "pale blue": "light blue",
    "dark grey": "grey",
    "dark gray": "grey",
    "forest green": "dark green",
    "cream": "beige",
    "tan": "beige",
    "rose": "pink",
}
SIZE_WORDS = {
    "small": "small",
    "little": "small",
    "tiny": "small",
    "big": "big",
    "large": "big",
    "huge": "big",
    "giant": "big",
}
NUMBER_WORDS = {
    "one": 1,
    "a": 1,
    "an": 1,
    "single": 1,
    "two": 2,
    "three": 3,
    "1": 1,
    "2": 2,
    "3": 3,
    "pair": 2,
    "couple": 2,
    "both": 2,
}
RELATION_WORDS = {
    "to the left of": "left of",
    "on the left of": "left of",
    "left of": "left of",
    "to the right of": "right of",
    "on the right of": "right of",
    "right of": "right of",
    "above": "above",
    "over": "above",
    "on top of": "above",
    "atop": "above",
    "below": "below",
    "under": "below",
    "underneath": "below",
    "beneath": "below",
}
# Words around the things named that never name a thing themselves
FILLER = {
    "a",
    "an",
    "the",
    "of",
    "and",
    "with",
    "next",
    "to",
    "beside",
    "by",
    "near",
    "there",
    "is",
    "are",
    "picture",
    "photo",
    "image",
    "icon",
    "emoji",
    "drawing",
    "group",
    "row",
    "in",
    "placed",
    "on",
    "some",
    "background",
    "against",
    "its",
    "it",
    "that",
    "this",
    "please",
    "draw",
    "show",
    "me",
    "make",
}


VISIBLE = 0.6  # an icon is drawn on a background only if at least this share of its pixels stands out there


@functools.cache
def visible_on(name: str, background: str) -> bool:
    """Does the icon stand out from `background`: enough of its opaque pixels differ from it in colour?"""
    rgba = np.asarray(icons()[name].sprite, np.float32)
    opaque = rgba[..., 3] > 128
    dist = np.linalg.norm(rgba[..., :3][opaque] - np.float32(BACKGROUNDS[background]), axis=1)
    return bool((dist > 60).mean() >= VISIBLE)


@functools.cache
def phrase_table() -> dict[tuple[str, ...], tuple[str, bool]]:
    """Every way captions name an icon, as a word tuple -> (icon name, plural?)."""
    table = {}
    for icon in icons().values():
        for phrase in (icon.name, *icon.alternates):
            table.setdefault(tuple(words_of(plural(phrase))), (icon.name, True))
        for phrase in (icon.name, *icon.alternates):
            table[tuple(words_of(phrase))] = (icon.name, False)
    # The last word of a multi-word name, when no icon is called that, stands for the first icon whose name
    # ends in it: "apples" -> red apples, "a slice" stays unread
    for icon in icons().values():
        for phrase in (icon.name, *icon.alternates):
            head = phrase.split()[-1]
            if " " in phrase and (head,) not in table:
                table[(head,)] = (icon.name, False)
                table.setdefault(tuple(words_of(plural(head))), (icon.name, True))
    return table


def words_of(prompt: str) -> list[str]:
    return re.findall(r"[a-z]+|[0-9]+", prompt.lower().replace("-", " "))


# ----------------------------------------------------------------------------------------------------
# The world's names as the prompt encoder reads them


class NameVectors:
    """The world's icon names as unit MiniLM states of "a NAME", and the same states of any words: what the name
    matcher (pipeline/worlds/icons/names.py) shortlists names by."""

    def __init__(self, encoder):
        self.encoder = encoder
        self._names: torch.Tensor | None = None  # (N, D)

    def name_vectors(self) -> torch.Tensor:
        if self._names is None:
            self._names = self.embed(names())
        return self._names

    def embed(self, words: list[str]) -> torch.Tensor:
        pooled = self.encoder.encode([f"a {w}" for w in words], cache=False).pooled.float()
        return torch.nn.functional.normalize(pooled, dim=-1)
