"""Serving one Wordbrush to many people at once (the web app's back room).

- `open_models`: a model with each of its generators, each behind a `Batcher` (requests that arrive together
  run as one batch) on the app's main-thread runner.
- `LoraLibrary`: the LoRAs every visitor may use, read from disk on each call, so a LoRA trained in the app is
  listed for every session and API client at once and still listed after a restart.
- `ServeLimits`: what one visitor may ask of a shared server.

The app (`app.py`) holds the page; nothing here imports gradio.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.batcher import Batcher, MainThreadRunner
from pipeline.core import MAX_LORA_SCALE, MAX_SEED, Wordbrush
from pipeline.presets import available_generators

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
    # Each page visit and each API call is one, holding copies of the page's component configs and values:
    # about 0.75 MB each on this page (measured: +76 MB per 100 API calls), so the default would grow to GBs


LIMITS = ServeLimits()


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


def seed_of(seed, randomize) -> int:
    """The seed a form asks for: -1 (pick one) when "random seed" is ticked."""
    return -1 if randomize else whole(0 if seed is None else seed, "seed", 0, MAX_SEED)


def lora_scale(value) -> float:
    return real(value, "LoRA scale", -MAX_LORA_SCALE, MAX_LORA_SCALE)


def load_models(model: str, **knobs) -> dict[str, Wordbrush]:
    """A model with each of its generators (they share the loaded prompt encoder), by generator kind."""
    wb = Wordbrush.load(model, **knobs)
    models = {wb.generator.kind: wb}
    for kind in available_generators(model):
        if kind not in models:
            models[kind] = wb.with_generator(kind)
    if on_zero_gpu():
        import spaces  # only present on Hugging Face Spaces

        for m in models.values():
            m.generator.generate = spaces.GPU(m.generator.generate)
    return models


def on_zero_gpu() -> bool:
    """True on a Hugging Face ZeroGPU Space, where GPU work must run inside @spaces.GPU."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def open_models(model: str, runner: MainThreadRunner | None = None, **knobs) -> dict[str, Batcher]:
    """`load_models`, each generator behind its own batcher."""
    return {kind: Batcher(m, runner=runner) for kind, m in load_models(model, **knobs).items()}


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

    def prune(self, keep: int = LIMITS.keep_runs) -> None:
        """Delete the oldest run folders beyond the newest `keep` (finished or not)."""
        if self.runs_dir is None or not Path(self.runs_dir).is_dir():
            return
        runs = sorted((p for p in Path(self.runs_dir).iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in runs[: max(0, len(runs) - keep)]:
            log.info("deleting the old training run %s", old.name)
            shutil.rmtree(old, ignore_errors=True)
