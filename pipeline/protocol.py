"""What every Wordbrush pipeline is: three typed calls and the capabilities it declares.

The embedded pipeline (`pipeline/core.py` Wordbrush) and the diffusers-backed one (`pipeline/hub.py`
HubPipeline) both implement `ImagePipeline`. Each call is one typed request (`pipeline/requests.py`; both also
build it from keyword options), which carries all of the call's settings, its LoRA included;
nothing persists from one call to the next. The app and the CLI read `capabilities` instead of asking what
kind of model they hold.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image

from pipeline.recipe import Recipe
from pipeline.requests import InpaintRequest, StyleTransferRequest, TextToImageRequest
from pipeline.worlds.base import World

MAX_IMAGES = 16  # per call: more is a batch job for the CLI
MAX_SEED = 2**63 - 1
MAX_PROMPT_CHARS = 1000  # a server refuses longer prompts (the prompt encoders read 64-77 tokens of them)
MAX_STEPS = 200
MAX_GUIDANCE = 30.0
MAX_LORA_SCALE = 4.0  # |scale| above this only burns the image out

# callback(step, total, preview or None), called after each denoising step
StepCallback = Callable[[int, int, object], None]


@dataclass
class Result:
    images: list[Image.Image]  # RGB
    recipes: list[Recipe]  # one per image


@dataclass(frozen=True)
class Capabilities:
    """What a pipeline can do, declared by the pipeline and read by the app and CLI."""

    refused: Mapping[str, str] = field(default_factory=dict)  # task -> why this model cannot run it
    layout: bool = False  # plans where two named objects go (`layout=`)
    lora: bool = False  # takes `lora=` on its calls
    lora_training: bool = False  # the app's Train tab trains LoRAs for it
    lora_batch: int = 16  # images per LoRA training step that fit the usual hardware for this model
    live_preview: bool = False  # one step, fast enough to redraw as the prompt is typed
    understanding: bool = False  # reads free phrasing into its own words (`understand=`)
    tunable_steps: bool = True  # steps and guidance change the image (not a one-step GAN)
    pixel_art: bool = False  # native images are small: shown enlarged with crisp pixels

    def check(self, task: str) -> None:
        """A ValueError with the one-line reason when this model cannot run `task`."""
        if task in self.refused:
            raise ValueError(f"this model cannot do {task.replace('_', ' ')}: {self.refused[task]}")


class ImagePipeline(Protocol):
    model: str  # what it was loaded from: a preset, a folder or a hub id
    capabilities: Capabilities
    default_steps: int
    default_guidance: float
    style_presets: Mapping[str, str]  # style name -> the words that ask for it
    example_prompts: tuple[str, ...]
    world: World | None  # the embedded world it draws (pipeline/worlds); None for a real checkpoint

    def text_to_image(self, request: TextToImageRequest, *, callback: StepCallback | None = None) -> Result: ...

    def style_transfer(self, request: StyleTransferRequest, *, callback: StepCallback | None = None) -> Result: ...

    def inpaint(self, request: InpaintRequest, *, callback: StepCallback | None = None) -> Result: ...


def check_request(prompts: list[str], seeds: list[int], *, steps: int, guidance: float, num_images: int) -> None:
    """Raise ValueError with a teaching message for input the generators cannot honour."""
    if not prompts:
        raise ValueError("no prompt given; pass a prompt such as 'a red circle above a blue square'")
    for p in prompts:
        if not isinstance(p, str):
            raise ValueError(f"the prompt must be text, got {type(p).__name__}")
        if not p.strip():
            raise ValueError("the prompt is empty; describe the image, e.g. 'three green triangles'")

        try:
            p.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(
                f"the prompt holds a character that is not text (position {err.start}: a lone surrogate); "
                "send the prompt as UTF-8"
            ) from None
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts; give one seed, or one per prompt")
    for s in seeds:
        if not isinstance(s, int) or isinstance(s, bool) or not (s == -1 or 0 <= s <= MAX_SEED):
            raise ValueError(f"seed must be an integer from 0 to 2**63-1, or -1 for a random seed; got {s!r}")
    if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {steps!r}")
    if not 0.0 <= guidance <= MAX_GUIDANCE:
        raise ValueError(f"guidance must be between 0 and {MAX_GUIDANCE:g}, got {guidance!r}")
    if not 1 <= num_images <= MAX_IMAGES:
        raise ValueError(f"num_images must be between 1 and {MAX_IMAGES}, got {num_images!r}")


def image_seed(seed: int, j: int) -> int:
    """Image j of a prompt's seed: seed + j, wrapping past MAX_SEED to 0 (so every seed a caller may send works
    with any number of images)."""
    return (seed + j) % (MAX_SEED + 1)


def resolve_seed(seed: int) -> int:
    """-1 means "pick one": a random seed that the recipe then records."""
    return random.randrange(2**32) if seed == -1 else seed


def batch_of(prompt: str | list[str], seed: int | list[int]) -> tuple[list[str], list[int]]:
    """A call's prompts and their seeds (one seed for all, or one each), as lists for `check_request`."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    seeds = [seed] * len(prompts) if isinstance(seed, int) else list(seed)
    return prompts, seeds


def parse_lora(spec: str) -> tuple[Path, float]:
    """ "file.safetensors" or "file.safetensors:0.8" -> (path, scale); a folder means its lora.safetensors."""
    path, scale = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            path, scale = head, float(tail)
        except ValueError:
            path = spec
    if not math.isfinite(scale) or abs(scale) > MAX_LORA_SCALE:
        raise ValueError(f"the LoRA scale must be between -{MAX_LORA_SCALE:g} and {MAX_LORA_SCALE:g}, got {scale!r}")
    p = Path(path)
    if p.is_dir():
        p = p / "lora.safetensors"
    if not p.is_file():
        raise ValueError(f"no LoRA file at {p}")
    if p.suffix != ".safetensors":
        raise ValueError(f"{p.name}: LoRA weights load from .safetensors files only")
    return p, scale


def lora_label(spec: str | None) -> str | None:
    """What a recipe records of a LoRA: its name and scale, not where it lies on the server
    ("runs/stars-3fa2c1/model/lora.safetensors:0.8" -> "stars-3fa2c1:0.8")."""
    if spec is None:
        return None
    path, _, scale = spec.rpartition(":")
    p = Path(path)
    name = p.parent.parent.name if p.name == "lora.safetensors" and p.parent.name == "model" else p.stem
    return f"{name}:{scale}"


def adapted_layers(module: torch.nn.Module | None, adapter: str) -> int:
    """How many layers of `module` carry the LoRA `adapter` (peft's tuner layers keep one lora_A per adapter)."""
    if module is None:
        return 0
    return sum(1 for m in module.modules() if adapter in getattr(m, "lora_A", {}))


class LoraSlot:
    """The one LoRA adapter a model holds for the call in progress. `use(spec)` makes the model carry exactly
    `spec` ("file.safetensors[:scale]", or None for none): loading, rescaling or removing as needed, and
    leaving the model as it was when a file is refused."""

    ADAPTER = "user"  # the adapter name the pipelines load a call's LoRA under

    def __init__(self, load: Callable[[Path], None], scale: Callable[[float], None], unload: Callable[[], None]):
        self._load, self._scale, self._unload = load, scale, unload
        self.path: Path | None = None
        self.weight = 1.0

    def use(self, spec: str | None) -> str | None:
        """Returns the LoRA in force as "path:scale" (None for none), for the call's recipe."""
        path, weight = parse_lora(spec) if spec else (None, 1.0)
        if path != self.path:
            if self.path is not None:
                self._unload()
                self.path = None
            if path is None:
                return None
            self._load(path)  # raises ValueError and loads nothing when the file does not fit
            self.path, self.weight = path, None
        if path is None:
            return None
        if weight != self.weight:
            self._scale(weight)
            self.weight = weight
        return f"{path}:{weight:g}"
