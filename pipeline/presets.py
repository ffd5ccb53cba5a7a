"""The one registry of models: the UI dropdown, the CLI's --model and the tests all read PRESETS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass(frozen=True)
class ModelSpec:
    """A named model: where its generators live and what they are."""

    generators: dict[str, str]  # generator kind ("diffusion", "gan") -> folder or hub id
    description: str
    default_generator: str = "diffusion"


PRESETS: dict[str, ModelSpec] = {
    "shapes": ModelSpec(
        generators={"diffusion": str(ASSETS / "shapes-diffusion"), "gan": str(ASSETS / "shapes-gan")},
        description="Embedded: 32 px shapes world, trained by this project, prompt read by all-MiniLM-L6-v2",
    ),
}
DEFAULT_MODEL = "shapes"


def available_generators(model: str) -> list[str]:
    """The generator kinds of a preset whose weights are on disk (or all of a folder/hub model's one)."""
    if model not in PRESETS:
        return []
    return [kind for kind, path in PRESETS[model].generators.items() if Path(path).exists()]


def resolve_model(model: str, generator: str | None = None) -> tuple[str, str]:
    """(source, generator kind) for a preset name, a Wordbrush model folder or a hub id."""
    if model in PRESETS:
        spec = PRESETS[model]
        kind = generator or spec.default_generator
        if kind not in spec.generators:
            raise ValueError(f"model {model!r} has no {kind!r} generator; it has: {', '.join(spec.generators)}")
        return spec.generators[kind], kind
    return model, generator or "diffusion"
