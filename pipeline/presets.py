"""The one registry of models: the UI dropdown, the CLI's --model and the tests all read PRESETS.

Two families share it: the embedded "shapes" and "icons" models (this project's own generators, offline) and real
diffusers checkpoints that load by hub id on a host with hub access (pipeline/hub.py). `--model` also
takes any Wordbrush model folder, any diffusers pipeline folder or any diffusers hub id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"

ART_STYLES = {
    "watercolor": "as a watercolor painting, soft washes of colour",
    "oil": "as an oil painting, thick brush strokes",
    "pencil": "as a pencil sketch, cross-hatching",
    "pixel art": "as pixel art, 16-bit palette",
}
ART_EXAMPLES = (
    "a lighthouse on a cliff at dusk",
    "a red fox in fresh snow, photograph",
    "a bowl of ramen, studio lighting",
)


@dataclass(frozen=True)
class ModelSpec:
    """A named model: where its generators live and what they are."""

    generators: dict[str, str]  # generator kind ("diffusion", "gan", "diffusers") -> folder or hub id
    description: str
    default_generator: str = "diffusion"
    text_encoder: str = ""  # what reads the prompt inside the checkpoint (diffusers models)
    steps: int | None = None  # the checkpoint's recommended sampling steps and guidance (diffusers models)
    guidance: float | None = None
    expand_prompt: bool = False  # add detail with the LM expander by default (pipeline/expand.py; off for all)
    # style transfer's presets for a diffusers checkpoint (an embedded model's are its world's, pipeline/worlds)
    style_presets: dict[str, str] = field(default_factory=lambda: dict(ART_STYLES))
    # diffusers components taken from other repositories: name (subfolder) -> hub id or folder holding it
    components: dict[str, str] = field(default_factory=dict)


def _diffusers(
    hub_id: str,
    description: str,
    text_encoder: str,
    *,
    steps: int = 25,
    guidance: float = 7.5,
    expand_prompt: bool = False,
    components: dict[str, str] | None = None,
) -> ModelSpec:
    """A diffusers checkpoint preset (pipeline/hub.py serves it)."""
    return ModelSpec(
        generators={"diffusers": hub_id},
        description=description,
        default_generator="diffusers",
        text_encoder=text_encoder,
        steps=steps,
        guidance=guidance,
        expand_prompt=expand_prompt,
        components=components or {},
    )


PRESETS: dict[str, ModelSpec] = {
    "shapes": ModelSpec(
        generators={"diffusion": str(ASSETS / "shapes-diffusion"), "gan": str(ASSETS / "shapes-gan")},
        description="Embedded: 32 px shapes world, trained by this project, prompt read by all-MiniLM-L6-v2",
    ),
    "icons": ModelSpec(
        generators={"diffusion": str(ASSETS / "icons-diffusion"), "gan": str(ASSETS / "icons-gan")},
        description="Embedded: 64 px icons world (151 colour emoji), trained by this project, prompt read by "
        "all-MiniLM-L6-v2, things placed by its layout stage",
    ),
    "sd-turbo": _diffusers(
        "stabilityai/sd-turbo",
        "SD-Turbo: SD 2.1 distilled for 1-4 steps, 512 px",
        "OpenCLIP ViT-H text tower (not a language model)",
        steps=1,
        guidance=0.0,
    ),
    "sdxl-turbo": _diffusers(
        "stabilityai/sdxl-turbo",
        "SDXL-Turbo: SDXL distilled for 1-4 steps, 512 px",
        "CLIP ViT-L + OpenCLIP ViT-bigG text towers",
        steps=1,
        guidance=0.0,
    ),
    "sd15": _diffusers(
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "Stable Diffusion 1.5, 512 px (has an inpainting variant: sd15-inpainting)",
        "CLIP ViT-L/14 text tower",
    ),
    "sd15-inpainting": _diffusers(
        "stable-diffusion-v1-5/stable-diffusion-inpainting",
        "Stable Diffusion 1.5 trained for inpainting (9-channel UNet), 512 px",
        "CLIP ViT-L/14 text tower",
    ),
    "pixart-sigma": _diffusers(  # the 512 px repository holds only its transformer: the rest comes from here
        "PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers",
        "PixArt-Sigma (DiT), 512 px; no image-to-image or inpainting pipeline in diffusers",
        "T5-XXL encoder: a language model reads the prompt",
        steps=20,
        guidance=4.5,
        components={"transformer": "PixArt-alpha/PixArt-Sigma-XL-2-512-MS"},
    ),
    "sana": _diffusers(
        "Efficient-Large-Model/Sana_600M_512px_diffusers",
        "Sana 600M (linear DiT, 32x compressing VAE), 512 px",
        "Gemma-2 2B: a decoder language model reads the prompt",
        steps=20,
        guidance=4.5,
    ),
}
DEFAULT_MODEL = "icons"  # the embedded icons world (docs/icons-world.md); "shapes" stays a preset


def available_generators(model: str) -> list[str]:
    """The generator kinds of a preset whose weights are on disk (or all of a folder/hub model's one)."""
    if model not in PRESETS:
        return []
    return [kind for kind, path in PRESETS[model].generators.items() if Path(path).exists()]


def resolve_model(model: str, generator: str | None = None) -> tuple[str, str]:
    """(source, generator kind) for a preset name, a model folder or a hub id."""
    if model in PRESETS:
        spec = PRESETS[model]
        kind = generator or spec.default_generator
        if kind not in spec.generators:
            raise ValueError(f"model {model!r} has no {kind!r} generator; it has: {', '.join(spec.generators)}")
        return spec.generators[kind], kind
    if (Path(model) / "model_index.json").exists():
        return model, "diffusers"
    return model, generator or "diffusion"


def is_diffusers(model: str) -> bool:
    """Is `model` a diffusers checkpoint (a preset of that family or a hub id it loads, or a folder with
    model_index.json)?"""
    spec = preset_of(model)
    if spec is not None:
        return spec.default_generator == "diffusers"
    return (Path(model) / "model_index.json").exists()


def preset_of(model: str) -> ModelSpec | None:
    """The preset `model` names, by its name or by a hub id it loads (`--model stabilityai/sdxl-turbo` is
    `sdxl-turbo`; PixArt-Sigma's transformer-only repository is `pixart-sigma`)."""
    if model in PRESETS:
        return PRESETS[model]
    return next(
        (s for s in PRESETS.values() if model == s.generators.get("diffusers") or model in s.components.values()),
        None,
    )
