"""Which of the icons world's eight backgrounds a colour said in words is, and what to say when none is.

A colour's RGB comes from the world's own background words (catalogue.py COLOUR_WORDS), the xkcd colour survey's
949 names (assets/colours/xkcd.json, CC0, as matplotlib ships it) or the CSS names pillow knows; "light",
"pale", "pastel", "dark", "deep" before a colour name lighten or darken it. The nearest background (CIELAB
distance) is used; when it is more than NEAR away the note says which was drawn instead.

    background_of("navy")        # ("dark blue", None)
    background_of("yellow")      # ("beige", 'no yellow background in this world: drew beige, the nearest')
    background_of("blorple")     # (None, '"blorple" is not a colour this app knows: the background is not set')
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from PIL import ImageColor

from pipeline.worlds.icons.catalogue import BACKGROUNDS, COLOUR_WORDS

XKCD = Path(__file__).resolve().parents[3] / "assets" / "colours" / "xkcd.json"
NEAR = 25.0  # delta E (CIE76) within which a colour is the background's own
FILLER = {"colour", "color", "coloured", "colored", "plain", "solid", "ish", "shade", "of", "a", "the", "background"}
LIGHTER = {"light": 0.45, "pale": 0.55, "pastel": 0.5, "baby": 0.5, "soft": 0.35, "bright": 0.2}
DARKER = {"dark": 0.45, "deep": 0.4, "navy": 0.5}


@functools.cache
def _xkcd() -> dict[str, str]:
    return json.loads(XKCD.read_text())["colours"]


def rgb(words: str) -> tuple[int, int, int] | None:
    """The RGB of a colour name, or None when no table knows it."""
    words = " ".join(w for w in words.lower().replace("-", " ").split() if w not in FILLER)
    if not words:
        return None
    if words in COLOUR_WORDS:
        return BACKGROUNDS[COLOUR_WORDS[words]]
    for name in (words, words.replace(" ", ""), words.replace("grey", "gray")):
        if name in _xkcd():
            return ImageColor.getrgb(_xkcd()[name])
        try:
            return ImageColor.getrgb(name)[:3]
        except ValueError:
            pass
    first, _, rest = words.partition(" ")
    base = rgb(rest) if rest and (first in LIGHTER or first in DARKER) else None
    if base is None:
        return None
    if first in LIGHTER:
        return tuple(round(c + (255 - c) * LIGHTER[first]) for c in base)
    return tuple(round(c * (1 - DARKER[first])) for c in base)


def lab(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of an sRGB colour: distances there follow what people see as different."""
    linear = [((c / 255 + 0.055) / 1.055) ** 2.4 if c / 255 > 0.04045 else c / 255 / 12.92 for c in colour]
    r, g, b = linear
    xyz = (
        (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047,
        0.2126 * r + 0.7152 * g + 0.0722 * b,
        (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883,
    )
    fx, fy, fz = (t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def nearest_background(colour: tuple[int, int, int]) -> tuple[str, float]:
    """The world's background nearest a colour, and the distance (CIE76 delta E)."""
    said = lab(colour)
    distance = {k: sum((a - b) ** 2 for a, b in zip(said, lab(v))) ** 0.5 for k, v in BACKGROUNDS.items()}
    best = min(distance, key=distance.get)
    return best, distance[best]


def background_of(words: str) -> tuple[str | None, str | None]:
    """The world's background a colour's words name (None: no colour known) and a note when it is not that one."""
    said = " ".join(words.lower().split())
    if said in COLOUR_WORDS:
        return COLOUR_WORDS[said], None
    colour = rgb(said)
    if colour is None:
        return None, f'"{said}" is not a colour this app knows: the background is not set'
    best, distance = nearest_background(colour)
    if distance > NEAR:
        return best, f"no {said} background in this world: drew {best}, the nearest"
    return best, None
