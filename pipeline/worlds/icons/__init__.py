"""The icons world: 151 emoji things at 64 px, alone, in pairs with a relation, counted, big or small, on eight
backgrounds. The app's default model draws it.

Its prompt reader is a trained tagger (reader.py); the things it finds are named by what MiniLM and SmolLM2 know
(names.py), colours by colour tables (colours.py), and what the world cannot draw is said (understand.py). Its
layout stage plans a box per thing and paints the map the generator reads (layout.py), its finder reads the
icons back from a picture by their blobs and a small classifier (judge.py).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from pipeline import images
from pipeline.worlds.base import LoraDemo, Staged
from pipeline.worlds.icons import judge, scenes
from pipeline.worlds.icons import layout as icons_layout
from pipeline.worlds.icons.understand import IconsUnderstanding


class IconsWorld:
    name = "icons"
    styles = {  # one look; a restyle puts the picture on another background
        "dark blue": "on a dark blue background",
        "pink": "on a pink background",
        "black": "on a black background",
        "white": "on a white background",
    }
    examples = (
        "a frog next to a pizza",
        "three red apples on a pink background",
        "a rocket above a moon on a dark blue background",
        "a puppy",
    )
    free_phrasing = "'could you draw a moon with a rocket above it, on navy?' works"
    # Its styles are backgrounds and the layout map keeps each thing where it is, so a restyle starts from noise
    default_strength = 1.0
    scenes, judge = scenes, judge
    lora_demo = LoraDemo(
        scenes.write_kite_demo,
        "Use the demo set instead: 40 pictures of a kite, a thing the model never saw",
        "kite",
        "a kite; a kite on a pink background; a small kite; a kite to the left of a cat",
    )

    def reader(self, encoder) -> IconsUnderstanding:
        return IconsUnderstanding(encoder)

    def without_style(self, caption: str) -> str:
        return caption  # its styles are backgrounds, which the restyle's words replace

    def describe(self, image: Image.Image, resolution: int) -> str:
        scene = judge.scene_of(_at(image, resolution))
        return scene[0] if scene else ""

    def text_to_image(self, encoder, generator, prompts, seeds, *, cond, layout: bool, taught) -> Staged:
        """A box per thing and the map the generator reads; the icons GAN also gets unsaid backgrounds planned."""
        if generator.layout_encoder is None:
            return Staged([None] * len(prompts), {})
        backgrounds = getattr(generator, "plans_background", False)
        plans, batch = icons_layout.layout_for(encoder, prompts, seeds, taught, backgrounds=backgrounds)
        return Staged(plans, {"layout": batch})

    def restyle(self, encoder, generator, prompt, source, *, recipe, taught) -> Staged:
        """The picture's things where they are: planned from its recipe's seed (the same boxes), or found in it
        when it carries none; no layout when neither works."""
        if generator.layout_encoder is None:
            return Staged([None], {})
        if recipe is not None:
            return Staged([None], {"layout": icons_layout.layout_for(encoder, [prompt], [recipe.seed], taught)[1]})
        background = icons_layout.read_request(prompt, taught).background
        scene = judge.scene_of(_at(source, generator.resolution), background)
        return Staged([None], {"layout": None if scene is None else icons_layout.encode_plans(encoder, [scene[1]])})

    def inpaint(self, encoder, generator, prompt, mask, *, taught) -> Staged:
        """The asked thing planned in the painted region."""
        if generator.layout_encoder is None:
            return Staged([None], {})
        plan = icons_layout.plan_in_mask(icons_layout.read_request(prompt, taught), mask)
        return Staged([None], {"layout": icons_layout.encode_plans(encoder, [plan])})

    def load_taught(self, generator, path: Path, *, model: str) -> TaughtPainter | None:
        """An icons LoRA also draws its new things' sketches (train/icons_lora.py): its painter weights."""
        if generator.layout_encoder is None:
            return None
        taught, phrases = icons_layout.read_lora_painter(path)
        if taught is None:
            return None
        return TaughtPainter(generator.layout_encoder.painter, taught, tuple(phrases), name=path.name, model=model)


class TaughtPainter:
    """A LoRA's sketch painter in force: its weights loaded into the layout stage's painter, scaled with the LoRA,
    the base's weights put back by `restore`."""

    def __init__(self, painter, taught: dict, phrases: tuple[str, ...], *, name: str, model: str):
        self.painter, self.phrases = painter, phrases
        self.base = {k: v.clone() for k, v in painter.state_dict().items()}
        try:
            self.taught = {k: v.to(self.base[k].dtype) for k, v in taught.items()}
            painter.load_state_dict(self.taught)
        except (RuntimeError, KeyError) as err:
            painter.load_state_dict(self.base)
            raise ValueError(f"{name}'s sketch painter does not fit {model}: {type(err).__name__}") from err

    def scale(self, scale: float) -> None:
        """The painter's weights as far from the base's as the scale says."""
        base, taught = self.base, self.taught
        self.painter.load_state_dict({k: base[k] + scale * (taught[k] - base[k]) for k in base})

    def restore(self) -> None:
        self.painter.load_state_dict(self.base)


def _at(image: Image.Image, resolution: int) -> Image.Image:
    """The picture as the model draws it (RGB at its resolution), which the finder reads."""
    return images.to_pil(images.to_model(image, resolution))[0]


ICONS = IconsWorld()
