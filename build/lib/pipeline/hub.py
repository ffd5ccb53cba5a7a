"""Real diffusers checkpoints (SD-Turbo, SDXL, SD 1.5, PixArt-Sigma, Sana...) behind the Wordbrush API.

    from pipeline import Wordbrush
    wb = Wordbrush.load("sd-turbo")          # a preset, any diffusers hub id, or a local pipeline folder
    wb.text_to_image("a lighthouse at dusk", seed=0, expand=True).images[0]

The three tasks map onto diffusers' text-to-image, image-to-image and inpainting pipelines, built with
`from_pipe` so that they share one set of components in memory. The language-model stage here is the
prompt expander (pipeline/expand.py); the checkpoint's own text encoder reads the (expanded) prompt.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline import images
from pipeline.core import Result, adapted_layers, check_request, lora_label, parse_lora, resolve_seed
from pipeline.expand import ExpansionStage
from pipeline.presets import PRESETS, ModelSpec, resolve_model
from pipeline.recipe import Recipe


class DiffusersGenerator:
    """One diffusers pipeline family behind the generator protocol's attributes (kind, defaults,
    resolution); `generate` runs one of its pipelines on a batch, halving the batch on CUDA out-of-memory."""

    kind = "diffusers"

    def __init__(self, t2i, *, default_steps: int, default_guidance: float, resolution: int):
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

        self.pipes = {"text_to_image": t2i}
        self.missing: dict[str, str] = {}  # task -> why this checkpoint cannot do it
        unet = getattr(t2i, "unet", None)
        if unet is not None and unet.config.in_channels == 9:  # an inpainting checkpoint: masked input only
            self.pipes = {"inpaint": AutoPipelineForInpainting.from_pipe(t2i)}
            for task in ("text_to_image", "style_transfer"):
                self.missing[task] = "it is an inpainting checkpoint (9-channel UNet); use it in the Inpainting tab"
        for task, auto in (("style_transfer", AutoPipelineForImage2Image), ("inpaint", AutoPipelineForInpainting)):
            if task in self.pipes or task in self.missing:
                continue
            try:
                self.pipes[task] = auto.from_pipe(t2i)  # shares the denoiser, VAE and text encoder in memory
            except ValueError as err:
                self.missing[task] = (
                    f"{type(t2i).__name__} has no {task.replace('_', ' ')} pipeline in diffusers ({err})"
                )
        for pipe in self.pipes.values():
            pipe.set_progress_bar_config(disable=True)
        self.base = t2i  # holds the shared components (LoRA, devices)
        self.default_steps, self.default_guidance, self.resolution = default_steps, default_guidance, resolution
        self.oom_retries = 0  # batches split after a CUDA out-of-memory error (for tests and logs)

    def generate(
        self, task: str, prompts: list[str], seeds: list[int], *, callback=None, **kwargs
    ) -> list[Image.Image]:
        """Images for `prompts`, image i drawn from torch.Generator(seed_i): the same seed gives the same
        image whatever else is in the batch."""
        if task in self.missing:
            raise ValueError(f"this model cannot do {task.replace('_', ' ')}: {self.missing[task]}")
        pipe = self.pipes[task]
        try:
            return self._call(pipe, prompts, seeds, callback, kwargs)
        except torch.OutOfMemoryError as err:
            torch.cuda.empty_cache()
            if len(prompts) == 1:
                raise ValueError(
                    "out of GPU memory for a single image; lower the resolution or steps, or start the app "
                    "with --offload (model CPU offload)"
                ) from err
            self.oom_retries += 1
            half = len(prompts) // 2  # retry as two smaller batches
            return self.generate(task, prompts[:half], seeds[:half], callback=callback, **kwargs) + self.generate(
                task, prompts[half:], seeds[half:], callback=callback, **kwargs
            )

    def _call(self, pipe, prompts, seeds, callback, kwargs) -> list[Image.Image]:
        gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]  # CPU generators: same on any device

        def on_step_end(p, step, timestep, tensors):
            if callback is not None:
                callback(step + 1, p.num_timesteps, None)
            return tensors

        return pipe(prompt=prompts, generator=gens, callback_on_step_end=on_step_end, **kwargs).images


def refuse_understanding(understand: bool | None) -> None:
    """The prompt reader puts prompts in the embedded world's words; a checkpoint reads any prompt itself."""
    if understand:
        raise ValueError(
            "prompt understanding reads free phrasing into the embedded world's words; a diffusers checkpoint "
            "reads the prompt with its own text encoder, so turn understanding off"
        )


def _text_limit(tokenizer) -> int:
    """How many tokens the checkpoint's text encoder reads (CLIP: 77); an expansion stays within it."""
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit <= 4096 else 77


class HubPipeline:
    """A diffusers checkpoint with the same calls as `Wordbrush`: text_to_image, style_transfer, inpaint,
    set_lora. Returned by `Wordbrush.load` for diffusers presets, folders and hub ids."""

    def __init__(self, generator: DiffusersGenerator, *, model: str, spec: ModelSpec | None):
        self.generator, self.model, self.spec = generator, model, spec
        t2i = generator.base
        tokenizer = getattr(t2i, "tokenizer", None)
        self.expansion = ExpansionStage(
            default=bool(spec and spec.expand_prompt), device=str(t2i.device),
            length_fn=None if tokenizer is None else (lambda text: len(tokenizer(text)["input_ids"])),
            max_tokens=_text_limit(tokenizer),
        )  # fmt: skip
        self.lora: str | None = None
        self.encoder_name = (spec.text_encoder if spec and spec.text_encoder else "") or type(
            getattr(t2i, "text_encoder", None)
        ).__name__

    @classmethod
    def load(
        cls, model: str, *, device: str = "auto", dtype: torch.dtype | None = None, offload: bool = False,
        compile: bool = False,
    ) -> HubPipeline:  # fmt: skip
        """A preset name, diffusers hub id or pipeline folder; CUDA in bf16 when there is a GPU, else CPU fp32.
        offload: model CPU offload (components move to the GPU only while they run) for small GPUs.
        compile: torch.compile the denoiser (slow first call, faster after)."""
        from diffusers import AutoPipelineForText2Image

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        source, _ = resolve_model(model, "diffusers")
        try:
            t2i = AutoPipelineForText2Image.from_pretrained(source, dtype=dtype, use_safetensors=True)
        except (OSError, ValueError) as err:
            raise ValueError(
                f"cannot load {model!r} as a diffusers pipeline: not a preset ({', '.join(PRESETS)}), "
                f"a folder with model_index.json, or a reachable hub id with safetensors weights "
                f"({err.__class__.__name__}: {str(err).splitlines()[0][:200]})"
            ) from err
        if offload and device.startswith("cuda"):
            t2i.enable_model_cpu_offload()
        else:
            t2i.to(device)
        denoiser_name = "unet" if getattr(t2i, "unet", None) is not None else "transformer"
        if compile:
            setattr(t2i, denoiser_name, torch.compile(getattr(t2i, denoiser_name)))
        spec = PRESETS.get(model)
        steps = spec.steps if spec and spec.steps else 25
        guidance = spec.guidance if spec and spec.guidance is not None else 5.0
        generator = DiffusersGenerator(t2i, default_steps=steps, default_guidance=guidance, resolution=_resolution(t2i))
        return cls(generator, model=model, spec=spec)

    # The three tasks

    def text_to_image(
        self, prompt: str | list[str], *, seed: int | list[int] = 0, steps: int | None = None,
        guidance: float | None = None, num_images: int = 1, callback=None, expand: bool | None = None,
        layout: bool | None = None, understand: bool | None = None,
    ) -> Result:  # fmt: skip
        """`num_images` images per prompt (image j of a prompt uses seed + j), all in one batch. The layout
        stage is the embedded model's (pipeline/layout.py): layout=True is refused here."""
        # 1. Check inputs
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        seeds = [seed] * len(prompts) if isinstance(seed, int) else list(seed)
        steps, guidance = self._defaults(steps, guidance)
        check_request(prompts, seeds, steps=steps, guidance=guidance, num_images=num_images)
        if layout:
            raise ValueError("the layout stage steers the embedded diffusion model only; turn layout off")
        refuse_understanding(understand)
        seeds = [resolve_seed(s) for s in seeds]
        batch_prompts = [p for p in prompts for _ in range(num_images)]
        batch_seeds = [s + j for s in seeds for j in range(num_images)]

        # 2. The language-model stage, 3. the diffusers pipeline
        seen = self.expansion.apply(batch_prompts, batch_seeds, expand)
        r = self.generator.resolution
        out = self.generator.generate(
            "text_to_image", seen, batch_seeds, callback=callback, num_inference_steps=steps,
            guidance_scale=guidance, height=r, width=r,
        )  # fmt: skip
        recipes = [
            self._recipe(p, s, steps, guidance, im.size, "text_to_image", seen_p)
            for p, s, im, seen_p in zip(batch_prompts, batch_seeds, out, seen)
        ]
        return Result(out, recipes)

    def style_transfer(
        self, image, *, style_prompt: str, strength: float = 0.6, seed: int = 0, steps: int | None = None,
        guidance: float | None = None, callback=None, expand: bool | None = None, understand: bool | None = None,
    ) -> Result:  # fmt: skip
        """diffusers image-to-image: `image` noised to `strength` and redrawn under `style_prompt`, at the
        input's aspect ratio."""
        source = images.open_image(image)
        steps, guidance = self._defaults(steps, guidance)
        check_request([style_prompt], [seed], steps=steps, guidance=guidance, num_images=1)
        refuse_understanding(understand)
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be above 0 and at most 1, got {strength!r}")
        seed = resolve_seed(seed)
        # Turbo models need steps * strength >= 1 to run any denoising step at all.
        steps = max(steps, int(np.ceil(1 / strength)))
        seen = self.expansion.apply([style_prompt], [seed], expand)
        w, h = self._fit(source.size)
        out = self.generator.generate(
            "style_transfer", seen, [seed], callback=callback, image=source.resize((w, h), Image.LANCZOS),
            strength=strength, num_inference_steps=steps, guidance_scale=guidance,
        )[0]  # fmt: skip
        recipe = self._recipe(style_prompt, seed, steps, guidance, out.size, "style_transfer", seen[0])
        return Result([out], [dataclasses.replace(recipe, strength=strength)])

    def inpaint(
        self, image, mask, *, prompt: str, seed: int = 0, steps: int | None = None, guidance: float | None = None,
        callback=None, expand: bool | None = None, zoom: bool = True, understand: bool | None = None,
    ) -> Result:  # fmt: skip
        """diffusers inpainting on the white part of `mask`; outside it the input's pixels, bit for bit.
        zoom: a small mask's square is redrawn at the pipeline's full resolution (`images.inpaint_area`)."""
        source = images.open_image(image)
        region = images.open_mask(mask, source.size)
        steps, guidance = self._defaults(steps, guidance)
        check_request([prompt], [seed], steps=steps, guidance=guidance, num_images=1)
        refuse_understanding(understand)
        seed = resolve_seed(seed)
        recipe = self._recipe(prompt, seed, steps, guidance, source.size, "inpaint", prompt)
        if not region.any():
            return Result([source.copy()], [recipe])
        seen = self.expansion.apply([prompt], [seed], expand)
        box = images.inpaint_area(region) if zoom else None
        area, area_mask = images.crop_area(source, region, box)
        w, h = self._fit(area.size)
        mask_image = Image.fromarray(area_mask.astype(np.uint8) * 255).resize((w, h), Image.BOX)
        generated = self.generator.generate(
            "inpaint", seen, [seed], callback=callback, image=area.resize((w, h), Image.LANCZOS),
            mask_image=mask_image.point(lambda v: 255 if v > 0 else 0), height=h, width=w, strength=1.0,
            num_inference_steps=steps, guidance_scale=guidance,
        )[0]  # fmt: skip
        out = images.paste_area(source, images.composite(generated, area, area_mask), box)
        return Result([out], [dataclasses.replace(recipe, encoded_prompt=seen[0])])

    def set_lora(self, lora: str | None) -> None:
        """Apply a diffusers-format LoRA ("file.safetensors[:scale]") to all three pipelines; None removes it."""
        pipe = self.generator.base
        if self.lora is not None:
            pipe.delete_adapters("user")
            self.lora = None
        if lora is None:
            return
        path, scale = parse_lora(lora)
        try:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="user")
        except Exception as err:  # a corrupt file, or tensors of another model's shapes
            raise ValueError(f"{path.name} does not fit {self.model} ({err.__class__.__name__})") from err
        if not adapted_layers(pipe.unet, "user") and not adapted_layers(pipe.text_encoder, "user"):
            pipe.delete_adapters("user")
            raise ValueError(f"{path.name} matches no layer of {self.model}: it was made for another model")
        pipe.set_adapters(["user"], adapter_weights=[scale])
        self.lora = f"{path}:{scale:g}"

    # Helpers

    def _defaults(self, steps, guidance) -> tuple[int, float]:
        return (
            self.generator.default_steps if steps is None else steps,
            self.generator.default_guidance if guidance is None else guidance,
        )

    def _fit(self, size: tuple[int, int]) -> tuple[int, int]:
        """The input's aspect ratio at the model's resolution (long side), in multiples the model accepts."""
        m = _multiple(self.generator.base)
        w, h = size
        scale = self.generator.resolution / max(w, h)
        return max(m, round(w * scale / m) * m), max(m, round(h * scale / m) * m)

    def _recipe(self, prompt, seed, steps, guidance, size, task, seen) -> Recipe:
        return Recipe(
            prompt=prompt, seed=seed, steps=steps, guidance=guidance, model=self.model,
            generator=self.generator.kind, encoder=self.encoder_name, width=size[0], height=size[1], task=task,
            encoded_prompt=seen, lora=lora_label(self.lora), expanded=seen != prompt,
        )  # fmt: skip


def _resolution(pipe) -> int:
    """The pipeline's native image side: the denoiser's sample size times the VAE's scale factor."""
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    return int(denoiser.config.sample_size * pipe.vae_scale_factor)


def _multiple(pipe) -> int:
    """Image sides must be multiples of this: the VAE's factor times the denoiser's own down-sampling."""
    unet = getattr(pipe, "unet", None)
    if unet is not None:
        return pipe.vae_scale_factor * 2 ** (len(unet.config.block_out_channels) - 1)
    return pipe.vae_scale_factor * getattr(pipe.transformer.config, "patch_size", 1)


def is_hub_pipeline(model: str) -> bool:
    """Does the hub repository `model` hold a diffusers pipeline (model_index.json)?"""
    if Path(model).exists() or model.count("/") != 1:
        return False
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(model, "model_index.json")
    except Exception:  # no such file (a Wordbrush repo), offline, unknown id: the Wordbrush loader says which
        return False
    return True
