"""The shapes world: coloured circles, squares and triangles at 32 px, in four drawing styles.

Its reader is a trained language-model classifier (reader.py), its layout stage steers cross-attention to one
box per named object (pipeline/layout.py), its finder reads shapes back by colour and outline (judge.py).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from pipeline import layout as layout_lib
from pipeline.worlds.base import LoraDemo, Staged
from pipeline.worlds.shapes import judge, reader, scenes


class ShapesWorld:
    name = "shapes"
    styles = {
        "flat": "in flat style",
        "outline": "in outline style",
        "striped": "in striped style",
        "soft": "in soft style",
    }
    examples = (
        "a red circle above a blue square",
        "three green triangles",
        "a striped yellow square to the left of a purple circle",
        "an outlined white triangle",
    )
    free_phrasing = "'a crimson disc over a navy cube' works"
    default_strength = 0.6  # the picture's own noise keeps its content; the style words change the rest
    scenes, judge = scenes, judge
    lora_demo = LoraDemo(
        scenes.write_star_demo,
        "Use the demo set instead: 40 stars, a shape the model never saw",
        "stars",
        "a red star; a blue star; two green stars",
    )

    def reader(self, encoder) -> reader.UnderstandingStage:
        return reader.UnderstandingStage(reader.READER_DIR, device=str(encoder.device))

    def without_style(self, caption: str) -> str:
        return reader.without_style(caption)

    def describe(self, image: Image.Image, resolution: int) -> str:
        return reader.describe_image(image)

    def text_to_image(self, encoder, generator, prompts, seeds, *, cond, layout: bool, taught) -> Staged:
        """A prompt that names two different objects gets a box each; their words steer only their own box."""
        plans = [layout_lib.plan(q, s) if layout else None for q, s in zip(prompts, seeds)]
        if not any(plans):
            return Staged(plans, {"regions": None})
        length = cond.states.shape[1]
        regions = layout_lib.regions(plans, token_spans(encoder, prompts, length), length)
        return Staged(plans, {"regions": regions})

    def restyle(self, encoder, generator, prompt, source, *, recipe, taught) -> Staged:
        return Staged([None], {})

    def inpaint(self, encoder, generator, prompt, mask, *, taught) -> Staged:
        return Staged([None], {})

    def load_taught(self, generator, path: Path, *, model: str) -> None:
        return None


def token_spans(encoder, prompts: list[str], length: int) -> list[list[tuple[int, int]]]:
    """Each prompt's token character spans, aligned with the encoder's `length` padded token states."""
    tok = encoder.tokenizer
    found = tok(prompts, truncation=True, max_length=encoder.max_tokens, return_offsets_mapping=True)
    spans = [list(o) for o in found["offset_mapping"]]
    return [[(0, 0)] * (length - len(o)) + o for o in spans] if tok.padding_side == "left" else spans


SHAPES = ShapesWorld()
