"""The embedded pipeline: a language-model prompt encoder and one of this project's generators, answering
the three typed calls of `pipeline.protocol.ImagePipeline`.

from pipeline import Wordbrush
wb = Wordbrush.load()                                   # the embedded default (icons), offline
result = wb.text_to_image("a frog next to a slice of pizza", seed=0)
result.images[0].save("out.png")                        # result.recipes[0] says how it was made

`pipeline.load_pipeline` opens any model (this one, or a diffusers checkpoint) by name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from pipeline import diffusion, gan, images
from pipeline.encoders import PromptEncoder, load_encoder
from pipeline.expand import ExpansionStage
from pipeline.images import to_pil
from pipeline.presets import DEFAULT_MODEL, resolve_model
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
from pipeline.recipe import Recipe, read_recipe
from pipeline.requests import InpaintRequest, StyleTransferRequest, TextToImageRequest, as_request, style_prompt_of
from pipeline.worlds import world_named
from pipeline.worlds.base import Taught, Understood

INPAINT_RESAMPLE = 1  # RePaint resampling rounds per step for inpainting (1: blended diffusion alone)
Generator = diffusion.DiffusionGenerator | gan.GANGenerator


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
    """A prompt encoder and a generator, loaded once and shared by the UI, the CLI and scripts. What the pictures
    can show (the reader, the layout stage, the finder, the styles) is its world's (pipeline/worlds)."""

    def __init__(self, encoder: PromptEncoder, generator: Generator, *, model: str, precision: str = "auto"):
        self.encoder, self.generator, self.model = encoder, generator, model
        self.world = world_named(generator.world)
        self.style_presets, self.example_prompts = self.world.styles, self.world.examples
        self.precision = precision  # what load_generator was asked for (with_generator asks the same)
        # Off by default: the models read their world's own words best. Expansions stay within what the
        # prompt encoder reads.
        self.expansion = ExpansionStage(
            default=False,
            device=str(encoder.device),
            max_tokens=encoder.max_tokens,
            length_fn=lambda text: len(encoder.tokenizer(text)["input_ids"]),
        )
        self.understanding = self.world.reader(encoder)  # free phrasing -> the world's own words
        self._uncond = encoder.encode([""])
        self._lora = LoraSlot(self._load_lora, self._scale_lora, self._unload_lora)
        self._taught: Taught | None = None  # what the LoRA in force teaches beyond its adapters (icons: a painter)

    @property
    def capabilities(self) -> Capabilities:
        diffusion_model = isinstance(self.generator, diffusion.DiffusionGenerator)
        editing = "the GAN draws from text alone; use the diffusion generator"
        return Capabilities(
            refused={} if diffusion_model else {"style_transfer": editing, "inpaint": editing},
            layout=self.generator.plans_layout,
            lora=diffusion_model,
            lora_training=diffusion_model,
            live_preview=not diffusion_model,
            understanding=self.understanding.available,
            tunable_steps=diffusion_model,
            pixel_art=True,
        )

    @property
    def default_steps(self) -> int:
        return self.generator.default_steps

    @property
    def default_guidance(self) -> float:
        return self.generator.default_guidance

    @property
    def default_strength(self) -> float:
        """Style transfer's, when a call gives none: the world's."""
        return self.world.default_strength

    @property
    def encoder_name(self) -> str:
        return self.encoder.name

    @classmethod
    def load(
        cls, model: str = DEFAULT_MODEL, *, generator: str | None = None, device: str = "auto", precision: str = "auto"
    ) -> Wordbrush:
        """Load a preset name, a Wordbrush model folder or a hub id of one, on CUDA when there is one.
        precision ("auto", "bf16", "fp32") applies to the diffusion generator."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        source, kind = resolve_model(model, generator)
        if kind == "diffusers":
            raise ValueError(f"{model!r} is a diffusers checkpoint; open it with pipeline.load_pipeline")
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

    def text_to_image(self, request: TextToImageRequest | str | list[str], *, callback=None, **options) -> Result:
        """`request.num_images` images per prompt; image j of a prompt uses seed + j. All run as one batch.
        A prompt (or a list) with keyword options builds the request (pipeline/requests.py)."""
        # 1. Check inputs
        r = as_request(TextToImageRequest, request, options)
        prompts, seeds = batch_of(r.prompt, r.seed)
        steps = self.generator.default_steps if r.steps is None else r.steps
        guidance = self.generator.default_guidance if r.guidance is None else r.guidance
        check_request(prompts, seeds, steps=steps, guidance=guidance, num_images=r.num_images)
        if r.layout and not self.generator.plans_layout:
            raise ValueError(f"the {self.generator.kind} generator cannot follow a layout; turn layout off")
        layout = self.generator.plans_layout if r.layout is None else r.layout
        seeds = [resolve_seed(s) for s in seeds]
        batch_prompts = [p for p in prompts for _ in range(r.num_images)]
        batch_seeds = [image_seed(s, j) for s in seeds for j in range(r.num_images)]
        lora = self._use_lora(r.lora)

        # 2. The language-model stage: understanding, optional expansion, then the prompt encoder
        understood = [u for u in self.understand(prompts, r.understand) for _ in range(r.num_images)]
        seen = self.expansion.apply([u.text for u in understood], batch_seeds, r.expand)
        cond = self.encoder.encode(seen)

        # 3. The world's layout stage: where each named thing goes, as the generator reads it
        staged = self.world.text_to_image(
            self.encoder, self.generator, seen, batch_seeds, cond=cond, layout=layout, taught=self._phrases
        )

        # 4. Generate
        x = self.generator.generate(
            cond, self._uncond, seeds=batch_seeds, steps=steps, guidance=guidance, callback=callback, **staged.inputs
        )

        # 5. Images and their recipes
        size = (self.generator.resolution, self.generator.resolution)
        recipes = [
            dataclasses.replace(
                self._recipe(p, s, steps, guidance, size, cut, task="text_to_image", lora=lora, seen=q, understood=u),
                layout=None if plan is None else plan.describe(),
            )
            for p, s, cut, q, plan, u in zip(batch_prompts, batch_seeds, cond.truncated, seen, staged.plans, understood)
        ]
        return Result(to_pil(x), recipes)

    @property
    def _phrases(self) -> tuple[str, ...]:
        """The things the LoRA in force teaches, as its file names them (none without one)."""
        return () if self._taught is None else self._taught.phrases

    def understand(self, prompts: list[str], understand: bool | None = None) -> list[Understood]:
        """How the generator will read each prompt: free phrasing put in the world's own words by the
        prompt reader, or as written (understand=False, or no reader shipped for this model)."""
        # a LoRA's new things stay as written
        taught = {"taught": frozenset(w for p in self._phrases for w in p.split())} if self._phrases else {}
        return self.understanding.apply(prompts, self._understands(understand), **taught)

    def _understands(self, understand: bool | None) -> bool:
        """Whether a call reads free phrasing: as asked, or (None) where a prompt reader is shipped."""
        if understand and not self.understanding.available:
            raise ValueError(
                f"no prompt reader is shipped at {self.understanding.folder}; train one with "
                f"`python -m train understanding --world {self.world.name}`, or turn understanding off"
            )
        return self.understanding.available if understand is None else understand

    def with_content(self, style_prompt: str, image, recipe: Recipe | None) -> str:
        """`style_prompt` as it is when it names content; else the image's description before it: the
        prompt its recipe (`read_recipe(image)`) records, or what the world's finder sees in it."""
        if self.understanding.names_content(style_prompt):
            return style_prompt
        if recipe is not None:
            description = self.world.without_style(recipe.encoded_prompt or recipe.prompt)
        else:
            description = self.world.describe(image, self.generator.resolution)
        return f"{description} {style_prompt}" if description else style_prompt

    # LoRA: the one adapter slot of the diffusion UNets, set by each call's `lora=`

    def _use_lora(self, lora: str | None) -> str | None:
        """Carry exactly this call's LoRA (None: none); returns it as "path:scale" for the recipe."""
        if lora is not None and not self.capabilities.lora:
            raise ValueError("LoRA adapters apply to the diffusion generator; choose it, or no LoRA")
        return self._lora.use(lora)

    def _unets(self) -> list:
        # The inpainting UNet was fine-tuned from the text-to-image one: same layers, so the same LoRA fits both
        return [u for u in (self.generator.unet, self.generator.inpaint_unet) if u is not None]

    def _load_lora(self, path: Path) -> None:
        try:
            for unet in self._unets():
                unet.load_lora_adapter(
                    str(path.parent), weight_name=path.name, prefix="unet", adapter_name=LoraSlot.ADAPTER
                )
        except Exception as err:  # a corrupt file, or tensors of another model's shapes: the model stays as it was
            self._unload_lora()
            raise ValueError(f"{path.name} is not a LoRA for {self.model}: {type(err).__name__}") from err
        if not all(adapted_layers(unet, LoraSlot.ADAPTER) for unet in self._unets()):
            self._unload_lora()
            raise ValueError(f"{path.name} matches no layer of {self.model}'s UNet: it was made for another model")
        try:
            self._taught = self.world.load_taught(self.generator, path, model=self.model)
        except ValueError:
            self._unload_lora()
            raise

    def _scale_lora(self, scale: float) -> None:
        for unet in self._unets():
            unet.set_adapters([LoraSlot.ADAPTER], weights=[scale])
        if self._taught is not None:
            self._taught.scale(scale)

    def _unload_lora(self) -> None:
        for unet in self._unets():
            if LoraSlot.ADAPTER in getattr(unet, "peft_config", {}):
                unet.delete_adapters(LoraSlot.ADAPTER)
        if self._taught is not None:
            self._taught.restore()
        self._taught = None

    def style_transfer(self, request: StyleTransferRequest | object, *, callback=None, **options) -> Result:
        """Redraw `request.image` (path or PIL, any mode and size) under its style prompt (and preset): noise it to
        `strength` (0 keeps it, 1 ignores it; None: `default_strength`) and denoise with the prompt. Returned at
        the input's aspect ratio. A style prompt that names no content ("in outline style") is completed with a
        description of the image (its recipe's prompt, or what the world's finder sees), so restyling keeps it.
        An image with keyword options builds the request (pipeline/requests.py)."""
        # 1. Check inputs
        r = as_request(StyleTransferRequest, request, options)
        source = images.open_image(r.image)
        style_prompt = style_prompt_of(r, self.style_presets)
        steps = self.generator.default_steps if r.steps is None else r.steps
        guidance = self.generator.default_guidance if r.guidance is None else r.guidance
        check_request([style_prompt], [r.seed], steps=steps, guidance=guidance, num_images=1)
        strength = self.default_strength if r.strength is None else r.strength
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {strength!r}")
        self.capabilities.check("style_transfer")
        seed = resolve_seed(r.seed)
        lora = self._use_lora(r.lora)

        # 2. Describe the content when the prompt does not, understand, expand, encode
        source_recipe = read_recipe(source)
        described = (
            self.with_content(style_prompt, source, source_recipe) if self._understands(r.understand) else style_prompt
        )
        understood = self.understand([described], r.understand)[0]
        seen = self.expansion.apply([understood.text], [seed], r.expand)[0]
        cond = self.encoder.encode([seen])
        # 3. Prepare the start image and the world's layout, 4. denoise from it
        init = images.to_model(source, self.generator.resolution)
        staged = self.world.restyle(
            self.encoder, self.generator, seen, source, recipe=source_recipe, taught=self._phrases
        )
        x = self.generator.generate(
            cond,
            self._uncond,
            seeds=[seed],
            steps=steps,
            guidance=guidance,
            callback=callback,
            init=init,
            strength=strength,
            **staged.inputs,
        )

        # 5. Back to the input's aspect ratio
        out = images.from_model(to_pil(x)[0], images.output_size(source.size, self.generator.resolution))
        recipe = self._recipe(
            style_prompt,
            seed,
            steps,
            guidance,
            out.size,
            cond.truncated[0],
            task="style_transfer",
            lora=lora,
            seen=seen,
            understood=understood,
        )
        return Result([out], [dataclasses.replace(recipe, strength=strength, described=described != style_prompt)])

    def inpaint(self, request: InpaintRequest | object, mask=None, *, callback=None, **options) -> Result:
        """Regenerate the white part of `request.mask` (same size as the image) to show its prompt. Pixels outside
        the mask are returned unchanged, bit for bit, at the input's own size. zoom: a small mask is
        redrawn on the model's whole canvas (a square crop around it, `images.inpaint_area`), as
        AUTOMATIC1111's "only masked"; False redraws the whole image. An image and a mask with keyword options
        build the request (pipeline/requests.py)."""
        # 1. Check inputs
        resample = options.pop("resample", INPAINT_RESAMPLE)
        r = as_request(InpaintRequest, request, options if mask is None else {**options, "mask": mask})
        source = images.open_image(r.image)
        region = images.open_mask(r.mask, source.size)
        steps = self.generator.default_steps if r.steps is None else r.steps
        guidance = self.generator.default_guidance if r.guidance is None else r.guidance
        check_request([r.prompt], [r.seed], steps=steps, guidance=guidance, num_images=1)
        self.capabilities.check("inpaint")
        seed = resolve_seed(r.seed)
        lora = self._use_lora(r.lora)
        recipe = self._recipe(r.prompt, seed, steps, guidance, source.size, False, task="inpaint", lora=lora)
        if not region.any():  # nothing to regenerate
            return Result([source.copy()], [recipe])

        # 2. Understand, expand and encode the prompt
        understood = self.understand([r.prompt], r.understand)[0]
        seen = self.expansion.apply([understood.text], [seed], r.expand)[0]
        cond = self.encoder.encode([seen])
        # 3. The area to redraw (a square around a small mask, else the whole image), at the model's resolution,
        # and the world's plan for it
        box = images.inpaint_area(region) if r.zoom else None
        area, area_mask = images.crop_area(source, region, box)
        res = self.generator.resolution
        model_mask = images.mask_to_model(area_mask, res)
        staged = self.world.inpaint(
            self.encoder, self.generator, seen, model_mask[0, 0].numpy() > 0.5, taught=self._phrases
        )
        # 4. Denoise
        x = self.generator.generate(
            cond,
            self._uncond,
            seeds=[seed],
            steps=steps,
            guidance=guidance,
            callback=callback,
            init=images.to_model(area, res),
            mask=model_mask,
            resample=resample,
            **staged.inputs,
        )

        # 5. Composite: generated pixels inside the mask, the input's own pixels outside
        out = images.paste_area(source, images.composite(to_pil(x)[0], area, area_mask), box)
        recipe = self._recipe(
            r.prompt,
            seed,
            steps,
            guidance,
            source.size,
            cond.truncated[0],
            task="inpaint",
            lora=lora,
            seen=seen,
            understood=understood,
        )
        return Result([out], [recipe])

    def _recipe(
        self, prompt, seed, steps, guidance, size, truncated, *, task, lora=None, seen=None, understood=None
    ) -> Recipe:
        seen = prompt if seen is None else seen
        read = prompt if understood is None else understood.text
        return Recipe(
            prompt=prompt,
            seed=seed,
            steps=steps,
            guidance=guidance,
            model=self.model,
            generator=self.generator.kind,
            encoder=self.encoder.name,
            width=size[0],
            height=size[1],
            task=task,
            encoded_prompt=self.encoded_text(seen, truncated),
            lora=lora_label(lora),
            expanded=seen != read,
            understood=None if understood is None else understood.how,
            not_drawn=[] if understood is None else list(understood.notes),
        )

    def encoded_text(self, prompt: str, truncated: bool) -> str:
        """The prompt as the language model saw it: its tokens, cut at the encoder's limit."""
        if not truncated:
            return prompt
        ids = self.encoder.tokenizer(prompt, truncation=True, max_length=self.encoder.max_tokens)["input_ids"]
        return self.encoder.tokenizer.decode(ids, skip_special_tokens=True)


def load_generator(folder: Path, meta: dict, *, device: str, precision: str = "auto"):
    """The generator a Wordbrush model folder holds, by its wordbrush.json.
    precision "auto": bf16 autocast where the hardware computes bf16 natively (CUDA; CPUs with AMX or
    AVX512-BF16), fp32 elsewhere; or "bf16" / "fp32"."""
    if meta["generator"] == "gan":
        return gan.load_generator(folder, device=device)
    unet, cfg, _ = diffusion.load(folder, device=device)
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    bf16 = precision == "bf16" or (precision == "auto" and native_bf16(device))
    inpaint_unet = diffusion.load_inpainting_unet(folder, device=device)
    return diffusion.DiffusionGenerator(
        unet,
        cfg,
        autocast=torch.bfloat16 if bf16 else None,
        inpaint_unet=inpaint_unet,
        layout_encoder=diffusion.load_layout_encoder(folder, cfg, device=device),
        defaults=meta.get("defaults"),
    )


def native_bf16(device: str) -> bool:
    """Does `device` compute bf16 natively, so that autocast pays (docs/speed.md): CUDA, or a CPU with AMX or
    AVX512-BF16?"""
    if device.startswith("cuda"):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags
