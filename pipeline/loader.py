"""Open any model by name: the embedded pipeline (`Wordbrush`) or a diffusers checkpoint (`HubPipeline`)."""

from __future__ import annotations

from pipeline.core import Wordbrush
from pipeline.hub import HubPipeline, is_hub_pipeline
from pipeline.presets import DEFAULT_MODEL, is_diffusers
from pipeline.protocol import ImagePipeline


def load_pipeline(
    model: str = DEFAULT_MODEL,
    *,
    generator: str | None = None,
    device: str = "auto",
    offload: bool = False,
    compile: bool = False,
    precision: str = "auto",
) -> ImagePipeline:
    """A preset name, a Wordbrush model folder, a diffusers pipeline folder or a hub id of either, on CUDA when
    there is one. offload and compile apply to diffusers checkpoints; precision ("auto", "bf16", "fp32") to
    the embedded diffusion generator."""
    diffusers_checkpoint = is_diffusers(model) or is_hub_pipeline(model)
    if diffusers_checkpoint and generator not in (None, "diffusers"):
        raise ValueError(f"{model} is a diffusers checkpoint: it has no {generator!r} generator; leave --generator out")
    if diffusers_checkpoint:
        return HubPipeline.load(model, device=device, offload=offload, compile=compile)
    return Wordbrush.load(model, generator=generator, device=device, precision=precision)
