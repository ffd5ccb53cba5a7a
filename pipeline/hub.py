"""Real diffusers checkpoints (SD-Turbo, SDXL, SD 1.5, PixArt-Sigma, Sana...) behind the pipeline protocol.

    from pipeline import load_pipeline
    pipe = load_pipeline("sd-turbo")          # a preset, any diffusers hub id, or a local pipeline folder
    pipe.text_to_image("a lighthouse at dusk", seed=0, expand=True).images[0]

The three tasks map onto diffusers' text-to-image, image-to-image and inpainting pipelines
(`pipeline/diffusers_generator.py`). The language-model stage here is the prompt expander
(pipeline/expand.py); the checkpoint's own text encoder reads the (expanded) prompt.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline import images
from pipeline.diffusers_generator import DiffusersGenerator, native_resolution, size_multiple
from pipeline.expand import ExpansionStage
from pipeline.presets import ART_EXAMPLES, ART_STYLES, PRESETS, ModelSpec, preset_of
from pipeline.protocol import (
    Capabilities,
    LoraSlot,
    Result,
    adapted_layers,
    batch_of,
    check_request,
    image_seed,
    lora_label,
    resolve_seed,
)
from pipeline.recipe import Recipe
from pipeline.requests import InpaintRequest, StyleTransferRequest, TextToImageRequest, as_request, style_prompt_of


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
    """A diffusers checkpoint behind the pipeline protocol (`pipeline.protocol.ImagePipeline`)."""

    example_prompts = ART_EXAMPLES

    def __init__(self, generator: DiffusersGenerator, *, model: str, spec: ModelSpec | None):
        self.generator, self.model, self.spec = generator, model, spec
        t2i = generator.base
        tokenizer = getattr(t2i, "tokenizer", None)
        self.expansion = ExpansionStage(
            default=bool(spec and spec.expand_prompt),
            device=str(t2i.device),
            length_fn=None if tokenizer is None else (lambda text: len(tokenizer(text)["input_ids"])),
            max_tokens=_text_limit(tokenizer),
        )
        self.style_presets = spec.style_presets if spec else dict(ART_STYLES)
        self.world = None  # a real checkpoint draws no embedded world
        self._lora = LoraSlot(self._load_lora, self._scale_lora, self._unload_lora)
        self.encoder_name = (spec.text_encoder if spec and spec.text_encoder else "") or type(
            getattr(t2i, "text_encoder", None)
        ).__name__

    @classmethod
    def load(
        cls,
        model: str,
        *,
        device: str = "auto",
        dtype: torch.dtype | None = None,
        offload: bool = False,
        compile: bool = False,
    ) -> HubPipeline:
        """A preset name, diffusers hub id or pipeline folder; CUDA in bf16 when there is a GPU, else CPU fp32.
        offload: model CPU offload (components move to the GPU only while they run) for small GPUs.
        compile: torch.compile the denoiser (slow first call, faster after)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        spec = preset_of(model)
        t2i = from_pretrained(model, spec, dtype)
        if offload and device.startswith("cuda"):
            t2i.enable_model_cpu_offload()
        else:
            t2i.to(device)
        speed_up(t2i, cuda=device.startswith("cuda"), compile=compile)
        steps, guidance = sampling_defaults(t2i, model)
        generator = DiffusersGenerator(
            t2i, default_steps=steps, default_guidance=guidance, resolution=native_resolution(t2i)
        )
        return cls(generator, model=model, spec=spec)

    @property
    def capabilities(self) -> Capabilities:
        refused = dict(self.generator.missing)
        base = self.generator.base
        if not hasattr(base, "load_lora_weights"):
            refused["lora"] = f"diffusers has no LoRA loader for {type(base).__name__}"
        trainable = lora_training_refusal(base)
        if trainable:
            refused["lora_training"] = trainable
        return Capabilities(
            refused=refused,
            lora="lora" not in refused,
            lora_training=not trainable,
            lora_batch=LORA_BATCH.get(type(base).__name__, 1),
        )

    @property
    def default_steps(self) -> int:
        return self.generator.default_steps

    @property
    def default_guidance(self) -> float:
        return self.generator.default_guidance

    default_strength = 0.6  # style transfer's, when a call gives none

    # The three tasks

    def text_to_image(self, request: TextToImageRequest | str | list[str], *, callback=None, **options) -> Result:
        """`request.num_images` images per prompt (image j of a prompt uses seed + j), all in one batch. The layout
        stage is the embedded model's (pipeline/layout.py): layout=True is refused here. A prompt (or a list) with
        keyword options builds the request (pipeline/requests.py)."""
        # 1. Check inputs
        r = as_request(TextToImageRequest, request, options)
        prompts, seeds = batch_of(r.prompt, r.seed)
        steps, guidance = self._defaults(r.steps, r.guidance)
        check_request(prompts, seeds, steps=steps, guidance=guidance, num_images=r.num_images)
        if r.layout:
            raise ValueError("the layout stage steers the embedded diffusion model only; turn layout off")
        refuse_understanding(r.understand)
        self.capabilities.check("text_to_image")
        seeds = [resolve_seed(s) for s in seeds]
        lora = self._use_lora(r.lora)
        batch_prompts = [p for p in prompts for _ in range(r.num_images)]
        batch_seeds = [image_seed(s, j) for s in seeds for j in range(r.num_images)]

        # 2. The language-model stage, 3. the diffusers pipeline
        seen = self.expansion.apply(batch_prompts, batch_seeds, r.expand)
        r = self.generator.resolution
        out = self.generator.generate(
            "text_to_image",
            seen,
            batch_seeds,
            callback=callback,
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=r,
            width=r,
        )
        recipes = [
            self._recipe(p, s, steps, guidance, im.size, "text_to_image", seen_p, lora)
            for p, s, im, seen_p in zip(batch_prompts, batch_seeds, out, seen)
        ]
        return Result(out, recipes)

    def style_transfer(self, request: StyleTransferRequest | object, *, callback=None, **options) -> Result:
        """diffusers image-to-image: the image noised to `strength` and redrawn under the style prompt (and
        preset), at the input's aspect ratio. An image with keyword options builds the request."""
        r = as_request(StyleTransferRequest, request, options)
        source = images.open_image(r.image)
        style_prompt, seed = style_prompt_of(r, self.style_presets), r.seed
        steps, guidance = self._defaults(r.steps, r.guidance)
        check_request([style_prompt], [seed], steps=steps, guidance=guidance, num_images=1)
        refuse_understanding(r.understand)
        strength = self.default_strength if r.strength is None else r.strength
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be above 0 and at most 1, got {strength!r}")
        self.capabilities.check("style_transfer")
        seed = resolve_seed(seed)
        lora = self._use_lora(r.lora)
        # Turbo models need steps * strength >= 1 to run any denoising step at all.
        steps = max(steps, int(np.ceil(1 / strength)))
        seen = self.expansion.apply([style_prompt], [seed], r.expand)
        w, h = self._fit(source.size)
        out = self.generator.generate(
            "style_transfer",
            seen,
            [seed],
            callback=callback,
            image=source.resize((w, h), Image.LANCZOS),
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=guidance,
        )[0]
        recipe = self._recipe(style_prompt, seed, steps, guidance, out.size, "style_transfer", seen[0], lora)
        return Result([out], [dataclasses.replace(recipe, strength=strength)])

    def inpaint(self, request: InpaintRequest | object, mask=None, *, callback=None, **options) -> Result:
        """diffusers inpainting on the white part of the mask; outside it the input's pixels, bit for bit.
        zoom: a small mask's square is redrawn at the pipeline's full resolution (`images.inpaint_area`). An image
        and a mask with keyword options build the request."""
        r = as_request(InpaintRequest, request, options if mask is None else {**options, "mask": mask})
        source, prompt = images.open_image(r.image), r.prompt
        region = images.open_mask(r.mask, source.size)
        steps, guidance = self._defaults(r.steps, r.guidance)
        check_request([prompt], [r.seed], steps=steps, guidance=guidance, num_images=1)
        refuse_understanding(r.understand)
        self.capabilities.check("inpaint")
        seed = resolve_seed(r.seed)
        lora = self._use_lora(r.lora)
        recipe = self._recipe(prompt, seed, steps, guidance, source.size, "inpaint", prompt, lora)
        if not region.any():
            return Result([source.copy()], [recipe])
        seen = self.expansion.apply([prompt], [seed], r.expand)
        box = images.inpaint_area(region) if r.zoom else None
        area, area_mask = images.crop_area(source, region, box)
        w, h = self._fit(area.size)
        mask_image = Image.fromarray(area_mask.astype(np.uint8) * 255).resize((w, h), Image.BOX)
        generated = self.generator.generate(
            "inpaint",
            seen,
            [seed],
            callback=callback,
            image=area.resize((w, h), Image.LANCZOS),
            mask_image=mask_image.point(lambda v: 255 if v > 0 else 0),
            height=h,
            width=w,
            strength=1.0,
            num_inference_steps=steps,
            guidance_scale=guidance,
        )[0]
        out = images.paste_area(source, images.composite(generated, area, area_mask), box)
        return Result([out], [dataclasses.replace(recipe, encoded_prompt=seen[0])])

    # LoRA: one adapter on the shared components, set by each call's `lora=`

    def _use_lora(self, lora: str | None) -> str | None:
        if lora:
            self.capabilities.check("lora")
        return self._lora.use(lora)

    def _load_lora(self, path: Path) -> None:
        pipe = self.generator.base
        try:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=LoraSlot.ADAPTER)
        except Exception as err:  # a corrupt file, or tensors of another model's shapes
            raise ValueError(f"{path.name} does not fit {self.model} ({err.__class__.__name__})") from err
        denoisers = (getattr(pipe, "unet", None), getattr(pipe, "transformer", None))
        if not any(adapted_layers(d, LoraSlot.ADAPTER) for d in denoisers) and not adapted_layers(
            getattr(pipe, "text_encoder", None), LoraSlot.ADAPTER
        ):
            pipe.delete_adapters(LoraSlot.ADAPTER)
            raise ValueError(f"{path.name} matches no layer of {self.model}: it was made for another model")

    def _scale_lora(self, scale: float) -> None:
        self.generator.base.set_adapters([LoraSlot.ADAPTER], adapter_weights=[scale])

    def _unload_lora(self) -> None:
        self.generator.base.delete_adapters(LoraSlot.ADAPTER)

    # Helpers

    def _defaults(self, steps, guidance) -> tuple[int, float]:
        return (
            self.generator.default_steps if steps is None else steps,
            self.generator.default_guidance if guidance is None else guidance,
        )

    def _fit(self, size: tuple[int, int]) -> tuple[int, int]:
        """The input's aspect ratio at the model's resolution (long side), in multiples the model accepts."""
        m = size_multiple(self.generator.base)
        w, h = size
        scale = self.generator.resolution / max(w, h)
        return max(m, round(w * scale / m) * m), max(m, round(h * scale / m) * m)

    def _recipe(self, prompt, seed, steps, guidance, size, task, seen, lora) -> Recipe:
        return Recipe(
            prompt=prompt,
            seed=seed,
            steps=steps,
            guidance=guidance,
            model=self.model,
            generator=self.generator.kind,
            encoder=self.encoder_name,
            width=size[0],
            height=size[1],
            task=task,
            encoded_prompt=seen,
            lora=lora_label(lora),
            expanded=seen != prompt,
        )


def from_pretrained(model: str, spec: ModelSpec | None, dtype: torch.dtype):
    """The text-to-image pipeline of `model`, with the components its preset takes from other repositories,
    in the fp16 download variant where the repository has one and the weights are half precision anyway."""
    from diffusers import AutoModel, AutoPipelineForText2Image

    source = spec.generators["diffusers"] if spec is not None else model
    variants = ["fp16", None] if dtype in (torch.float16, torch.bfloat16) else [None]
    try:
        parts = {
            name: AutoModel.from_pretrained(repo, subfolder=name, dtype=dtype, use_safetensors=True)
            for name, repo in (spec.components.items() if spec is not None else ())
        }
        for variant in variants:
            try:
                return AutoPipelineForText2Image.from_pretrained(
                    source, dtype=dtype, use_safetensors=True, variant=variant, **parts
                )
            except ValueError:  # no files of this variant: the next one
                if variant is None:
                    raise
    except (OSError, ValueError) as err:
        raise ValueError(
            f"cannot load {model!r} as a diffusers pipeline: not a preset ({', '.join(PRESETS)}), "
            f"a folder with model_index.json, or a reachable hub id with safetensors weights "
            f"({err.__class__.__name__}: {str(err).splitlines()[0][:200]})"
        ) from err


def speed_up(pipe, *, cuda: bool, compile: bool) -> None:
    """The GPU fast path the speed benchmark measures (docs/speed.md): attention's query, key and value
    projections fused into one matrix product, channels-last convolutions, and torch.compile when asked.
    Attention is PyTorch's SDPA already (diffusers' default)."""
    denoiser_name = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
    if cuda:
        if hasattr(pipe, "fuse_qkv_projections"):
            pipe.fuse_qkv_projections()
        if denoiser_name == "unet":
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
    if compile:
        setattr(pipe, denoiser_name, torch.compile(getattr(pipe, denoiser_name)))


# The pipeline families whose LoRA this project trains (train/hub_lora.py), with the images per step that fit,
# at the native resolution with gradient checkpointing and a bf16 base, a 16 GB GPU for SD 1.5 (512 px: about
# 5 GB) and a 24 GB GPU for SDXL (1024 px: about 15 GB); bench/results/lora-memory.md has the count.
LORA_BATCH = {"StableDiffusionPipeline": 8, "StableDiffusionXLPipeline": 2}


def lora_training_refusal(pipe) -> str:
    """Why LoRA training cannot run on `pipe` ("" when it can)."""
    name = type(pipe).__name__
    if name not in LORA_BATCH:
        return f"LoRA training covers Stable Diffusion 1.x/2.x and SDXL checkpoints; this one is {name}"
    if pipe.unet.config.in_channels != 4:
        return "LoRA training takes a text-to-image checkpoint; this is an inpainting (9-channel) UNet"
    return ""


# Sampling defaults by pipeline family: (steps, guidance)
FAMILY_DEFAULTS = {
    "StableDiffusionPipeline": (25, 7.5),
    "StableDiffusionXLPipeline": (30, 5.0),
    "PixArtSigmaPipeline": (20, 4.5),
    "PixArtAlphaPipeline": (20, 4.5),
    "SanaPipeline": (20, 4.5),
}


def sampling_defaults(pipe, model: str) -> tuple[int, float]:
    """Steps and guidance for `model`: its preset's; a distilled few-step checkpoint's, known by a "turbo" name
    (1 step) or by the scheduler it ships (LCM, or "trailing" timesteps as SD-Turbo and SDXL-Lightning set:
    4 steps), without guidance; else its family's."""
    spec = preset_of(model)
    if spec is not None and spec.steps:
        return spec.steps, spec.guidance
    if "turbo" in model.lower():
        return 1, 0.0
    scheduler = pipe.scheduler.config
    if type(pipe.scheduler).__name__ == "LCMScheduler" or scheduler.get("timestep_spacing") == "trailing":
        return 4, 0.0
    return FAMILY_DEFAULTS.get(type(pipe).__name__, (25, 5.0))


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
