"""Recipes: everything needed to make an image again, stored inside its PNG.

Two text chunks: `parameters` in AUTOMATIC1111's format (so other tools read it) and `wordbrush`, JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from PIL import Image, PngImagePlugin


@dataclass(frozen=True)
class Recipe:
    prompt: str  # as the user wrote it
    seed: int
    steps: int
    guidance: float
    model: str  # preset name, folder or hub id
    generator: str  # "diffusion" or "gan"
    encoder: str  # the language model that read the prompt
    width: int
    height: int
    task: str = "text_to_image"  # or "style_transfer", "inpaint"
    encoded_prompt: str = ""  # the prompt as the language-model stage saw it (after cuts or rewrites)
    strength: float | None = None  # style transfer: how far from the input image
    lora: str | None = None  # "file:scale"
    expanded: bool = False  # encoded_prompt is the LM expander's rewrite of prompt
    layout: str | None = None  # the layout stage's plan (pipeline/layout.py), None: sampled without one
    understood: str | None = (
        None  # how the prompt was read (pipeline/worlds/shapes/reader.py): "rewritten", "as written"...
    )
    not_drawn: list[str] = field(default_factory=list)  # what the model could not draw as asked (Understood.notes)
    described: bool = False  # style transfer: the prompt was completed with a description of the input image

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> Recipe:
        data = json.loads(text)
        known = {f.name for f in fields(Recipe)}
        return Recipe(**{k: v for k, v in data.items() if k in known})

    def to_a1111(self) -> str:
        """AUTOMATIC1111's `parameters` text: prompt line, then `Key: value` pairs."""
        pairs = [
            f"Steps: {self.steps}",
            {"diffusion": "Sampler: DPM++ 2M", "gan": "Sampler: GAN (one step)"}.get(
                self.generator, "Sampler: checkpoint default"
            ),
            f"CFG scale: {self.guidance}",
            f"Seed: {self.seed}",
            f"Size: {self.width}x{self.height}",
            f"Model: {self.model}",
        ]
        if self.strength is not None:
            pairs.append(f"Denoising strength: {self.strength}")
        if self.lora:
            pairs.append(f"Lora: {self.lora}")
        if self.understood == "rewritten" or self.described:
            pairs.append(f'Understood as: "{self.encoded_prompt}"')
        if self.not_drawn:
            pairs.append(f'Not drawn: "{"; ".join(self.not_drawn)}"')
        if self.expanded:
            pairs.append(f'Expanded prompt: "{self.encoded_prompt}"')
        if self.layout:
            pairs.append(f'Layout: "{self.layout}"')
        return f"{self.prompt}\n" + ", ".join(pairs)


def png_info(recipe: Recipe) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", recipe.to_a1111())
    info.add_text("wordbrush", recipe.to_json())
    return info


def with_recipe(image: Image.Image, recipe: Recipe) -> Image.Image:
    """A copy of `image` carrying its recipe as PNG text (what `save_png` writes, and gradio keeps when it
    saves a PIL image as PNG)."""
    image = image.copy()
    image.info.update({"parameters": recipe.to_a1111(), "wordbrush": recipe.to_json()})
    return image


def save_png(image: Image.Image, recipe: Recipe, path: str | Path) -> None:
    image.save(path, pnginfo=png_info(recipe))


def read_recipe(image: Image.Image) -> Recipe | None:
    """The recipe stored in a PNG written by Wordbrush, or None."""
    text = getattr(image, "text", None) or image.info
    if "wordbrush" in text:
        return Recipe.from_json(text["wordbrush"])
    return None
