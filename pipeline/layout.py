"""The layout stage: where each object of a two-object prompt goes, and cross-attention that keeps it there.

The embedded UNet learnt what each named object is but not where it goes relative to the other: "a red
circle above a blue square" comes out with the right objects on the right axis, the right way round half
the time, even on captions it trained on (README, Relations). So, as LLM-grounded diffusion does (Lian et
al., 2023), the pipeline plans the layout before sampling:

    1. parse     the prompt's object phrases ("red circle", "blue square") and relation ("above")
    2. plan      one box per object that satisfies the relation, drawn from the image's seed
    3. attend    for the first three quarters of the denoising steps, each object's words are hidden from
                 every pixel outside its box: a hard regional cross-attention mask (DenseDiffusion, Kim et
                 al., 2023, modulates the same scores)

The plan is a pure function of (prompt, seed), so the recipe's seed still remakes the image. Only prompts
that name exactly two different objects get a plan; everything else samples exactly as before.

    boxes   (B, G, 4)  per image: x0, y0, x1, y1 of each object's box in [0, 1] image units (y down)
    tokens  (B, G, T)  per image: True at the prompt tokens that name object g (its colour and shape words)
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import AttnProcessor2_0

GROUPS = 2  # objects per plan
# The embedded shapes model's vocabulary (pipeline/worlds/shapes/scenes.py; a test keeps the two in step).
COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES = ("circle", "square", "triangle", "star")
# Relation phrases (matched longest first) and the direction each means for the object named before it.
RELATIONS = {
    "to the left of": "left of",
    "on the left of": "left of",
    "left of": "left of",
    "to the right of": "right of",
    "on the right of": "right of",
    "right of": "right of",
    "on top of": "above",
    "above": "above",
    "over": "above",
    "below": "below",
    "beneath": "below",
    "under": "below",
    "underneath": "below",
}
BOX_SIDE = (10 / 32, 14 / 32)  # an object's side, as a fraction of the image: the sizes the model was trained on
GAP = 4 / 32  # between the two boxes
MARGIN = 3 / 32  # a relation holds along its axis by this much more than across it
DILATE = 1.0  # the attention mask's box grows by this many cells of each attention map (see `attention_bias`)
HIDDEN = -30.0  # the attention score added where a word is hidden: exp(-30) ~ 1e-13, a hard mask
STEERED = 0.75  # the share of denoising steps, the first ones, that sample with the mask (`steered_steps`)


@dataclass(frozen=True)
class Named:
    """An object the prompt names, with where its words are in the prompt."""

    color: str
    shape: str
    spans: tuple[tuple[int, int], ...]  # character spans of its colour and shape words


@dataclass(frozen=True)
class Plan:
    objects: tuple[Named, Named]
    relation: str | None  # objects[0] is `relation` objects[1]; None: anywhere, apart
    boxes: tuple[tuple[float, float, float, float], ...]  # per object: x0, y0, x1, y1 in [0, 1]

    def describe(self) -> str:
        """ "red circle at (0.10, 0.05)-(0.50, 0.45); blue square at ..." for recipes and logs."""
        return "; ".join(
            f"{o.color} {o.shape} at ({b[0]:.2f}, {b[1]:.2f})-({b[2]:.2f}, {b[3]:.2f})"
            for o, b in zip(self.objects, self.boxes)
        )


# ----------------------------------------------------------------------------------------------------
# 1. Parse, 2. plan

_PHRASE = re.compile(rf"\b({'|'.join(COLORS)})\s+(?:[a-z]+\s+)?({'|'.join(SHAPES)})(s?)\b", re.IGNORECASE)
_RELATION = re.compile(rf"\b({'|'.join(sorted(RELATIONS, key=len, reverse=True))})\b", re.IGNORECASE)
_PRONOUN = re.compile(r"\s*(it|them)\b", re.IGNORECASE)


def parse(prompt: str) -> tuple[tuple[Named, Named], str | None] | None:
    """The two objects a prompt names and their relation, or None when it does not name exactly two
    different single objects ("a red circle", "three blue squares", "a red circle and a red circle").

    The relation reads as English: the object named just before the relation word is its subject and the
    one just after it its object ("a red circle above a blue square"); a pronoun after it ("a blue square
    with a red circle above it") points back to the other object."""
    text = prompt  # matched as written (case ignored), so spans index the prompt the tokenizer reads
    found = list(_PHRASE.finditer(text))
    if len(found) != 2 or any(m.group(3) for m in found):  # plurals are counts
        return None
    objects = tuple(Named(m.group(1).lower(), m.group(2).lower(), (m.span(1), m.span(2))) for m in found)
    if (objects[0].color, objects[0].shape) == (objects[1].color, objects[1].shape):
        return None
    relations = list(_RELATION.finditer(text))
    if len(relations) != 1:
        return objects, None
    rel = relations[0]
    relation = RELATIONS[rel.group(1).lower()]
    first_end, second_start = found[0].end(), found[1].start()
    if first_end <= rel.start() and rel.end() <= second_start:  # "A above B"
        return objects, relation
    if found[1].end() <= rel.start() and _PRONOUN.match(text, rel.end()):  # "B with A above it"
        return (objects[1], objects[0]), relation
    return objects, None  # a relation we cannot place: lay the objects out apart, in any direction


def steered_steps(steps: int) -> int:
    """How many of `steps` denoising steps, from the first, apply the mask: the noisy ones, where the layout
    and which object goes where are decided. The last quarter, which refines shapes, reads the whole prompt
    (masking every step drew two circles for "a circle and a square" more often: README, layout stage)."""
    return math.ceil(STEERED * steps)


def _holds(relation: str, a: tuple, b: tuple) -> bool:
    """True when box `a`'s centre is `relation` box `b`'s, along its axis by MARGIN more than across it."""
    dx = (b[0] + b[2] - a[0] - a[2]) / 2
    dy = (b[1] + b[3] - a[1] - a[3]) / 2
    along, across = {"left of": (dx, dy), "right of": (-dx, dy), "above": (dy, dx), "below": (-dy, dx)}[relation]
    return along > 0 and along >= abs(across) + MARGIN


def _apart(a: tuple, b: tuple) -> bool:
    return a[2] + GAP <= b[0] or b[2] + GAP <= a[0] or a[3] + GAP <= b[1] or b[3] + GAP <= a[1]


def plan(prompt: str, seed: int) -> Plan | None:
    """A layout for `prompt` drawn from `seed` (the same pair gives the same plan), or None (see `parse`)."""
    parsed = parse(prompt)
    if parsed is None:
        return None
    objects, relation = parsed
    rng = random.Random(seed)
    edge = 1 / 32  # keep a pixel from the border, as the training images do
    for _ in range(10_000):
        boxes = []
        for _obj in objects:
            side = rng.uniform(*BOX_SIDE)
            x0, y0 = rng.uniform(edge, 1 - edge - side), rng.uniform(edge, 1 - edge - side)
            boxes.append((x0, y0, x0 + side, y0 + side))
        if _apart(*boxes) and (relation is None or _holds(relation, *boxes)):
            return Plan(objects, relation, tuple(boxes))
    raise RuntimeError(f"no layout found for {prompt!r}")  # pragma: no cover - the sizes above always fit


# ----------------------------------------------------------------------------------------------------
# 3. Attend: the plans as tensors, and the cross-attention processor that applies them


@dataclass
class Regions:
    """Plans of a batch as tensors; a row without a plan has no tokens and changes nothing."""

    boxes: torch.Tensor  # (B, G, 4) in [0, 1]
    tokens: torch.Tensor  # (B, G, T) bool

    def to(self, device) -> Regions:
        return Regions(self.boxes.to(device), self.tokens.to(device))

    def with_unplanned_rows(self, n: int) -> Regions:
        """n rows without a plan in front: the unconditional half of a classifier-free-guidance batch."""
        b, g, t = self.tokens.shape
        return Regions(
            torch.cat([self.boxes.new_zeros(n, g, 4), self.boxes]),
            torch.cat([self.tokens.new_zeros(n, g, t), self.tokens]),
        )


def regions(plans: list[Plan | None], offsets: list[list[tuple[int, int]]], length: int) -> Regions | None:
    """Regions for a batch, from each prompt's tokenizer offsets (`return_offsets_mapping`) padded or cut
    to `length` tokens; None when no prompt has a plan."""
    if all(p is None for p in plans):
        return None
    boxes = torch.zeros(len(plans), GROUPS, 4)
    tokens = torch.zeros(len(plans), GROUPS, length, dtype=torch.bool)
    for n, (p, token_spans) in enumerate(zip(plans, offsets)):
        if p is None:
            continue
        boxes[n] = torch.tensor(p.boxes)
        for g, obj in enumerate(p.objects):
            for t, (start, end) in enumerate(token_spans[:length]):
                tokens[n, g, t] = end > start and any(start < e and s < end for s, e in obj.spans)
    return Regions(boxes, tokens)


def inside_boxes(regions: Regions, side: int) -> torch.Tensor:
    """(B, G, side * side) bool: which cells of a side x side attention map have their centre inside each
    object's box, grown by DILATE cells."""
    centres = (torch.arange(side, dtype=torch.float32, device=regions.boxes.device) + 0.5) / side
    ys, xs = centres[:, None].expand(side, side).flatten(), centres[None, :].expand(side, side).flatten()
    grow = DILATE / side
    x0, y0, x1, y1 = (regions.boxes[..., i, None] for i in range(4))  # (B, G, 1) each
    return (xs > x0 - grow) & (xs < x1 + grow) & (ys > y0 - grow) & (ys < y1 + grow)


def attention_bias(regions: Regions, side: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, side * side, T): HIDDEN where an object's words meet a pixel outside that object's box (grown by
    DILATE cells), 0 elsewhere. Words that name no object ("above", "a") are seen everywhere."""
    outside = ~inside_boxes(regions, side)
    hidden = torch.einsum("bgn,bgt->bnt", outside.float(), regions.tokens.float()) > 0  # rows without a plan: none
    return torch.zeros(hidden.shape, dtype=dtype, device=hidden.device).masked_fill(hidden, HIDDEN)


NARROW_HEAD = 16  # heads this narrow or narrower attend by explicit products on the CPU in bf16 (`attend`)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v for (B, heads, N, d) queries. On the CPU in bf16 with narrow heads (the
    embedded UNet's are 6 wide), two explicit batched products and a softmax beat PyTorch's fused SDPA kernel
    (docs/speed.md); elsewhere, SDPA."""
    if q.device.type != "cpu" or q.dtype != torch.bfloat16 or q.shape[-1] > NARROW_HEAD:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    with torch.autocast("cpu", enabled=False):  # autocast would take the softmax to fp32: 6x slower here
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        if bias is not None:
            scores = scores + bias
        return scores.softmax(-1) @ v


def _plain(attn) -> bool:
    """An attention layer of the kind a UNet's transformer blocks have: tokens in, tokens out, nothing
    around the attention itself (diffusers' processor handles the other kinds)."""
    return (
        attn.group_norm is None
        and attn.spatial_norm is None
        and attn.norm_cross is None
        and getattr(attn, "norm_q", None) is None
        and not attn.residual_connection
        and attn.rescale_output_factor == 1.0
    )


def _narrow_bf16_on_cpu(hidden_states: torch.Tensor, heads: int) -> bool:
    """Will this layer's attention run in bf16 on the CPU with narrow heads (where `attend` is faster)?"""
    if hidden_states.device.type != "cpu" or hidden_states.shape[-1] // heads > NARROW_HEAD:
        return False
    autocast_bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    return hidden_states.dtype == torch.bfloat16 or autocast_bf16


class RegionalAttention:
    """The UNet's attention processor: diffusers' SDPA processor, plus the `regions` mask on cross-attention
    when given (`unet(..., cross_attention_kwargs={"regions": r})`), and `attend`'s faster products for
    narrow heads on the CPU. Installed on every attention layer, so that self-attention accepts (and
    ignores) the same keyword."""

    def __init__(self):
        self.diffusers = AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, regions=None):
        cross = encoder_hidden_states is not None
        ours = (regions is not None and cross) or _narrow_bf16_on_cpu(hidden_states, attn.heads)
        if not ours or hidden_states.ndim != 3 or not _plain(attn):
            return self.diffusers(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        b, n, _ = hidden_states.shape  # (B, HW, C)
        context = encoder_hidden_states if cross else hidden_states
        t = context.shape[1]
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        q, k, v = (x.view(b, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2) for x in (q, k, v))
        bias = None
        if regions is not None and cross:
            bias = attention_bias(regions, int(n**0.5), q.dtype)[:, None, :, :t]  # (B, 1, HW, T)
        if attention_mask is not None:  # the prompt's padding, (B, T) of 1 / 0 or an additive (B, 1, T)
            pad = attn.prepare_attention_mask(attention_mask, t, b).view(b, attn.heads, -1, t).to(q.dtype)
            bias = pad if bias is None else bias + pad
        out = attend(q, k, v, bias)
        out = out.transpose(1, 2).reshape(b, n, -1).to(q.dtype)
        return attn.to_out[1](attn.to_out[0](out))


def install(unet) -> None:
    """Put RegionalAttention on every attention layer of `unet` (same outputs without regions)."""
    unet.set_attn_processor(RegionalAttention())
