"""The pipeline API: one object holds the prompt encoder and a generator, and answers typed calls.

from pipeline import Wordbrush
wb = Wordbrush.load()                                   # the embedded default, offline
result = wb.text_to_image("a red circle above a blue square", seed=0)
result.images[0].save("out.png")                        # result.recipes[0] says how it was made
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from pipeline import diffusion, gan, images
from pipeline import layout as layout_lib
from pipeline.encoders import PromptEncoder, load_encoder
from pipeline.expand import ExpansionStage
from pipeline.presets import DEFAULT_MODEL, is_diffusers, resolve_model
from pipeline.recipe import Recipe, read_recipe
from pipeline.understand import UnderstandingStage, Understood, describe_image, without_style

if TYPE_CHECKING:
    from pipeline.hub import HubPipeline

MAX_IMAGES = 16  # per call: more is a batch job for the CLI
MAX_SEED = 2**63 - 1
MAX_GUIDANCE = 30.0
MAX_LORA_SCALE = 4.0  # |scale| above this only burns the image out
INPAINT_RESAMPLE = 1  # RePaint resampling rounds per step for inpainting (1: blended diffusion alone)


@dataclass
class Result:
    images: list[Image.Image]  # native resolution, RGB
    recipes: list[Recipe]  # one per image


class DiffusionGenerator:
    """The diffusion model behind the common generator call `generate(cond, uncond, seeds=..., ...)`."""

    kind = "diffusion"
    default_steps = 12
    default_guidance = 3.0
    plans_layout = True  # reads the layout stage's regions (pipeline/layout.py)

    def __init__(self, unet, cfg: diffusion.DiffusionConfig, *, autocast: torch.dtype | None = None, inpaint_unet=None):
        # Channels-last convolutions: 10-15% less time per image on the CPU at batch 1 and 16 (measured
        # side by side on the 2-core machine, bf16 autocast); the UNet's weights are unchanged.
        self.unet, self.cfg = unet.to(memory_format=torch.channels_last), cfg
        layout_lib.install(self.unet)  # the layout stage's regional cross-attention, `layout.attend`'s products
        # A UNet trained to inpaint (it also reads the kept pixels and the mask), used for masked calls.
        self.inpaint_unet = None if inpaint_unet is None else inpaint_unet.to(memory_format=torch.channels_last)
        if self.inpaint_unet is not None:
            layout_lib.install(self.inpaint_unet)  # never gets regions: for `layout.attend`'s faster products
        self.resolution = cfg.resolution
        self.autocast = autocast  # run the UNet's matmuls and convolutions in this dtype (None: the weights')

    def generate(
        self, cond, uncond, *, seeds, steps, guidance, callback=None, init=None, strength=1.0, mask=None, resample=1,
        regions=None,
    ) -> torch.Tensor:  # fmt: skip
        device_type = self.unet.device.type
        unet = self.inpaint_unet if mask is not None and self.inpaint_unet is not None else self.unet
        with torch.autocast(device_type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            return diffusion.sample(
                unet, self.cfg, cond, uncond, seeds=seeds, steps=steps, guidance=guidance,
                callback=callback, init=init, strength=strength, mask=mask, resample=resample, regions=regions,
            ).float()  # fmt: skip


class GANGenerator:
    """The one-step GAN behind the same call; steps and guidance do not apply (it runs once, unguided)."""

    kind = "gan"
    default_steps = 1
    default_guidance = 0.0
    plans_layout = False  # no cross-attention to steer: the layout stage does not apply

    def __init__(self, model: gan.TextToImageGAN):
        self.model = model
        self.resolution = model.config.resolution

    def generate(
        self, cond, uncond, *, seeds, steps, guidance, callback=None, init=None, strength=1.0, mask=None, resample=1,
        regions=None,
    ) -> torch.Tensor:  # fmt: skip
        if regions is not None:
            raise ValueError("the GAN generator has no cross-attention for a layout; plan layouts for diffusion only")
        if init is not None:
            raise ValueError(
                "the GAN generator draws from text alone; use the diffusion generator for style transfer and inpainting"
            )
        x = gan.generate_step(self.model, cond, seeds)
        if callback is not None:
            callback(1, 1, x)
        return x


def local_folder(source: str) -> Path:
    """A model folder on disk: `source` itself, or a hub repository downloaded to the local cache."""
    path = Path(source)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=source))
    except Exception as err:  # offline, unknown id, no access: one clear message
        raise ValueError(
            f"model {source!r} is neither a folder nor a downloadable hub repository ({err.__class__.__name__}); "
            f"pass a preset name, a local model folder or a hub id"
        ) from err


class Wordbrush:
    """A prompt encoder and a generator, loaded once and shared by the UI, the CLI and scripts."""

    def __init__(
        self,
        encoder: PromptEncoder,
        generator: DiffusionGenerator | GANGenerator,
        *,
        model: str,
        precision: str = "auto",
    ):
        self.encoder, self.generator, self.model = encoder, generator, model
        self.precision = precision  # what load_generator was asked for (with_generator asks the same)
        self.lora: str | None = None  # "path:scale" of the applied LoRA
        # Off by default: the shapes model reads the world's own words best. Expansions stay within what the
        # prompt encoder reads.
        self.expansion = ExpansionStage(
            default=False, device=str(encoder.device), max_tokens=encoder.max_tokens,
            length_fn=lambda text: len(encoder.tokenizer(text)["input_ids"]),
        )  # fmt: skip
        # Free phrasing -> the world's own words, by the prompt reader (pipeline/understand.py)
        self.understanding = UnderstandingStage(device=str(encoder.device))
        self._uncond = encoder.encode([""])

    @property
    def encoder_name(self) -> str:
        return self.encoder.name

    @classmethod
    def load(
        cls, model: str = DEFAULT_MODEL, *, generator: str | None = None, device: str = "auto", offload: bool = False,
        compile: bool = False, precision: str = "auto",
    ) -> Wordbrush | HubPipeline:  # fmt: skip
        """Load a preset name, a model folder or a hub id, on CUDA when there is one. Diffusers checkpoints
        (presets such as "sd-turbo", pipeline folders, hub ids) come back as a HubPipeline with the same calls;
        offload and compile apply to them; precision ("auto", "bf16", "fp32") to the embedded diffusion generator."""
        from pipeline.hub import HubPipeline, is_hub_pipeline

        if generator in (None, "diffusers") and (is_diffusers(model) or is_hub_pipeline(model)):
            return HubPipeline.load(model, device=device, offload=offload, compile=compile)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        source, kind = resolve_model(model, generator)
        folder = local_folder(source)
        meta = diffusion.read_meta(folder)
        if generator is not None and generator != meta["generator"]:
            raise ValueError(f"{folder} holds a {meta['generator']!r} generator, not {generator!r}")
        encoder = load_encoder(meta["encoder"], device=device)
        generator = load_generator(folder, meta, device=device, precision=precision)
        return cls(encoder, generator, model=model, precision=precision)

    def with_generator(self, kind: str) -> Wordbrush:
        """The same model and prompt encoder (shared, not reloaded) with its `kind` generator."""
        source, kind = resolve_model(self.model, kind)
        folder = local_folder(source)
        meta = diffusion.read_meta(folder)
        if meta["encoder"] != self.encoder.name:
            raise ValueError(f"{folder} reads prompts with {meta['encoder']!r}, not {self.encoder.name!r}")
        generator = load_generator(folder, meta, device=str(self.encoder.device), precision=self.precision)
        other = Wordbrush(self.encoder, generator, model=self.model, precision=self.precision)
        other.understanding = self.understanding  # one prompt reader, loaded once
        return other

    def text_to_image(
        self,
        prompt: str | list[str],
        *,
        seed: int | list[int] = 0,
        steps: int | None = None,
        guidance: float | None = None,
        num_images: int = 1,
        callback=None,
        expand: bool | None = None,
        layout: bool | None = None,
        understand: bool | None = None,
    ) -> Result:
        """`num_images` images per prompt; image j of a prompt uses seed + j. All run as one batch.
        seed=-1 picks a random seed (the recipe records it). understand (None: on where a prompt reader is
        shipped): free phrasing is read into the world's own words first (pipeline/understand.py).
        expand=True rewrites each prompt with the LM expander (pipeline/expand.py). layout (None: on where
        the generator reads it): a prompt that names two different objects gets a planned layout, one box
        per object (pipeline/layout.py)."""
        # 1. Check inputs
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        seeds = [seed] * len(prompts) if isinstance(seed, int) else list(seed)
        steps = self.generator.default_steps if steps is None else steps
        guidance = self.generator.default_guidance if guidance is None else guidance
        check_request(prompts, seeds, steps=steps, guidance=guidance, num_images=num_images)
        if layout and not self.generator.plans_layout:
            raise ValueError(f"the {self.generator.kind} generator cannot follow a layout; turn layout off")
        layout = self.generator.plans_layout if layout is None else layout
        seeds = [resolve_seed(s) for s in seeds]
        batch_prompts = [p for p in prompts for _ in range(num_images)]
        batch_seeds = [s + j for s in seeds for j in range(num_images)]

        # 2. The language-model stage: understanding, optional expansion, then the prompt encoder
        understood = [u for u in self.understand(prompts, understand) for _ in range(num_images)]
        seen = self.expansion.apply([u.text for u in understood], batch_seeds, expand)
        cond = self.encoder.encode(seen)

        # 3. The layout stage: a box per object for prompts that name two (pipeline/layout.py)
        plans = [layout_lib.plan(q, s) if layout else None for q, s in zip(seen, batch_seeds)]
        length = cond.states.shape[1]
        regions = layout_lib.regions(plans, self._offsets(seen, length), length) if any(plans) else None

        # 4. Generate
        x = self.generator.generate(
            cond, self._uncond, seeds=batch_seeds, steps=steps, guidance=guidance, callback=callback, regions=regions
        )

        # 5. Images and their recipes
        size = (self.generator.resolution, self.generator.resolution)
        recipes = [
            dataclasses.replace(
                self._recipe(p, s, steps, guidance, size, truncated, task="text_to_image", seen=q, understood=u),
                layout=None if plan is None else plan.describe(),
            )
            for p, s, truncated, q, plan, u in zip(batch_prompts, batch_seeds, cond.truncated, seen, plans, understood)
        ]
        return Result(to_pil(x), recipes)

    def understand(self, prompts: list[str], understand: bool | None = None) -> list[Understood]:
        """How the generator will read each prompt: free phrasing put in the world's own words by the
        prompt reader, or as written (understand=False, or no reader shipped for this model)."""
        return self.understanding.apply(prompts, self._understands(understand))

    def _understands(self, understand: bool | None) -> bool:
        """Whether a call reads free phrasing: as asked, or (None) where a prompt reader is shipped."""
        if understand and not self.understanding.available:
            raise ValueError(
                f"no prompt reader is shipped at {self.understanding.folder}; train one with "
                "`python -m train understanding`, or turn understanding off"
            )
        return self.understanding.available if understand is None else understand

    def with_content(self, style_prompt: str, image: Image.Image) -> str:
        """`style_prompt` as it is when it names content; else the image's description before it: the
        prompt its recipe records, or the scene the world's parser finds in it (`describe_image`)."""
        if self.understanding.names_content(style_prompt):
            return style_prompt
        recipe = read_recipe(image)
        if recipe is not None:
            description = without_style(recipe.encoded_prompt or recipe.prompt)
        else:
            description = describe_image(image)
        return f"{description} {style_prompt}" if description else style_prompt

    def set_lora(self, lora: str | None) -> None:
        """Apply a LoRA ("path/to/lora.safetensors" or "...:scale") to the diffusion generator; None removes it."""
        if not isinstance(self.generator, DiffusionGenerator):
            raise ValueError("LoRA adapters apply to the diffusion generator")
        # The inpainting UNet was fine-tuned from the text-to-image one: same layers, so the same LoRA fits both
        unets = [u for u in (self.generator.unet, self.generator.inpaint_unet) if u is not None]
        if self.lora is not None:
            for unet in unets:
                unet.delete_adapters("user")
            self.lora = None
        if lora is None:
            return
        path, scale = parse_lora(lora)
        for unet in unets:
            try:
                unet.load_lora_adapter(str(path.parent), weight_name=path.name, prefix="unet", adapter_name="user")
            except Exception as err:  # a corrupt file, or tensors of another model's shapes
                for u in unets:
                    if "user" in getattr(u, "peft_config", {}):
                        u.delete_adapters("user")
                raise ValueError(f"{path.name} is not a LoRA for {self.model}: {type(err).__name__}") from err
            if not adapted_layers(unet, "user"):
                unet.delete_adapters("user")
                raise ValueError(f"{path.name} matches no layer of {self.model}'s UNet: it was made for another model")
            unet.set_adapters(["user"], weights=[scale])
        self.lora = f"{path}:{scale:g}"

    def style_transfer(
        self,
        image,
        *,
        style_prompt: str,
        strength: float = 0.6,
        seed: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        callback=None,
        expand: bool | None = None,
        understand: bool | None = None,
    ) -> Result:
        """Redraw `image` (path or PIL, any mode and size) under `style_prompt`: noise it to `strength`
        (0 keeps it, 1 ignores it) and denoise with the prompt. Returned at the input's aspect ratio.
        A style prompt that names no content ("in outline style") is completed with a description of the
        image (its recipe's prompt, or what the scene parser finds in it), so restyling keeps the content."""
        # 1. Check inputs
        source = images.open_image(image)
        steps = self.generator.default_steps if steps is None else steps
        guidance = self.generator.default_guidance if guidance is None else guidance
        check_request([style_prompt], [seed], steps=steps, guidance=guidance, num_images=1)
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {strength!r}")
        seed = resolve_seed(seed)

        # 2. Describe the content when the prompt does not, understand, expand, encode
        described = self.with_content(style_prompt, source) if self._understands(understand) else style_prompt
        understood = self.understand([described], understand)[0]
        seen = self.expansion.apply([understood.text], [seed], expand)[0]
        cond = self.encoder.encode([seen])
        # 3. prepare the start image, 4. denoise from it
        init = images.to_model(source, self.generator.resolution)
        x = self.generator.generate(
            cond, self._uncond, seeds=[seed], steps=steps, guidance=guidance, callback=callback,
            init=init, strength=strength,
        )  # fmt: skip

        # 5. Back to the input's aspect ratio
        out = images.from_model(to_pil(x)[0], images.output_size(source.size, self.generator.resolution))
        recipe = self._recipe(
            style_prompt, seed, steps, guidance, out.size, cond.truncated[0], task="style_transfer", seen=seen,
            understood=understood,
        )  # fmt: skip
        return Result([out], [dataclasses.replace(recipe, strength=strength, described=described != style_prompt)])

    def inpaint(
        self,
        image,
        mask,
        *,
        prompt: str,
        seed: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        callback=None,
        expand: bool | None = None,
        resample: int = INPAINT_RESAMPLE,
        zoom: bool = True,
        understand: bool | None = None,
    ) -> Result:
        """Regenerate the white part of `mask` (same size as `image`) to show `prompt`. Pixels outside
        the mask are returned unchanged, bit for bit, at the input's own size. zoom: a small mask is
        redrawn on the model's whole canvas (a square crop around it, `images.inpaint_area`), as
        AUTOMATIC1111's "only masked"; False redraws the whole image. resample > 1: RePaint resampling,
        each step redone that many times (bench/edit_quality.py measures both)."""
        # 1. Check inputs
        source = images.open_image(image)
        region = images.open_mask(mask, source.size)
        steps = self.generator.default_steps if steps is None else steps
        guidance = self.generator.default_guidance if guidance is None else guidance
        check_request([prompt], [seed], steps=steps, guidance=guidance, num_images=1)
        seed = resolve_seed(seed)
        recipe = self._recipe(prompt, seed, steps, guidance, source.size, False, task="inpaint")
        if not region.any():  # nothing to regenerate
            return Result([source.copy()], [recipe])

        # 2. Understand, expand and encode the prompt
        understood = self.understand([prompt], understand)[0]
        seen = self.expansion.apply([understood.text], [seed], expand)[0]
        cond = self.encoder.encode([seen])
        # 3. The area to redraw (a square around a small mask, else the whole image), at the model's resolution
        box = images.inpaint_area(region) if zoom else None
        area, area_mask = images.crop_area(source, region, box)
        r = self.generator.resolution
        # 4. Denoise
        x = self.generator.generate(
            cond, self._uncond, seeds=[seed], steps=steps, guidance=guidance, callback=callback,
            init=images.to_model(area, r), mask=images.mask_to_model(area_mask, r), resample=resample,
        )  # fmt: skip

        # 5. Composite: generated pixels inside the mask, the input's own pixels outside
        out = images.paste_area(source, images.composite(to_pil(x)[0], area, area_mask), box)
        recipe = self._recipe(
            prompt, seed, steps, guidance, source.size, cond.truncated[0], task="inpaint", seen=seen,
            understood=understood,
        )  # fmt: skip
        return Result([out], [recipe])

    def _recipe(self, prompt, seed, steps, guidance, size, truncated, *, task, seen=None, understood=None) -> Recipe:
        seen = prompt if seen is None else seen
        read = prompt if understood is None else understood.text
        return Recipe(
            prompt=prompt, seed=seed, steps=steps, guidance=guidance, model=self.model,
            generator=self.generator.kind, encoder=self.encoder.name, width=size[0], height=size[1],
            task=task, encoded_prompt=self.encoded_text(seen, truncated), lora=lora_label(self.lora),
            expanded=seen != read, understood=None if understood is None else understood.how,
        )  # fmt: skip

    def _offsets(self, prompts: list[str], length: int) -> list[list[tuple[int, int]]]:
        """Each prompt's token character spans, aligned with the encoder's `length` padded token states."""
        tok = self.encoder.tokenizer
        found = tok(prompts, truncation=True, max_length=self.encoder.max_tokens, return_offsets_mapping=True)
        spans = [list(o) for o in found["offset_mapping"]]
        return [[(0, 0)] * (length - len(o)) + o for o in spans] if tok.padding_side == "left" else spans

    def encoded_text(self, prompt: str, truncated: bool) -> str:
        """The prompt as the language model saw it: its tokens, cut at the encoder's limit."""
        if not truncated:
            return prompt
        ids = self.encoder.tokenizer(prompt, truncation=True, max_length=self.encoder.max_tokens)["input_ids"]
        return self.encoder.tokenizer.decode(ids, skip_special_tokens=True)


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


def adapted_layers(module: torch.nn.Module, adapter: str) -> int:
    """How many layers of `module` carry the LoRA `adapter` (peft's tuner layers keep one lora_A per adapter)."""
    return sum(1 for m in module.modules() if adapter in getattr(m, "lora_A", {}))


def load_generator(folder: Path, meta: dict, *, device: str, precision: str = "auto"):
    """The generator a Wordbrush model folder holds, by its wordbrush.json.
    precision "auto": bf16 autocast where the hardware computes bf16 natively (CUDA; CPUs with AMX or
    AVX512-BF16), fp32 elsewhere; or "bf16" / "fp32"."""
    if meta["generator"] == "gan":
        return GANGenerator(gan.load(folder, device=device))
    unet, cfg, _ = diffusion.load(folder, device=device)
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    bf16 = precision == "bf16" or (precision == "auto" and native_bf16(device))
    inpaint_unet = diffusion.load_inpainting_unet(folder, device=device)
    return DiffusionGenerator(unet, cfg, autocast=torch.bfloat16 if bf16 else None, inpaint_unet=inpaint_unet)


def native_bf16(device: str) -> bool:
    """Does `device` compute bf16 natively (so autocast pays): CUDA, or a CPU with AMX / AVX512-BF16?
    Measured on this project's CPU (AMX): 0.41 s/image at batch 1 and 0.165 at batch 8, against 0.47 and
    0.31 in fp32 (bench/diffusion_latency.py)."""
    if device.startswith("cuda"):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def check_request(prompts: list[str], seeds: list[int], *, steps: int, guidance: float, num_images: int) -> None:
    """Raise ValueError with a teaching message for input the generators cannot honour."""
    if not prompts:
        raise ValueError("no prompt given; pass a prompt such as 'a red circle above a blue square'")
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
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
    if not isinstance(steps, int) or not 1 <= steps <= diffusion.MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {diffusion.MAX_STEPS}, got {steps!r}")
    if not 0.0 <= guidance <= MAX_GUIDANCE:
        raise ValueError(f"guidance must be between 0 and {MAX_GUIDANCE:g}, got {guidance!r}")
    if not 1 <= num_images <= MAX_IMAGES:
        raise ValueError(f"num_images must be between 1 and {MAX_IMAGES}, got {num_images!r}")


def resolve_seed(seed: int) -> int:
    """-1 means "pick one": a random seed that the recipe then records."""
    return random.randrange(2**32) if seed == -1 else seed


def to_pil(x: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [0, 1] -> RGB images."""
    arr = (x.permute(0, 2, 3, 1).float().numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return [Image.fromarray(a) for a in arr]
