"""What a user asks for, one typed object per task, passed whole from the page (or the CLI, or a script) through
the server and the batcher to the pipeline, which reads it by name.

    wb.text_to_image(TextToImageRequest("a frog next to a pizza", seed=3, num_images=4))
    wb.text_to_image("a frog next to a pizza", seed=3, num_images=4)      # the same request, built for you

None means "the model's default" wherever a field allows it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar


@dataclass(frozen=True)
class TextToImageRequest:
    prompt: str | list[str]  # one prompt, or several drawn in one batch
    seed: int | list[int] = 0  # one for all prompts, or one each; image j of a prompt uses seed + j; -1: random
    steps: int | None = None  # denoising steps
    guidance: float | None = None  # classifier-free guidance scale
    num_images: int = 1  # images per prompt
    lora: str | None = None  # "file.safetensors[:scale]" (the server's page sends a library name in its place)
    expand: bool | None = None  # rewrite the prompt with the LM expander (pipeline/expand.py)
    layout: bool | None = None  # plan where named things go (None: wherever the generator can follow a plan)
    understand: bool | None = None  # read free phrasing into the world's own words (None: where a reader is shipped)
    generator: str | None = None  # which of the model's generators a server runs it on ("diffusion", "gan")

    def batch_key(self) -> tuple:
        """Requests with equal keys can share one pipeline call (their prompts, seeds and counts differ)."""
        return (self.steps, self.guidance, self.lora, self.expand, self.layout, self.understand, self.generator)


@dataclass(frozen=True)
class StyleTransferRequest:
    image: Any  # a path or a PIL image, any mode and size
    style_prompt: str = ""  # the style (and content) in words
    preset: str | None = None  # a name of the model's style presets; its words follow `style_prompt`
    strength: float | None = None  # 0 keeps the picture, 1 ignores it (None: the world's default)
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    lora: str | None = None
    expand: bool | None = None
    understand: bool | None = None


@dataclass(frozen=True)
class InpaintRequest:
    image: Any  # a path or a PIL image
    mask: Any  # the same size as the image: white = regenerate
    prompt: str = ""  # what goes in the masked part
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    lora: str | None = None
    expand: bool | None = None
    zoom: bool = True  # redraw a small mask's area at the model's full resolution
    understand: bool | None = None


R = TypeVar("R", TextToImageRequest, StyleTransferRequest, InpaintRequest)


def as_request(kind: type[R], first, options: dict) -> R:
    """`first` when it is already a `kind`; else `kind(first, **options)`, with a message that lists the fields
    for an option the request does not have."""
    if isinstance(first, kind):
        if options:
            raise TypeError(f"pass either a {kind.__name__} or keyword options, not both ({', '.join(options)})")
        return first
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"{kind.__name__} has no {', '.join(unknown)}; its fields are {', '.join(sorted(names))}")
    return kind(first, **options)


def style_prompt_of(request: StyleTransferRequest, presets) -> str:
    """A restyle's words: the request's own, then its preset's (a name of the pipeline's `style_presets`)."""
    if request.preset is None:
        return request.style_prompt
    if request.preset not in presets:
        raise ValueError(f"no style preset {request.preset!r}; choose one of {', '.join(presets)}")
    return " ".join(w for w in [(request.style_prompt or "").strip(), presets[request.preset]] if w)
