"""What an embedded world is: the protocol each world object answers, and what its stages hand the pipeline.

A world (pipeline/worlds/shapes, pipeline/worlds/icons) is everything a model of ours knows about the pictures it
draws: the words it reads (its prompt reader), where things go (its layout stage), how to read a picture back (its
finder and judge), its training scenes, styles, examples and LoRA demo. `pipeline.worlds.WORLDS` names them; a
model folder's config says which one it draws. The pipeline (pipeline/core.py) asks its world and never its name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Protocol

from PIL import Image


@dataclass(frozen=True)
class Understood:
    """How one prompt was understood."""

    prompt: str  # as the user wrote it
    text: str  # what the generator reads
    how: str  # "rewritten", "as written" (the world's own words), "not understood", "too long" or "off"
    notes: tuple[str, ...] = ()  # what the model cannot draw as asked, and what it draws instead

    def describe(self) -> str:
        """A line for the page, the CLI and logs, and a line per note."""
        return "\n".join([self._line(), *(f"not drawn as asked: {n}" for n in self.notes)])

    def _line(self) -> str:
        if self.how == "rewritten":
            return f"understood as: {self.text}"
        if self.how == "as written":
            return "in the world's own words: drawn as written"
        if self.how == "off":
            return "understanding off: drawn as written"
        if self.how == "too long":
            return "too long to read: drawn as written (the prompt encoder reads its first 64 tokens)"
        return "not understood as a scene of this world: drawn as written"


@dataclass(frozen=True)
class Staged:
    """What a world's layout stage hands the generator for a batch: a plan per image (None: unplanned), written
    into each recipe, and the generator's extra inputs (`regions` for cross-attention steering, `layout` for a
    layout map), passed to `generate` by name."""

    plans: list = field(default_factory=list)  # per image: a plan with .describe(), or None
    inputs: dict = field(default_factory=dict)  # keyword arguments of the generator's `generate`


@dataclass(frozen=True)
class LoraDemo:
    """A captioned picture set drawn by code, of something the world's models never saw: the Train tab's demo."""

    write: Callable[[Path], Path]  # writes the captioned pictures into a folder, returns it
    label: str  # the tab's checkbox label
    name: str  # the LoRA's default name
    prompts: str  # validation prompts, ;-separated


class Taught(Protocol):
    """What a LoRA teaches a world beyond the UNet's adapters (the icons painter), while it is in force."""

    phrases: tuple[str, ...]  # the new things it names, kept as written by the reader and the layout stage

    def scale(self, scale: float) -> None: ...

    def restore(self) -> None: ...


class PromptReader(Protocol):
    """A world's prompt-reading stage: free phrasing into the world's own words."""

    available: bool  # a reader is shipped (or needs none)

    def apply(self, prompts: list[str], understand: bool, **taught) -> list[Understood]: ...

    def names_content(self, prompt: str) -> bool: ...

    def load_in_background(self) -> object: ...


class World(Protocol):
    name: str  # the registry key, as model folders record it
    styles: Mapping[str, str]  # style transfer's presets: name -> the words that ask for it
    examples: tuple[str, ...]  # example prompts for the page
    free_phrasing: str  # a free phrasing its reader understands, shown as the page's hint
    default_strength: float  # style transfer's strength when a call gives none
    scenes: ModuleType  # training scenes: sample_example, render_scene, captions (training and evaluation)
    judge: ModuleType  # does a picture show a scene: eval_set, score, clean_images (training and benchmarks)
    lora_demo: LoraDemo

    def reader(self, encoder) -> PromptReader:
        """The prompt-reading stage for a model that reads prompts with `encoder`."""
        ...

    def without_style(self, caption: str) -> str:
        """A recipe's prompt less its style words: the content a restyle keeps."""
        ...

    def describe(self, image: Image.Image, resolution: int) -> str:
        """What a picture without a recipe shows, as a caption of the world ("" when nothing is found)."""
        ...

    def text_to_image(
        self, encoder, generator, prompts: list[str], seeds: list[int], *, cond, layout: bool, taught
    ) -> Staged:
        """The layout stage of a text-to-image batch: prompts as the encoder reads them (encoded: `cond`), a seed
        each; `layout`: plan where the generator can follow a plan."""
        ...

    def restyle(self, encoder, generator, prompt: str, source: Image.Image, *, recipe, taught) -> Staged:
        """The layout stage of a restyle: the picture's things kept where they are, where the world can."""
        ...

    def inpaint(self, encoder, generator, prompt: str, mask, *, taught) -> Staged:
        """The layout stage of inpainting: `mask` (H, W) bool at the model's resolution, True = redraw."""
        ...

    def load_taught(self, generator, path: Path, *, model: str) -> Taught | None:
        """What the LoRA file at `path` teaches beyond its adapters, now applied; None when nothing."""
        ...
