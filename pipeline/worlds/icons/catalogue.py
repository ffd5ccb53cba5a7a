"""The icons world's catalogue (assets/icons: 151 emoji icons with names, CLDR alternates and held-out
names; built by scripts/build_icon_atlas.py) and its prompt reader.

`IconsReader` is the icons world's understanding stage: a word the world's captions never use, in a noun's
place ("a puppy", "two kittens"), is replaced by the icon whose name the prompt encoder (MiniLM) puts
nearest to it, when it is near enough. No training: what it knows is what the pretrained language model
knows. The training data lives in pipeline/worlds/icons/scenes.py.
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

from pipeline.worlds.base import Understood

ICONS_DIR = Path(__file__).resolve().parents[3] / "assets" / "icons"


@dataclass(frozen=True)
class Icon:
    name: str  # what captions call it
    category: str  # animal, food, vehicle, plant, weather, household
    alternates: tuple[str, ...]  # other names captions may use (CLDR keywords)
    heldout: tuple[str, ...]  # everyday synonyms no caption uses
    sprite: Image.Image = field(repr=False, compare=False)  # RGBA, square


@functools.cache
def icons() -> dict[str, Icon]:
    """The atlas's icons by name, in atlas order."""
    meta = json.loads((ICONS_DIR / "icons.json").read_text())
    atlas, side, cols = Image.open(ICONS_DIR / "atlas.png").convert("RGBA"), meta["sprite"], meta["columns"]
    out = {}
    for i, e in enumerate(meta["icons"]):
        x, y = (i % cols) * side, (i // cols) * side
        sprite = atlas.crop((x, y, x + side, y + side))
        out[e["name"]] = Icon(e["name"], e["category"], tuple(e["alternates"]), tuple(e["heldout"]), sprite)
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
# The prompt reader

_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*", re.IGNORECASE)
DETERMINERS = {
    "a",
    "an",
    "one",
    "two",
    "three",
    "some",
    "the",
    "of",
    "2",
    "3",
    "small",
    "big",
    "little",
    "large",
    "tiny",
    "huge",
    "cute",
    "happy",
}
# Nouns that say how to draw, not what: never read as an icon ("a photo of a puppy")
NOT_THINGS = {
    "photo",
    "picture",
    "image",
    "icon",
    "drawing",
    "painting",
    "emoji",
    "cartoon",
    "illustration",
    "sketch",
    "scene",
    "group",
    "row",
    "pair",
    "couple",
    "bunch",
    "lot",
    "background",
    "kind",
}
# Colours (of backgrounds, mostly) are never things
COLOURS = {
    "white",
    "black",
    "grey",
    "gray",
    "dark",
    "light",
    "blue",
    "green",
    "pink",
    "beige",
    "red",
    "yellow",
    "orange",
    "purple",
    "brown",
    "navy",
    "cream",
}
MIN_SIMILARITY = 0.45  # cosine of the pooled MiniLM states of "a WORD" and "a NAME" below which a word stays


class IconsReader:
    """The icons world's understanding stage (the same calls as pipeline/worlds/shapes/reader.py UnderstandingStage)."""

    def __init__(self, encoder):
        self.encoder, self.folder, self.available = encoder, ICONS_DIR, True
        # The world's names as word tuples (`phrase_table`, as the layout stage reads them): a word that starts a
        # longer one ("cherry blossom") is read with it, while a word only inside a name ("a cherry") is not a name
        self.phrases = set(phrase_table())
        # a plural-only name's singular ("a cherry": cherries) is that name whatever MiniLM thinks
        self.singulars = {
            w: n for n in names() if n.endswith("s") and len(n) > 4 for w in (n[:-3] + "y", n[:-1]) if plural(w) == n
        }
        # and every word the layout stage reads itself: "to the right of" keeps its "right"
        said = [*COLOUR_WORDS, *SIZE_WORDS, *NUMBER_WORDS, *RELATION_WORDS, *FILLER]
        self.known = COLOURS | {p[0] for p in self.phrases if len(p) == 1}
        self.known |= {w for phrase in said for w in phrase.split()}
        self.never = self.known | NOT_THINGS | DETERMINERS  # words never rewritten
        self._names: torch.Tensor | None = None  # (N, D) unit vectors of "a NAME"

    @property
    def loaded(self) -> bool:
        return self._names is not None

    def load_in_background(self) -> None:
        self.name_vectors()  # a fraction of a second: done at once

    def name_vectors(self) -> torch.Tensor:
        if self._names is None:
            self._names = self._embed(names())
        return self._names

    def _embed(self, words: list[str]) -> torch.Tensor:
        pooled = self.encoder.encode([f"a {w}" for w in words], cache=False).pooled.float()
        return torch.nn.functional.normalize(pooled, dim=-1)

    def nearest(self, word: str) -> tuple[str, float]:
        """The icon whose name is nearest to `word`, and the cosine similarity."""
        if word in self.singulars:
            return self.singulars[word], 1.0
        sims = (self._embed([word]) @ self.name_vectors().T)[0]
        i = int(sims.argmax())
        return names()[i], float(sims[i])

    def candidates(self, prompt: str, taught: frozenset[str] = frozenset()) -> list[tuple[int, int, str]]:
        """(start, end, word) of the words in a noun's place that the world's captions never use (nor a LoRA in
        force teaches: `taught`, its phrases' words)."""
        words = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(prompt)]
        found = []
        for k, (start, end, word) in enumerate(words):
            previous, following = words[k - 1][2] if k else "", words[k + 1][2] if k + 1 < len(words) else ""
            measure = following == "of"  # "a slice of pizza", "a cup of tea": the thing follows
            ahead = words_of(" ".join(w for _, _, w in words[k : k + 4]))  # hyphens split as the layout stage does
            named = any(tuple(ahead[:n]) in self.phrases for n in (2, 3, 4))
            if previous in DETERMINERS and not (measure or named) and word not in self.never | taught:
                found.append((start, end, word))
        return found

    def read(self, prompt: str, taught: frozenset[str] = frozenset()) -> str:
        """`prompt` with each unknown noun replaced by its nearest icon name (plural after two or three); the
        words in `taught` (a LoRA's new things) stay as written."""
        out, last = "", 0
        for start, end, word in self.candidates(prompt, taught):
            name, similarity = self.nearest(word)
            if similarity >= MIN_SIMILARITY:
                before = prompt[last:start]
                if re.search(r"\b(two|three|2|3|pair of|couple of)\s+(?:\w+\s+)?$", before.lower()):
                    name = plural(name)
                else:  # "an automobile" -> "a car": the article agrees with the new name
                    suffix = "n " if name[0] in "aeiou" else " "
                    before = re.sub(r"\b([Aa])n? $", lambda m, s=suffix: m.group(1) + s, before)
                out, last = out + before + name, end
        return out + prompt[last:]

    def names_content(self, prompt: str) -> bool:
        words = {m.group().lower() for m in _WORD.finditer(prompt)}
        return bool(words & set(names()) or self.candidates(prompt))

    def apply(self, prompts: list[str], understand: bool, taught: frozenset[str] = frozenset()) -> list[Understood]:
        if not understand:
            return [Understood(p, p, "off") for p in prompts]
        out = []
        for p in prompts:
            text = self.read(p, taught)
            out.append(Understood(p, text, "rewritten" if text != p else "as written"))
        return out
