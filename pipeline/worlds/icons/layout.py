"""The icons world's layout stage: what a prompt asks for, where each icon goes, and the map the UNet reads.

A text-to-image UNet learns *what* a caption names slowly and *where* more slowly still (the shapes world's
relation directions stayed at chance after 304k images). Layout-to-image models (GLIGEN, Li et al., 2023;
LayoutDiffusion, Zheng et al., 2023) give the denoiser each object's phrase embedding at its box instead, and
that is what the icons model does:

    1. read    the prompt's icons (names, CLDR alternates, plurals), counts, relation, size and background
    2. plan    one box per icon, drawn from the image's seed the way the world draws its own scenes
    3. encode  each icon's name and the background's through the language model (its pooled states)
    4. map     (LAYOUT_INPUTS, g, g): inside each box the icon's code (a learnt projection of its state) and
               where in the box the cell lies; everywhere the background's code. The UNet reads it beside
               the noisy image (pipeline/diffusion.py `unet_inputs`).

Reading and planning are pure functions of (prompt, seed): the recipe's seed remakes the image. A thing the
world has no name for ("a zorb", taught by a LoRA) becomes one object whose phrase is the prompt's own words.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from pipeline.worlds.icons.catalogue import (  # noqa: F401  (BACKGROUNDS: the world's, shared with pipeline/worlds/icons/scenes.py)
    BACKGROUNDS,
    COLOUR_WORDS,
    FILLER,
    NUMBER_WORDS,
    RELATION_WORDS,
    SIZE_WORDS,
    icons,
    phrase_table,
    plural,
    visible_on,
    words_of,
)

RESOLUTION = 64  # the icons world's image side in pixels
MAX_ICONS = 3
# Icon side in pixels by icons in the scene, and for a single icon said to be small or big
SIDE = {1: (28, 38), 2: (22, 28), 3: (18, 22), "small": (18, 22), "big": (44, 52)}
GAP, MARGIN = 7, 6  # pixels between boxes; a relation holds along its axis by this much more than across it


@dataclass(frozen=True)
class Request:
    """What a prompt asks for: the things in order (an icon's name, or a phrase for a thing the world does
    not name), the relation of the first to the second, a single thing's size and the background."""

    things: tuple[str, ...]
    relation: str | None = None
    size: str | None = None  # "small", "big" or None (medium)
    background: str | None = None  # a key of BACKGROUNDS, or None: not said


@dataclass(frozen=True)
class Plan:
    request: Request
    boxes: tuple[tuple[float, float, float, float], ...]  # per thing: x0, y0, x1, y1 in pixels

    def describe(self) -> str:
        """ "dog at (4, 10)-(32, 38); frog at ..." for recipes and logs."""
        placed = "; ".join(
            f"{t} at ({b[0]:.0f}, {b[1]:.0f})-({b[2]:.0f}, {b[3]:.0f})" for t, b in zip(self.request.things, self.boxes)
        )
        return placed + (f"; background {self.request.background}" if self.request.background else "")


# ----------------------------------------------------------------------------------------------------
# 1. Read


def _match(words: list[str], i: int, phrases: dict) -> tuple[int, object] | None:
    """The longest phrase of `phrases` (word tuples) starting at words[i]: (its length, its value)."""
    for n in (4, 3, 2, 1):
        value = phrases.get(tuple(words[i : i + n]))
        if value is not None:
            return n, value
    return None


def read_request(prompt: str, taught: tuple[str, ...] = ()) -> Request:
    """The things, relation, size and background a prompt asks for (see `Request`). taught: the phrases of
    things a LoRA in force teaches ("kite"), read as names beside the world's own."""
    words = words_of(prompt)
    colours = {tuple(k.split()): v for k, v in COLOUR_WORDS.items()}
    relations = {tuple(k.split()): v for k, v in RELATION_WORDS.items()}
    table = phrase_table()
    if taught:
        table = {
            **table,
            **{
                tuple(words_of(form)): (phrase, form != phrase)
                for phrase in taught
                for form in (plural(phrase), phrase)
            },
        }
    things: list[tuple[str, int]] = []  # (name, count)
    relation = size = background = None
    relation_after = None  # how many things were named before the relation phrase
    count, i, last_thing = None, 0, -1
    while i < len(words):
        w = words[i]
        thing, colour, rel = _match(words, i, table), _match(words, i, colours), _match(words, i, relations)
        if thing is not None:
            name, is_plural = thing[1]
            if not (things and things[-1][0] == name and last_thing == i):  # "crescent moon": one moon
                things.append((name, count or (2 if is_plural else 1)))
            i, count = i + thing[0], None
            last_thing = i
        elif colour is not None and _is_background(words, i + colour[0]):
            background, i = colour[1], i + colour[0]
        elif rel is not None and relation is None:
            relation, relation_after, i = rel[1], len(things), i + rel[0]
        else:
            count = NUMBER_WORDS.get(w, count)  # the last number before a thing is its count
            size = SIZE_WORDS.get(w, size)
            i += 1
    if not things:
        return Request((_unknown_phrase(words),), None, size, background)
    names = tuple(n for n, c in things for _ in range(c))[:MAX_ICONS]
    # a relation holds between the first two things when it is said between them: "a rocket above a moon"
    keep = relation if relation_after == 1 and len(names) >= 2 and names[0] != names[1] else None
    return Request(names, keep, size if len(names) == 1 else None, background)


def _is_background(words: list[str], after: int) -> bool:
    """A colour is the background's when it ends the prompt ("a frog on pink") or "background" or "backdrop"
    follows it; "a pink pig" keeps its colour to itself."""
    return after >= len(words) or words[after] in ("background", "backdrop")


def _unknown_phrase(words: list[str]) -> str:
    """The prompt's own words for a thing the world does not name: what is left without the filler, numbers,
    sizes and colours ("a zorb on a pink background" -> "zorb")."""
    colour_words = {w for c in COLOUR_WORDS for w in c.split()}
    kept = [w for w in words if w not in FILLER | set(NUMBER_WORDS) | set(SIZE_WORDS) | colour_words]
    return " ".join(kept) or "thing"


# ----------------------------------------------------------------------------------------------------
# 2. Plan


def relation_holds(relation: str, a: tuple[float, float], b: tuple[float, float], margin: float) -> bool:
    """True when centre `a` is `relation` centre `b`, along its axis by `margin` more than across it."""
    dx, dy = b[0] - a[0], b[1] - a[1]  # image y grows downwards
    along, across = {"left of": (dx, dy), "right of": (-dx, dy), "above": (dy, dx), "below": (-dy, dx)}[relation]
    return along > 0 and along >= abs(across) + margin


def apart(p, q, gap: float) -> bool:
    return p[2] + gap <= q[0] or q[2] + gap <= p[0] or p[3] + gap <= q[1] or q[3] + gap <= p[1]


def sample_boxes(
    n: int, rng: random.Random, *, size: str | None = None, relation: str | None = None, resolution: int = RESOLUTION
) -> tuple[tuple[float, float, float, float], ...]:
    """n random square boxes, GAP px apart and 1 px from the border, the first `relation` the second."""
    lo, hi = SIDE[size or n]
    scale = resolution / RESOLUTION
    for _ in range(10_000):
        boxes = []
        for _thing in range(n):
            side = rng.uniform(lo, hi) * scale
            x0, y0 = rng.uniform(1, resolution - 1 - side), rng.uniform(1, resolution - 1 - side)
            boxes.append((x0, y0, x0 + side, y0 + side))
        if not all(apart(p, q, GAP * scale) for i, p in enumerate(boxes) for q in boxes[i + 1 :]):
            continue
        centers = [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in boxes]
        if relation and not relation_holds(relation, *centers[:2], margin=MARGIN * scale):
            continue
        return tuple(boxes)
    raise RuntimeError(f"could not place {n} boxes")  # pragma: no cover - the sizes above always fit


def plan(request: Request, seed: int) -> Plan:
    """Boxes for the request's things, drawn from the image's seed."""
    boxes = sample_boxes(len(request.things), random.Random(seed), size=request.size, relation=request.relation)
    return Plan(request, boxes)


def with_background(request: Request, seed: int) -> Request:
    """The request with a background drawn from the image's seed when it names none: one of the world's on which
    all its things stand out, as the world draws its scenes. For a generator that does not choose one itself
    well (the icons GAN)."""
    if request.background is not None:
        return request
    known = [t for t in request.things if t in icons()]
    fits = [b for b in BACKGROUNDS if all(visible_on(t, b) for t in known)] or list(BACKGROUNDS)
    return replace(request, background=random.Random(f"{seed}-background").choice(fits))


def plan_in_mask(request: Request, mask) -> Plan:
    """Inpainting: the thing to draw (the last one named: "replace the cat with a dog") in the largest square
    that fits the painted mask's bounding box, 2 px inside it. mask: (H, W) bool at the model's resolution."""
    ys, xs = mask.nonzero()
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1
    side = max(4.0, min(x1 - x0, y1 - y0) - 4)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    thing = Request((request.things[-1],), background=request.background)
    return Plan(thing, ((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2),))


def snapped(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """The pixels a box covers as the renderer draws it: its corner and side rounded."""
    x0, y0, side = round(box[0]), round(box[1]), max(1, round(box[2] - box[0]))
    return x0, y0, x0 + side, y0 + side


# ----------------------------------------------------------------------------------------------------
# 3. Encode and 4. map


@dataclass
class LayoutBatch:
    """A batch of plans as tensors: the things' and backgrounds' language-model states and the boxes."""

    things: torch.Tensor  # (B, MAX_ICONS, D) pooled states of each thing's name (zero where none)
    present: torch.Tensor  # (B, MAX_ICONS) bool
    boxes: torch.Tensor  # (B, MAX_ICONS, 4) snapped pixel boxes x0, y0, x1, y1
    background: torch.Tensor  # (B, D) pooled state of the background's name (zero where not said)
    said: torch.Tensor  # (B,) bool: the background was said

    def __getitem__(self, rows: slice) -> LayoutBatch:
        return LayoutBatch(*(t[rows] for t in (self.things, self.present, self.boxes, self.background, self.said)))

    def to(self, device) -> LayoutBatch:
        return LayoutBatch(*(t.to(device) for t in (self.things, self.present, self.boxes, self.background, self.said)))


def encode_plans(encoder, plans: list[Plan]) -> LayoutBatch:
    """The plans' things and backgrounds through the prompt encoder (pooled states, cached by the encoder)."""
    phrases = sorted({t for p in plans for t in p.request.things} | {p.request.background or "" for p in plans})
    states = dict(zip(phrases, encoder.encode(phrases).pooled.float()))
    zero = torch.zeros_like(states[phrases[0]])
    things = torch.stack(
        [torch.stack([states[t] for t in p.request.things] + [zero] * (MAX_ICONS - len(p.boxes))) for p in plans]
    )
    present = torch.tensor([[i < len(p.boxes) for i in range(MAX_ICONS)] for p in plans])
    boxes = torch.tensor([[snapped(b) for b in p.boxes] + [(0, 0, 0, 0)] * (MAX_ICONS - len(p.boxes)) for p in plans])
    background = torch.stack([states[p.request.background] if p.request.background else zero for p in plans])
    said = torch.tensor([p.request.background is not None for p in plans])
    return LayoutBatch(things, present, boxes.float(), background, said)


def layout_for(
    encoder, prompts: list[str], seeds: list[int], taught: tuple[str, ...] = (), *, backgrounds: bool = False
) -> tuple[list[Plan], LayoutBatch]:
    """Steps 1 to 3 for a batch of prompts (as the prompt reader left them) and their images' seeds; `taught`:
    the phrases a LoRA in force teaches (`read_request`); `backgrounds`: plan the unsaid ones (`with_background`)."""
    requests = [read_request(p, taught) for p in prompts]
    if backgrounds:
        requests = [with_background(r, s) for r, s in zip(requests, seeds)]
    plans = [plan(r, s) for r, s in zip(requests, seeds)]
    return plans, encode_plans(encoder, plans)


CODE_DIM = 32  # a phrase's code: the learnt projection of its 384-d state
FREQUENCIES = (1, 2, 4)  # Fourier features of the position inside a box (sin and cos of pi f u, pi f v)
SKETCH_SIDE = 32  # the sketch painter's pictures, in pixels a side
SKETCH_SUB = 2  # the sketch is pasted at twice the map's grid (a 64 px image's every pixel), folded into channels
SKETCH_INPUTS = 4 * SKETCH_SUB**2  # premultiplied colour and alpha per sub-cell
# thing code, inside, u, v, Fourier, background code, said, sketch
LAYOUT_INPUTS = 2 * CODE_DIM + 4 + 4 * len(FREQUENCIES) + SKETCH_INPUTS


def _upsample(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.GELU()
    )


class SketchPainter(nn.Module):
    """A phrase's language-model state (centred) -> a small RGBA picture of the thing: (N, 4, SKETCH_SIDE,
    SKETCH_SIDE), premultiplied colour and alpha in [0, 1]. Trained to draw each icon's sprite from its name
    (train/icons_diffusion.py `sketch_loss`), it gives the UNet a draft of every icon in its box: the UNet then
    learns to refine a drawing instead of memorising 151 sprites through the diffusion loss alone (0.21 of
    single icons right after 99k images without it)."""

    def __init__(self, cond_dim: int = 384, width: int = 128):
        super().__init__()
        self.start = SKETCH_SIDE // 8
        self.proj = nn.Sequential(
            nn.Linear(cond_dim, width), nn.LayerNorm(width), nn.GELU(), nn.Linear(width, width * self.start**2)
        )
        self.up = nn.Sequential(_upsample(width, width), _upsample(width, 64), _upsample(64, 32))
        self.out = nn.Conv2d(32, 4, 3, padding=1)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        x = self.proj(states).view(len(states), -1, self.start, self.start)
        out = self.out(self.up(x))
        alpha = torch.sigmoid(out[:, 3:])
        return torch.cat([torch.sigmoid(out[:, :3]) * alpha, alpha], dim=1)


def box_coords(layout: LayoutBatch, n: int, resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each cell of an n x n grid (its centre in pixels) lies in each thing's box: u (along x) and v, in
    [-1, 1] inside the box, and `inside` (1 in the box of a present thing, else 0); each (B, MAX_ICONS, n, n)."""
    centre = (torch.arange(n, device=layout.boxes.device, dtype=torch.float32) + 0.5) * (resolution / n)
    x0, y0, x1, y1 = (layout.boxes[..., k, None] for k in range(4))  # (B, G, 1)
    u = (centre - x0) / (x1 - x0).clamp(min=1) * 2 - 1  # (B, G, n): along x
    v = (centre - y0) / (y1 - y0).clamp(min=1) * 2 - 1
    inside = (v.abs()[..., :, None] < 1) & (u.abs()[..., None, :] < 1) & layout.present[..., None, None]
    return u[..., None, :].expand(inside.shape), v[..., :, None].expand(inside.shape), inside.float()


class LayoutEncoder(nn.Module):
    """The layout map's learnt part: language-model states to codes and sketches. A state first loses `center`
    (the mean state of the world's names: what every name's state shares, a cosine of 0.29 between two names
    on average, -0.01 without it), then a linear projection, then a normalisation to zero mean and unit
    variance across the code, so that a code tells one thing from another at full strength from the first
    step (projected raw, the codes of different icons differed by 0.14 per channel against map inputs of 1,
    and 32k training images drew every icon alike). The centred state also goes to the `SketchPainter`."""

    def __init__(self, cond_dim: int = 384):
        super().__init__()
        self.register_buffer("center", torch.zeros(cond_dim))
        self.proj = nn.Linear(cond_dim, CODE_DIM)
        self.norm = nn.LayerNorm(CODE_DIM, elementwise_affine=False)
        self.painter = SketchPainter(cond_dim)

    def centred(self, states: torch.Tensor) -> torch.Tensor:
        return states.to(self.proj.weight.dtype) - self.center.to(self.proj.weight.dtype)

    def code(self, states: torch.Tensor) -> torch.Tensor:
        """(..., D) language-model states -> (..., CODE_DIM) codes."""
        return self.norm(self.proj(self.centred(states)))

    def sketch(self, states: torch.Tensor) -> torch.Tensor:
        """(N, D) language-model states -> (N, 4, SKETCH_SIDE, SKETCH_SIDE) premultiplied RGBA drafts."""
        return self.painter(self.centred(states))

    @torch.inference_mode()
    def per_image(self, layout: LayoutBatch, grid: int, resolution: int = RESOLUTION) -> list[torch.Tensor]:
        """Each image's map computed alone, (1, LAYOUT_INPUTS, grid, grid) each: a matmul's kernel, and so its
        bits, depend on its rows, so a request gets the same map alone as in any batch."""
        return [self(layout[i : i + 1], grid, resolution) for i in range(layout.things.shape[0])]

    def forward(self, layout: LayoutBatch, grid: int, resolution: int = RESOLUTION) -> torch.Tensor:
        """(B, LAYOUT_INPUTS, grid, grid): per cell, the code of the thing whose box holds it with the cell's
        place in the box (u, v and their Fourier features), the background's code, and the things' sketches
        pasted into their boxes (at SKETCH_SUB x SKETCH_SUB sub-cells, folded into channels)."""
        dtype = self.proj.weight.dtype
        u, v, inside = box_coords(layout, grid, resolution)  # (B, G, grid, grid)
        place = [u, v] + [f(torch.pi * k * c) for k in FREQUENCIES for c in (u, v) for f in (torch.sin, torch.cos)]
        place = torch.stack(place, dim=2) * inside[:, :, None]  # (B, G, P, grid, grid)
        codes = self.code(layout.things) * layout.present[..., None]  # (B, G, C)
        thing = torch.einsum("bgc,bghw->bchw", codes, inside.to(dtype))
        background = self.code(layout.background) * layout.said[:, None]  # (B, C)
        said = layout.said.to(dtype)[:, None]
        flat = torch.cat([background, said], dim=1)[..., None, None].expand(-1, -1, grid, grid)
        parts = [
            thing,
            inside.sum(1, keepdim=True).to(dtype),
            place.sum(1).to(dtype),
            flat,
            self._pasted(layout, grid, resolution),
        ]
        return torch.cat(parts, dim=1)

    def _pasted(self, layout: LayoutBatch, grid: int, resolution: int) -> torch.Tensor:
        """(B, SKETCH_INPUTS, grid, grid): each present thing's sketch resampled into its box."""
        b, g = layout.present.shape
        n = grid * SKETCH_SUB
        u, v, inside = box_coords(layout, n, resolution)  # (B, G, n, n)
        present = layout.present.flatten()
        sketches = layout.things.new_zeros(b * g, 4, SKETCH_SIDE, SKETCH_SIDE, dtype=self.proj.weight.dtype)
        sketches[present] = self.sketch(layout.things.flatten(0, 1)[present])  # (B G, 4, S, S): present only
        where = torch.stack([u, v], dim=-1).flatten(0, 1).to(sketches.dtype)  # (B G, n, n, 2): x, y in [-1, 1]
        pasted = F.grid_sample(sketches, where, align_corners=False).view(b, g, 4, n, n)
        pasted = (pasted * inside[:, :, None].to(pasted.dtype)).sum(1)  # boxes never overlap
        return F.pixel_unshuffle(pasted, SKETCH_SUB)


LAYOUT_FILE = "layout.safetensors"  # a model folder's layout encoder, beside its generator


def save_layout_encoder(encoder: LayoutEncoder, folder: str | Path) -> None:
    save_file({k: v.half().contiguous() for k, v in encoder.state_dict().items()}, Path(folder) / LAYOUT_FILE)


def load_layout_encoder(folder: str | Path, *, cond_dim: int = 384, device: str = "cpu") -> LayoutEncoder:
    """The folder's layout encoder, fp32, for inference."""
    encoder = LayoutEncoder(cond_dim)
    encoder.load_state_dict({k: v.float() for k, v in load_file(Path(folder) / LAYOUT_FILE).items()})
    return encoder.to(device).eval()


LORA_PHRASES = "wordbrush_phrases"  # an icons LoRA file's metadata: the phrases it teaches, as a JSON list
LORA_PAINTER = "painter."  # and the prefix of its sketch painter's tensors


def read_lora_painter(path: str | Path) -> tuple[dict[str, torch.Tensor] | None, list[str]]:
    """An icons LoRA file's sketch painter weights (None when it has none) and the phrases it teaches."""
    with safe_open(str(path), "pt") as f:
        phrases = json.loads((f.metadata() or {}).get(LORA_PHRASES, "[]"))
        keys = [k for k in f.keys() if k.startswith(LORA_PAINTER)]
        weights = {k[len(LORA_PAINTER) :]: f.get_tensor(k).float() for k in keys}
    return weights or None, [p for p in phrases if isinstance(p, str)]
