"""Serving one model to many people at once (the web app's back room).

- `Server`: what the page's forms ask for, checked and turned into typed pipeline calls.
- `open_models`: a model with each of its generators, each behind a `Batcher` (requests that arrive together
  run as one batch) on the app's main-thread runner; on a ZeroGPU Space, a `GPURequestRunner` instead.
- `LoraLibrary`: the LoRAs every visitor may use, read from disk on each call, so a LoRA trained in the app is
  listed for every session and API client at once and still listed after a restart.
- `ServeLimits`: what one visitor may ask of a shared server.

The app (`app.py`) holds the page; nothing here imports gradio.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.batcher import Batcher, MainThreadRunner
from pipeline.images import open_image
from pipeline.loader import load_pipeline
from pipeline.memory import release_memory
from pipeline.presets import DEFAULT_MODEL, available_generators
from pipeline.protocol import (
    MAX_IMAGES,
    MAX_LORA_SCALE,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_STEPS,
    ImagePipeline,
    Result,
)
from pipeline.recipe import Recipe, read_recipe
from pipeline.requests import InpaintRequest, StyleTransferRequest, TextToImageRequest
from pipeline.worlds.base import Understood

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """Where the app keeps what outlives a request (trained LoRAs): $WORDBRUSH_DATA or ~/.cache/wordbrush/app."""
    return Path(os.environ.get("WORDBRUSH_DATA") or Path.home() / ".cache" / "wordbrush" / "app")


@dataclass(frozen=True)
class ServeLimits:
    upload_mb: int = 10  # per file, refused by the server before any handler runs
    train_upload_mb: int = 64  # all files of one training request together
    train_files: int = 200  # images and captions of one training request
    cache_every_s: int = 600  # results and uploads are deleted this often...
    cache_age_s: int = 3600  # ...once they are this old, and all of them when the server stops
    keep_runs: int = 50  # finished LoRA trainings kept on disk (the oldest go first)
    sessions: int = 100  # sessions gradio keeps in memory, the oldest dropped first (gradio's default: 10,000).
    # Each page visit and each API call is one, holding copies of the page's component configs and values
    # (docs/share-link.md), so gradio's default would grow to gigabytes


LIMITS = ServeLimits()


def app_arguments() -> argparse.ArgumentParser:
    """The app's options; a host (a Space) sets the WORDBRUSH_* environment variables instead."""
    env = os.environ.get
    p = argparse.ArgumentParser(description="Serve the Wordbrush web app.")
    p.add_argument("--model", default=env("WORDBRUSH_MODEL", DEFAULT_MODEL), help="preset, folder or hub id")
    p.add_argument("--device", default=env("WORDBRUSH_DEVICE", "auto"), help="auto, cpu or cuda")
    p.add_argument("--host", default=env("WORDBRUSH_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("WORDBRUSH_PORT", "7860")))
    p.add_argument("--share", action="store_true", default=env("WORDBRUSH_SHARE") == "1", help="a public link")
    p.add_argument("--auth", default=env("WORDBRUSH_AUTH"), help="user:password required to open the app")
    p.add_argument("--lora-dir", default=env("WORDBRUSH_LORA_DIR"), help="list this folder's .safetensors LoRAs")
    p.add_argument("--data-dir", default=str(default_data_dir()), help="where trained LoRAs are kept (WORDBRUSH_DATA)")
    p.add_argument(
        "--allow-model-load",
        action="store_true",
        default=env("WORDBRUSH_ALLOW_MODEL_LOAD") == "1",
        help="show the Model box: anyone who can open the page may then switch the model for everyone",
    )
    p.add_argument("--offload", action="store_true", help="diffusers models: model CPU offload (small GPUs)")
    p.add_argument("--compile", action="store_true", help="diffusers models: torch.compile the denoiser")
    p.add_argument("--precision", default=env("WORDBRUSH_PRECISION", "auto"), help="auto, bf16 or fp32")
    return p


def whole(value, name: str, low: int, high: int) -> int:
    """`value` as an int in [low, high], or a ValueError that names the field (NaN, text, 2.5, out of range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} must be from {low} to {high}, got {value!r}")
    return int(value)


def real(value, name: str, low: float, high: float) -> float:
    """`value` as a finite float in [low, high], or a ValueError that names the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low:g} to {high:g}, got {value!r}")
    return float(value)


def flag(value, name: str) -> bool | None:
    """A checkbox's value: True, False or None (the default), or a ValueError that names the field ("no" is not
    False, and is not read as True either)."""
    if value is None or isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be true or false, got {value!r}")


def text(value, name: str, limit: int = MAX_PROMPT_CHARS) -> str:
    """A text field's value ("" for none), at most `limit` characters, or a ValueError that names the field (a
    list or a number is not text)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value):,} characters; at most {limit:,} are accepted")
    return value


def seed_of(seed, randomize) -> int:
    """The seed a form asks for: -1 (pick one) when "random seed" is ticked."""
    return -1 if flag(randomize, "random seed") else whole(0 if seed is None else seed, "seed", 0, MAX_SEED)


def checked_seed(seed) -> int:
    """A request's seed: -1 (pick one, as `seed_of` writes "random seed") or a whole number in range."""
    return -1 if seed == -1 and not isinstance(seed, bool) else seed_of(seed, False)


def lora_scale(value) -> float:
    return real(value, "LoRA scale", -MAX_LORA_SCALE, MAX_LORA_SCALE)


def load_models(model: str, **knobs) -> dict[str, ImagePipeline]:
    """A model with each of its generators (they share the loaded prompt encoder), by generator kind."""
    wb = load_pipeline(model, **knobs)
    if wb.capabilities.understanding:
        wb.understanding.load_in_background()  # the page serves at once; the reader is ready a second later
    models = {wb.generator.kind: wb}
    for kind in available_generators(model):
        if kind not in models:
            models[kind] = wb.with_generator(kind)
    return models


def on_zero_gpu() -> bool:
    """True on a Hugging Face ZeroGPU Space, where GPU work must run inside @spaces.GPU."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def open_models(model: str, runner: MainThreadRunner | None = None, **knobs) -> dict[str, Batcher]:
    """`load_models`, each generator behind its own batcher (on ZeroGPU: a `GPURequestRunner`)."""
    if on_zero_gpu():
        return {kind: GPURequestRunner(m) for kind, m in load_models(model, **knobs).items()}
    return {kind: Batcher(m, runner=runner) for kind, m in load_models(model, **knobs).items()}


def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


@functools.cache
def _gpu_call():
    """`_call` under `spaces.GPU`: the Space attaches a GPU for the duration of each call."""
    import spaces  # present on Hugging Face Spaces only

    return spaces.GPU(_call)


class GPURequestRunner:
    """The batcher's interface for a ZeroGPU Space: each request runs its own pipeline call, in the request's
    own thread, inside `@spaces.GPU` (as the Spaces docs prescribe: the decorated function is called from
    the request, not from a thread of the app's own). Requests are not batched there."""

    def __init__(self, wb: ImagePipeline):
        self.wb = wb

    def text_to_image(self, request: TextToImageRequest, *, callback=None, timeout: float | None = None) -> Result:
        return _gpu_call()(self.wb.text_to_image, request, callback=callback)

    def run_alone(self, fn, *args, **kwargs):
        return _gpu_call()(fn, *args, **kwargs)

    def close(self) -> None:
        pass


def editing_batcher(batchers: dict[str, Batcher]) -> Batcher:
    """The generator the editing tabs use: the diffusion one (the GAN draws from text alone)."""
    return batchers.get("diffusion") or batchers.get("diffusers") or next(iter(batchers.values()))


class LoraLibrary:
    """The LoRAs visitors may pick, by name: the finished runs of the app's Train tab (`runs_dir/NAME/model/
    lora.safetensors`) and the host's own files (`extra_dir/NAME.safetensors`). Read from disk on every call."""

    def __init__(self, runs_dir: Path | None = None, extra_dir: Path | None = None):
        self.runs_dir, self.extra_dir = runs_dir, extra_dir

    def files(self) -> dict[str, Path]:
        found = {}
        if self.extra_dir is not None:
            found.update({p.stem: p for p in sorted(Path(self.extra_dir).glob("*.safetensors"))})
        if self.runs_dir is not None:
            runs = sorted(Path(self.runs_dir).glob("*/model/lora.safetensors"), key=lambda p: p.stat().st_mtime)
            found.update({p.parent.parent.name: p for p in runs})
        return found

    def names(self) -> list[str]:
        return list(self.files())

    def spec(self, name: str | None, scale) -> str | None:
        """The "path:scale" a request's LoRA name means; None for no LoRA; ValueError for a name not listed."""
        if not name or name == "none":
            return None
        files = self.files()
        if name not in files:
            raise ValueError(f"no LoRA named {name!r} on this server; choose one of: {', '.join(files) or 'none yet'}")
        return f"{files[name]}:{lora_scale(scale):g}"

    def resolve(self, choice: str | None) -> str | None:
        """A request's LoRA as the page sends it, "name" or "name:scale", as the "path:scale" the pipeline loads."""
        if not choice or choice == "none":
            return None
        name, sep, scale = str(choice).rpartition(":")
        if not sep:
            return self.spec(str(choice), 1.0)
        try:
            value = float(scale)
        except ValueError:
            raise ValueError(
                f"LoRA scale must be a number from -{MAX_LORA_SCALE:g} to {MAX_LORA_SCALE:g}, got {scale!r}"
            ) from None
        return self.spec(name, value)

    def prune(self, keep: int = LIMITS.keep_runs) -> None:
        """Delete the oldest run folders beyond the newest `keep` (finished or not)."""
        if self.runs_dir is None or not Path(self.runs_dir).is_dir():
            return
        runs = sorted((p for p in Path(self.runs_dir).iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in runs[: max(0, len(runs) - keep)]:
            log.info("deleting the old training run %s", old.name)
            shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------
# The forms: what the page sends, checked, as typed pipeline calls


def editor_mask(value: dict | None) -> tuple[Image.Image, Image.Image]:
    """(image, mask) from an image editor's value (paths or PIL images): the mask is everything painted on
    any layer."""
    if not value or value.get("background") is None:
        raise ValueError("upload an image to paint on first")
    background = open_image(value["background"])
    painted = np.zeros(background.size[::-1], bool)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        layer = layer if isinstance(layer, Image.Image) else Image.open(layer)
        if layer.size != background.size:
            raise ValueError(
                f"the painted layer is {layer.size[0]}x{layer.size[1]} but the image is "
                f"{background.size[0]}x{background.size[1]}; paint on the image itself"
            )
        try:
            alpha = layer.convert("RGBA").getchannel("A")
        except OSError as err:
            raise ValueError(f"the painted layer is not a readable image ({type(err).__name__})") from None
        painted |= np.asarray(alpha) >= 128
    return background, Image.fromarray(painted.astype(np.uint8) * 255)


def recipe_in_file(path) -> Recipe | None:
    """The Wordbrush recipe a dropped file carries, or None (not an image, no recipe, a recipe that does not parse)."""
    if path is None:
        return None
    try:
        return read_recipe(Image.open(path))
    except Exception:  # noqa: BLE001 - any unreadable file is simply "no recipe"
        return None


def read_as(recipe) -> str:
    """How the pipeline read a request's prompt, in a line for the page."""
    notes = tuple(recipe.not_drawn)
    line = Understood(recipe.prompt, recipe.encoded_prompt, recipe.understood or "off", notes).describe()
    return f"{line}\nexpanded to: {recipe.encoded_prompt}" if recipe.expanded else line


class Server:
    """A model's pipelines (one per generator kind, each behind a batcher), the LoRA library and, where the host
    allows it, model loading: the typed calls behind the page's forms. Every value from a form is checked here
    (`whole`, `real`, `seed_of`), so a bad one gets a message that names its field."""

    def __init__(self, batchers: dict[str, Batcher], library: LoraLibrary | None = None, open_model=None):
        self.batchers, self.library, self.open_model = batchers, library or LoraLibrary(), open_model

    def pipe(self, generator: str | None = None) -> ImagePipeline:
        """The pipeline of generator kind `generator`; None: the one the editing tabs use."""
        return self._batcher(generator).wb

    def _batcher(self, generator: str | None) -> Batcher:
        if generator is None:
            return editing_batcher(self.batchers)
        if generator not in self.batchers:
            raise ValueError(f"no {generator!r} generator is loaded; choose one of {', '.join(self.batchers)}")
        return self.batchers[generator]

    def text_to_image(self, request: TextToImageRequest, *, callback=None) -> Result:
        """`request` as a visitor sent it, each value checked (a bad one gets a message that names its field),
        run on its generator's batcher. Its `lora` is a library name ("name" or "name:scale")."""
        checked = dataclasses.replace(
            request,
            prompt=text(request.prompt, "the prompt"),
            seed=checked_seed(request.seed),
            steps=None if request.steps is None else whole(request.steps, "steps", 1, MAX_STEPS),
            guidance=None if request.guidance is None else real(request.guidance, "guidance", 0, 30),
            num_images=whole(request.num_images, "number of images", 1, MAX_IMAGES),
            lora=self.library.resolve(text(request.lora, "the LoRA", 200) or None),
            expand=flag(request.expand, "expand"),
            layout=flag(request.layout, "layout"),
            understand=flag(request.understand, "understand"),
        )
        return self._batcher(text(request.generator, "the generator", 40) or None).text_to_image(
            checked, callback=callback
        )

    def style_transfer(self, request: StyleTransferRequest, *, callback=None) -> Result:
        batcher = self._batcher(None)
        if request.image is None:
            raise ValueError("upload an image first (or send one from the Text to image gallery)")
        style_prompt, preset = (
            text(request.style_prompt, "the style text"),
            text(request.preset, "the style preset", 80),
        )
        if not style_prompt.strip() and preset not in batcher.wb.style_presets:
            raise ValueError("pick a style preset or describe a style")
        checked = dataclasses.replace(
            request,
            image=open_image(request.image),
            style_prompt=style_prompt,
            preset=preset if preset in batcher.wb.style_presets else None,
            strength=None if request.strength is None else real(request.strength, "strength", 0, 1),
            seed=checked_seed(request.seed),
            lora=self.library.resolve(text(request.lora, "the LoRA", 200) or None),
            understand=flag(request.understand, "understand"),
        )
        return batcher.run_alone(batcher.wb.style_transfer, checked, callback=callback)

    def inpaint(self, request: InpaintRequest, *, callback=None) -> Result:
        batcher = self._batcher(None)
        checked = dataclasses.replace(
            request,
            prompt=text(request.prompt, "the prompt"),
            seed=checked_seed(request.seed),
            zoom=bool(flag(request.zoom, "zoom")),
            lora=self.library.resolve(text(request.lora, "the LoRA", 200) or None),
            understand=flag(request.understand, "understand"),
        )
        return batcher.run_alone(batcher.wb.inpaint, checked, callback=callback)

    def content_of(self, path) -> str | None:
        """The content words of the recipe an image carries (its prompt less any style phrase), or None."""
        recipe = recipe_in_file(path)
        if recipe is None:
            return None
        content = recipe.prompt
        for phrase in self.pipe().style_presets.values():
            content = content.replace(phrase, "")
        return " ".join(content.split())

    def load_model(self, name: str) -> str:
        """Open another model (preset, folder or hub id) and swap it in for every tab; a model that cannot load
        leaves the current one serving, with the same words for any failure (the reason goes to the log)."""
        name = (name or "").strip()
        if self.open_model is None:
            raise ValueError("this server does not switch models")
        if not name:
            raise ValueError("name a model: a preset, a model folder or a hub id")
        if name == self.pipe().model:
            return f"`{name}` is already loaded"
        try:
            fresh = self.open_model(name)
        except Exception as err:  # noqa: BLE001 - unknown id, offline, not a model, out of memory...
            log.warning("could not load %r: %s", name, err)
            raise ValueError(
                f"could not load {name!r}: it is not a preset, a model folder or a reachable hub id "
                "that this server can open (the server log says why)"
            ) from None
        old = list(self.batchers.values())
        self.batchers.clear()
        self.batchers.update(fresh)
        for b in old:
            b.close()  # its worker ends once its queued requests are served; the old weights are freed
        release_memory()
        return f"loaded **{name}** ({', '.join(self.batchers)})"
