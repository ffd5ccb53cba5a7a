"""Grounding loss: each object's words attend to where that object is drawn.

A token-level attention loss after TokenCompose (Wang et al., 2024): the cross-attention map of the
words naming an object ("red", "circle"), normalised over the image, should put its mass inside the
object's box. The shapes world knows every box, so the supervision is exact and free.

Why it is here: the plain denoising loss left the direction of a relation at chance (bench/experiments/relations.py:
right axis 1.00, right way round 0.49), although a linear probe reads each object's role from its
word's MiniLM state 0.94 of the time (bench/relation_probe.py). At high noise the image does not say
where the circle is, so the only way to put the circle's attention on the right part of the image is to
read "above" from its key; this loss asks for exactly that.

    groups  (N, G, T)   per caption: weights over tokens for each object group (G = 2: objects 0 and 1;
                        a count scene's identical objects are one group), rows sum to 1 or are all 0
    masks   (B, G, H, W) per rendered image: the fraction of each pixel inside the group's boxes
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from torch.nn import functional as F

from pipeline.worlds.shapes import scenes as world

GROUPS = 2  # object groups per caption: objects[0] and objects[1]


# ----------------------------------------------------------------------------------------------------
# Which tokens name which object


def object_spans(example: world.Example) -> list[list[tuple[int, int]]]:
    """Per group, the character spans of the words that name it (colour and shape); [] when the caption
    does not name that group unambiguously (a pair of identical objects, a group the scene lacks)."""
    scene, text = example.scene, example.caption
    objs = scene.objects[:1] if scene.kind in ("single", "count") else scene.objects[:GROUPS]
    spans: list[list[tuple[int, int]]] = []
    for obj in objs:
        phrase = list(re.finditer(rf"\b{obj.color} {obj.shape}s?\b", text))
        twins = sum(o == obj for o in objs)
        if len(phrase) == 1 and twins == 1:  # "a striped red circle": colour and shape words
            start, end = phrase[0].span()
            spans.append([(start, start + len(obj.color)), (start + len(obj.color) + 1, end)])
            continue
        apart = [list(re.finditer(rf"\b{w}\b", text)) for w in (obj.color, rf"{obj.shape}s?")]
        if scene.kind == "count" and all(len(found) == 1 for found in apart):  # "three circles, all red"
            spans.append([found[0].span() for found in apart])
            continue
        spans.append([])
    return spans + [[] for _ in range(GROUPS - len(spans))]


def token_groups(tokenizer, examples: list[world.Example], length: int) -> torch.Tensor:
    """(N, G, length) weights: group g of caption n spreads 1 over the tokens inside its words' spans."""
    groups = torch.zeros(len(examples), GROUPS, length)
    offsets = tokenizer([e.caption for e in examples], return_offsets_mapping=True)["offset_mapping"]
    for n, (example, tokens) in enumerate(zip(examples, offsets)):
        for g, spans in enumerate(object_spans(example)):
            for t, (start, end) in enumerate(tokens[:length]):
                if end > start and any(start < e and s < end for s, e in spans):
                    groups[n, g, t] = 1
    return groups / groups.sum(-1, keepdim=True).clamp(min=1)


def box_masks(scene: world.Scene, layout: world.Layout, size: int) -> torch.Tensor:
    """(G, size, size): the fraction of each pixel inside each group's boxes (count: all boxes)."""
    masks = torch.zeros(GROUPS, size * 4, size * 4)  # drawn at 4x, then area-averaged
    scale = size * 4 / world.RESOLUTION
    for i, placed in enumerate(layout.placed):
        g = 0 if scene.kind == "count" else i
        if g < GROUPS:
            x0, y0, x1, y1 = (round(v * scale) for v in placed.box)
            masks[g, y0:y1, x0:x1] = 1
    return F.avg_pool2d(masks[None], 4)[0]


# ----------------------------------------------------------------------------------------------------
# Recording the UNet's cross-attention


class RecordingCrossAttention:
    """A cross-attention processor that computes softmax(QK^T) explicitly and keeps the head-averaged
    map (B, HW, T) in `recorder.maps` while recording; otherwise it is diffusers' SDPA processor."""

    def __init__(self, recorder: AttentionRecorder):
        self.recorder, self.fast = recorder, AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        if self.recorder.maps is None:
            return self.fast(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kw)
        b, n, _ = hidden_states.shape  # (B, HW, C): Transformer2DModel flattens before its blocks
        mask = attn.prepare_attention_mask(attention_mask, encoder_hidden_states.shape[1], b)
        q = attn.head_to_batch_dim(attn.to_q(hidden_states))  # (B*heads, HW, d)
        k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))  # (B*heads, T, d)
        v = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(q, k, mask)  # (B*heads, HW, T)
        self.recorder.maps.append(probs.view(b, attn.heads, n, -1).mean(1))
        out = attn.batch_to_head_dim(torch.bmm(probs, v))
        return attn.to_out[1](attn.to_out[0](out))


class AttentionRecorder:
    """Installs RecordingCrossAttention on every cross-attention layer of `unet`."""

    def __init__(self, unet):
        self.maps: list[torch.Tensor] | None = None
        procs = dict(unet.attn_processors)
        cross = [name for name in procs if name.endswith("attn2.processor")]
        procs.update({name: RecordingCrossAttention(self) for name in cross})
        unet.set_attn_processor(procs)
        self.layers = len(cross)

    @contextmanager
    def record(self):
        self.maps = []
        try:
            yield self.maps
        finally:
            self.maps = None


# ----------------------------------------------------------------------------------------------------
# The loss


def _shares(attn: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(B, G, HW): each group's attention (the mean over its words) as a distribution over pixels."""
    per_group = torch.einsum("bnt,bgt->bgn", attn.float(), groups)
    return per_group / per_group.sum(-1, keepdim=True).clamp(min=1e-8)


def _targets(masks: torch.Tensor, side: int) -> torch.Tensor:
    """(B, G, side * side): the box masks area-averaged to an attention map's grid."""
    return F.adaptive_avg_pool2d(masks, side).flatten(2)


def grounding_loss(maps: list[torch.Tensor], groups: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each named group's attention distribution against its box, as a distribution
    (uniform inside), averaged over layers and groups. A proper scoring rule: where the layout is still
    uncertain the best attention is spread over where the object may go. (The linear "1 - share inside",
    tried first, is best at a single most likely pixel: both objects of a pair attended the same spot and
    two-object scores fell from 0.95 to 0.45 in 500 steps.)
    maps: (B, HW, T) per layer; groups: (B, G, T); masks: (B, G, H, W) at the images' resolution."""
    valid = groups.sum(-1) > 0  # (B, G)
    if not valid.any():
        return maps[0].sum() * 0
    losses = []
    for attn in maps:
        target = _targets(masks, int(attn.shape[1] ** 0.5))
        target = target / target.sum(-1, keepdim=True).clamp(min=1e-8)
        ce = -(target * _shares(attn, groups).clamp(min=1e-8).log()).sum(-1)  # (B, G)
        losses.append(ce[valid].mean())
    return torch.stack(losses).mean()


def share_inside(maps: list[torch.Tensor], groups: torch.Tensor, masks: torch.Tensor) -> float:
    """The share of the named groups' attention that falls inside their boxes (mean over layers)."""
    valid = groups.sum(-1) > 0
    inside = [(_shares(a, groups) * _targets(masks, int(a.shape[1] ** 0.5))).sum(-1)[valid].mean() for a in maps]
    return torch.stack(inside).mean().item()


def attention_centres(maps: list[torch.Tensor], groups: torch.Tensor) -> torch.Tensor:
    """(B, G, 2): the (x, y) centre of mass of each group's attention, in [0, 1] image units, averaged
    over layers. Where a model means to draw each named object (bench/experiments/relations.py --attention-probe)."""
    centres = []
    for attn in maps:
        side = int(attn.shape[1] ** 0.5)
        share = _shares(attn, groups)
        grid = (torch.arange(side, dtype=torch.float32, device=attn.device) + 0.5) / side
        ys, xs = torch.meshgrid(grid, grid, indexing="ij")
        centres.append(torch.stack([share @ xs.flatten(), share @ ys.flatten()], -1))
    return torch.stack(centres).mean(0)
