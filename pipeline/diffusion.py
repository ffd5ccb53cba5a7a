"""The embedded diffusion generator: a pixel-space UNet2DConditionModel that cross-attends to the
language model's per-token states, trained with v-prediction, sampled with DPM-Solver++ and
classifier-free guidance.

The sampler is one loop of `denoise_step`, the numbered recipe of STYLE.md:

    1. check inputs   2. prepare noise from per-image seeds   3. denoise (guided)   4. map to [0, 1]
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel

from pipeline.batch_invariance import rowwise_linears
from pipeline.encoders import EncodedPrompts
from pipeline.layout import Regions, steered_steps
from pipeline.layout import install as install_attention
from pipeline.protocol import MAX_STEPS
from pipeline.worlds.icons import layout as icons_layout
from pipeline.worlds.icons.layout import LAYOUT_INPUTS, LayoutBatch, LayoutEncoder, save_layout_encoder


@dataclass(frozen=True)
class DiffusionConfig:
    """The UNet's shape. Attention sits at 8 x 8 and in the middle block only: the CPU latency budget."""

    resolution: int = 32  # pixels; the shapes world's native size
    channels: tuple[int, ...] = (64, 128, 192)  # per resolution level: 32, 16, 8 px
    attention: tuple[bool, ...] = (False, False, True)  # cross-attention at each level
    layers_per_block: int = 1  # resnet blocks per level
    head_dim: int = 32  # attention head size
    cond_dim: int = 384  # the prompt encoder's hidden size
    prediction_type: str = "v_prediction"  # samples cleanly in few steps (epsilon needed thresholding)
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"  # cosine schedule: suits low-resolution pixel diffusion
    coords: bool = False  # the UNet also reads x and y maps (COORD_INPUTS), so it knows where "above" is
    patch: int = 1  # pixels per side folded into channels before the UNet (2: a 64 px image as 32 x 32 x 12)
    world: str = "shapes"  # the embedded world it draws: a name in the world registry (pipeline/worlds)
    layout: bool = False  # the UNet also reads the icons layout stage's map (pipeline/worlds/icons/layout.py)


# Named UNet sizes, read by the training CLI and the tests.
SIZES: dict[str, DiffusionConfig] = {
    "small": DiffusionConfig(coords=True),  # 10.3M params: the shipped shapes model
    "tiny": DiffusionConfig(
        channels=(16, 32), attention=(False, True), head_dim=8, coords=True
    ),  # tests and smoke runs
    # the icons world: 64 px folded to 32 x 32 x 12 and the layout map beside it; no attention, as the map
    # says what goes where (4.1M params)
    "icons": DiffusionConfig(
        resolution=64,
        patch=2,
        channels=(64, 128, 128),
        attention=(False, False, False),
        coords=True,
        world="icons",
        layout=True,
    ),
    "icons-tiny": DiffusionConfig(
        resolution=64, patch=2, channels=(16, 32), attention=(False, False), coords=True, world="icons", layout=True
    ),
}


def build_unet(cfg: DiffusionConfig) -> UNet2DConditionModel:
    """A fresh UNet for `cfg`; the pooled prompt vector joins the time embedding as a class embedding."""
    downs = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention)
    ups = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention))
    pixels = 3 * cfg.patch**2  # colour channels after folding (`unet_inputs`)
    return UNet2DConditionModel(
        sample_size=cfg.resolution // cfg.patch,
        in_channels=pixels + (COORD_INPUTS if cfg.coords else 0) + (LAYOUT_INPUTS if cfg.layout else 0),
        out_channels=pixels,
        block_out_channels=cfg.channels,
        layers_per_block=cfg.layers_per_block,
        down_block_types=downs,
        up_block_types=ups,
        mid_block_type="UNetMidBlock2DCrossAttn" if any(cfg.attention) else "UNetMidBlock2D",
        cross_attention_dim=cfg.cond_dim,
        attention_head_dim=cfg.head_dim,
        norm_num_groups=16,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=cfg.cond_dim,
    )


# Extra input channels after the 3 of the noisy image, in this order. A UNet's input width says which it
# reads: 3 (none), 5 (coordinates), 7 (inpainting), 9 (both), then LAYOUT_INPUTS more for the icons layout map;
# COORD_INPUTS < INPAINT_INPUTS < LAYOUT_INPUTS keeps that unique.
COORD_INPUTS = 2  # x and y in [-1, 1]: convolutions and attention alone do not know where they are
INPAINT_INPUTS = 4  # an inpainting UNet's: the kept image (3, masked to 0) and the mask (1)


def reads_layout(unet: UNet2DConditionModel) -> bool:
    return unet.config.in_channels - unet.config.out_channels >= LAYOUT_INPUTS


def _image_extras(unet: UNet2DConditionModel) -> int:
    """Extra input channels other than the layout map's: coordinates and an inpainting UNet's."""
    return unet.config.in_channels - unet.config.out_channels - (LAYOUT_INPUTS if reads_layout(unet) else 0)


def reads_coords(unet: UNet2DConditionModel) -> bool:
    return _image_extras(unet) % INPAINT_INPUTS == COORD_INPUTS


def is_inpainting(unet: UNet2DConditionModel) -> bool:
    return _image_extras(unet) >= INPAINT_INPUTS


def coord_maps(n: int, size: int, device, dtype) -> torch.Tensor:
    """(n, 2, size, size): x grows to the right, y downwards, both from -1 to 1 across pixel centres."""
    line = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([x, y]).to(dtype).expand(n, -1, -1, -1)


def patch_of(unet: UNet2DConditionModel) -> int:
    """Pixels per side the UNet reads folded into channels (`DiffusionConfig.patch`): its output width says."""
    return math.isqrt(unet.config.out_channels // 3)


def unet_inputs(
    unet: UNet2DConditionModel, x: torch.Tensor, image_inputs: torch.Tensor | None = None, layout_map=None
) -> torch.Tensor:
    """x (B, 3, H, W) as `unet` reads it: folded into patches (`patch_of`), then its extra channels:
    coordinates, an inpainting UNet's kept pixels and mask (`image_inputs`, from `inpaint_inputs`), then the
    icons layout map (`layout_map`, (B, LAYOUT_INPUTS, H / p, W / p); zeros when not given: no layout)."""
    p = patch_of(unet)
    if p > 1:  # (B, 3, H, W) -> (B, 3 p^2, H / p, W / p)
        x = F.pixel_unshuffle(x, p)
        image_inputs = None if image_inputs is None else F.pixel_unshuffle(image_inputs, p)
    parts = [x]
    if reads_coords(unet):
        parts.append(coord_maps(len(x), x.shape[-1], x.device, x.dtype))
    if image_inputs is not None:
        parts.append(image_inputs.to(x.dtype))
    if reads_layout(unet):
        empty = layout_map is None
        parts.append(x.new_zeros(len(x), LAYOUT_INPUTS, *x.shape[-2:]) if empty else layout_map.to(x.dtype))
    return torch.cat(parts, dim=1) if len(parts) > 1 else x


def unet_outputs(unet: UNet2DConditionModel, out: torch.Tensor) -> torch.Tensor:
    """The UNet's output as an image-shaped (B, 3, H, W) tensor: patches unfolded again."""
    p = patch_of(unet)
    return F.pixel_shuffle(out, p) if p > 1 else out


def _widened(unet: UNet2DConditionModel, new: int, at: int, *, std: float = 0.0) -> UNet2DConditionModel:
    """A copy of `unet` whose first convolution gains `new` input channels at index `at`, their weights
    drawn from N(0, std): with std 0 it draws exactly as `unet` does, whatever those channels hold."""
    config = {**unet.config, "in_channels": unet.config.in_channels + new}
    wide = UNet2DConditionModel.from_config(config)
    state = unet.state_dict()
    old = state.pop("conv_in.weight")
    wide.load_state_dict(state, strict=False)
    with torch.no_grad():
        weight = wide.conv_in.weight  # (C_out, C_in, 3, 3)
        weight[:, :at], weight[:, at + new :] = old[:, :at], old[:, at:]
        weight[:, at : at + new] = torch.randn_like(weight[:, at : at + new]) * std
    return wide.to(unet.device, unet.dtype)


def with_coords(unet: UNet2DConditionModel, *, std: float = 0.0) -> UNet2DConditionModel:
    """A copy of a text-to-image `unet` that also reads the coordinate maps, the new weights from N(0, std).
    std 0 keeps its drawings exactly, but then nothing after the first layer ever sees a coordinate, so
    nothing learns to use one. A little noise (0.05 leaves the evaluator's score as it was) lets training
    start at once."""
    if reads_coords(unet) or is_inpainting(unet):
        raise ValueError("with_coords widens a text-to-image UNet without coordinate inputs")
    return _widened(unet, COORD_INPUTS, at=unet.config.out_channels, std=std)


def inpainting_unet(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """A copy of `unet` that also reads the kept pixels and the mask (as Stable Diffusion's inpainting
    models do), zero-initialised (`_widened`), so before any training it draws exactly as `unet` does."""
    return _widened(unet, INPAINT_INPUTS, at=unet.config.in_channels)


def inpaint_inputs(known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 4, H, W): the kept pixels (known in [-1, 1], zero where the mask is 1) and the mask itself."""
    return torch.cat([known * (1 - mask), mask], dim=1)


def training_scheduler(cfg: DiffusionConfig) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=cfg.train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        clip_sample=False,
    )


def sampling_scheduler(cfg: DiffusionConfig) -> DPMSolverMultistepScheduler:
    """DPM-Solver++(2M), the default sampler (Lu et al., 2022)."""
    return DPMSolverMultistepScheduler(
        num_train_timesteps=cfg.train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        algorithm_type="dpmsolver++",
        solver_order=2,
        thresholding=True,  # clip the predicted clean image to [-1, 1] at every step
        sample_max_value=1.0,
        lower_order_final=True,
    )


Callback = Callable[[int, int, torch.Tensor], None]  # (step, total, current x0 estimate in [0, 1])


def seeded_noise(seeds: list[int], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """One noise tensor per seed, each from its own generator: an image depends on its seed only,
    never on the batch it ran in."""
    noise = [torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
    return torch.stack(noise).to(device)


def denoise_step(
    unet: UNet2DConditionModel,
    x: torch.Tensor,
    t: torch.Tensor,
    *,
    cond: EncodedPrompts,
    uncond: EncodedPrompts,
    guidance: float,
    image_inputs: torch.Tensor | None = None,
    regions: Regions | None = None,
    layout_map: torch.Tensor | None = None,
) -> torch.Tensor:
    """One guided model evaluation: conditional and unconditional halves in a single batch, mixed by
    classifier-free guidance (Ho & Salimans, 2022). Returns the model output (v) for x.
    image_inputs: an inpainting UNet's extra channels (`inpaint_inputs`), the same for both halves.
    regions: the layout stage's cross-attention masks (pipeline/layout.py), for the conditional half.
    layout_map: the icons layout map (pipeline/worlds/icons/layout.py), for the conditional half (the other: none)."""
    x_uncond = unet_inputs(unet, x, image_inputs) if guidance != 1.0 and layout_map is not None else None
    x = unet_inputs(unet, x, image_inputs, layout_map)
    if guidance == 1.0:
        kwargs = None if regions is None else {"regions": regions}
        out = unet(
            x, t, cond.states, class_labels=cond.pooled, encoder_attention_mask=cond.mask, cross_attention_kwargs=kwargs
        ).sample
        return unet_outputs(unet, out)
    kwargs = None if regions is None else {"regions": regions.with_unplanned_rows(len(x))}
    both = unet(
        torch.cat([x if x_uncond is None else x_uncond, x]),
        torch.cat([t, t]),
        _cat_states(uncond.states, cond.states),
        class_labels=torch.cat([uncond.pooled, cond.pooled]),
        encoder_attention_mask=_cat_masks(uncond.mask, cond.mask),
        cross_attention_kwargs=kwargs,
    ).sample
    out_uncond, out_cond = unet_outputs(unet, both).chunk(2)
    return out_uncond + guidance * (out_cond - out_uncond)


def _cat_states(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Concatenate (B, T, D) states of different lengths T by zero-padding the shorter."""
    t = max(a.shape[1], b.shape[1])
    return torch.cat([torch.nn.functional.pad(s, (0, 0, 0, t - s.shape[1])) for s in (a, b)])


def _cat_masks(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    t = max(a.shape[1], b.shape[1])
    return torch.cat([torch.nn.functional.pad(m, (0, t - m.shape[1])) for m in (a, b)])


@torch.inference_mode()
def sample(
    unet: UNet2DConditionModel,
    cfg: DiffusionConfig,
    cond: EncodedPrompts,
    uncond: EncodedPrompts,
    *,
    seeds: list[int],
    steps: int = 12,
    guidance: float = 3.0,
    init: torch.Tensor | None = None,
    strength: float = 1.0,
    mask: torch.Tensor | None = None,
    resample: int = 1,
    regions: Regions | None = None,
    layout_map: torch.Tensor | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] for B prompts, image i from seeds[i].

    `init` (B, 3, H, W) in [0, 1] and strength < 1: SDEdit (Meng et al., 2022), from `init` noised to that
    strength. `init` and `mask` (B, 1, H, W), 1 = generate: blended diffusion (Avrahami et al., 2022), the
    known region put back after every step; resample > 1 adds RePaint's resampling (Lugmayr et al., 2022); an
    inpainting UNet (`is_inpainting`) also reads the kept pixels and the mask. `regions` (the layout stage,
    pipeline/layout.py) keeps each planned object's words to its own box; `layout_map`: the icons layout stage's."""
    # 1. Check inputs
    _check_sampling(unet, cond, seeds, steps, init, mask)
    device, dtype = unet.device, unet.dtype
    cond, uncond = _to(cond, device, dtype), _to(uncond, device, dtype)
    uncond = _expand(uncond, len(seeds)) if uncond.states.shape[0] == 1 else uncond
    regions, layout_map = regions and regions.to(device), None if layout_map is None else layout_map.to(device, dtype)

    # 2. Prepare noise from per-image seeds (and the SDEdit start, if any)
    scheduler, noise_schedule = sampling_scheduler(cfg), training_scheduler(cfg)  # noise_schedule: q(x_t | x_0)
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps
    x = noise = seeded_noise(seeds, (3, cfg.resolution, cfg.resolution), device).to(dtype)
    image_inputs = None
    if mask is not None:
        known, mask = init.to(device, dtype) * 2 - 1, mask.to(device, dtype)
        image_inputs = inpaint_inputs(known, mask) if is_inpainting(unet) else None
    elif init is not None:
        start = min(int(round(steps * strength)), steps)
        timesteps = timesteps[steps - start :]
        if len(timesteps) == 0:
            return init
        scheduler.set_begin_index(steps - start)
        x = noise_schedule.add_noise(init.to(device, dtype) * 2 - 1, x, timesteps[:1].repeat(len(seeds)))
    x = x * scheduler.init_noise_sigma

    # 3. Denoise
    steered = steered_steps(len(timesteps))

    def solver_step(x, i, t):
        """One guided solver step from t, then (inpainting) the known region put back at the new level."""
        x_in = scheduler.scale_model_input(x, t)
        steer = regions if i < steered else None  # the layout stage's mask, on the noisy steps only
        t_all = t.expand(len(seeds))
        model_out = denoise_step(
            unet,
            x_in,
            t_all,
            cond=cond,
            uncond=uncond,
            guidance=guidance,
            image_inputs=image_inputs,
            regions=steer,
            layout_map=layout_map,
        )
        x = scheduler.step(model_out, t, x).prev_sample
        if mask is not None:  # keep the known region on the trajectory of the input image
            last = i + 1 == len(timesteps)
            known_t = known if last else noise_schedule.add_noise(known, noise, timesteps[i + 1].expand(len(seeds)))
            x = mask * x + (1 - mask) * known_t
        return x

    redo = resample - 1 if mask is not None else 0
    for i, t in enumerate(timesteps):
        saved = copy.deepcopy(scheduler) if redo and i + 1 < len(timesteps) else None
        x = solver_step(x, i, t)
        for r in range(redo if saved is not None else 0):
            scheduler = copy.deepcopy(saved)
            fresh = seeded_noise([(s + 7919 * (i * resample + r + 1)) % 2**63 for s in seeds], x.shape[1:], device)
            x = renoise(noise_schedule, x, fresh.to(dtype), from_t=timesteps[i + 1], to_t=t)
            x = solver_step(x, i, t)
        if callback is not None:
            callback(i + 1, len(timesteps), ((x.float().clamp(-1, 1) + 1) / 2))

    # 4. Map to [0, 1]
    return ((x.float().clamp(-1, 1) + 1) / 2).cpu()


def _check_sampling(unet, cond: EncodedPrompts, seeds: list[int], steps: int, init, mask) -> None:
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    if len(seeds) != cond.states.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {cond.states.shape[0]} prompts; give one seed per prompt")
    if mask is not None and init is None:
        raise ValueError("a mask needs the image it applies to (init)")
    if mask is None and is_inpainting(unet):
        raise ValueError("an inpainting UNet needs an image and a mask")


def renoise(noise_schedule: DDPMScheduler, x: torch.Tensor, eps: torch.Tensor, *, from_t, to_t) -> torch.Tensor:
    """q(x_to | x_from) of the variance-preserving forward process: from a cleaner level to a noisier one."""
    a = noise_schedule.alphas_cumprod.to(x.device)
    ratio = (a[to_t] / a[from_t]).to(x.dtype)
    return ratio.sqrt() * x + (1 - ratio).sqrt() * eps


def _to(e: EncodedPrompts, device, dtype) -> EncodedPrompts:
    return EncodedPrompts(e.states.to(device, dtype), e.mask.to(device), e.pooled.to(device, dtype), e.truncated)


def _expand(e: EncodedPrompts, n: int) -> EncodedPrompts:
    return EncodedPrompts(e.states.expand(n, -1, -1), e.mask.expand(n, -1), e.pooled.expand(n, -1), e.truncated * n)


# ----------------------------------------------------------------------------------------------------
# Saving and loading: a folder (or hub id) with unet/, wordbrush.json and, optionally, inpaint-unet/

INPAINT_FOLDER = "inpaint-unet"  # the inpainting UNet beside the text-to-image one, when there is one


def save(
    folder: str | Path,
    unet: UNet2DConditionModel,
    cfg: DiffusionConfig,
    *,
    encoder: str,
    card: dict,
    layout_encoder: LayoutEncoder | None = None,
    defaults: dict | None = None,
) -> None:
    """Write the UNet (fp16 safetensors), the layout encoder if any, and what the pipeline needs to rebuild it.
    defaults: the model's own sampling defaults ({"steps": 12, "guidance": 3.0}) over the generator's."""
    folder = Path(folder)
    save_unet(unet, folder / "unet")
    if layout_encoder is not None:
        save_layout_encoder(layout_encoder, folder)
    meta = {"generator": "diffusion", "encoder": encoder, "config": asdict(cfg), "card": card}
    if defaults:
        meta["defaults"] = defaults
    (folder / "wordbrush.json").write_text(json.dumps(meta, indent=2) + "\n")


def save_unet(unet: UNet2DConditionModel, folder: Path) -> None:
    # Shards under 10 MB: a Hugging Face Space takes files that size without Git LFS.
    dtype = unet.dtype
    unet.to(torch.float16).save_pretrained(folder, max_shard_size="9MB")
    unet.to(dtype)


def load_inpainting_unet(folder: str | Path, *, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """The folder's inpainting UNet (inpaint-unet/), or None when it has none."""
    path = Path(folder) / INPAINT_FOLDER
    if not path.is_dir():
        return None
    unet = UNet2DConditionModel.from_pretrained(path, use_safetensors=True)
    return unet.to(device, dtype).eval()


def load_layout_encoder(folder: str | Path, cfg: DiffusionConfig, *, device: str = "cpu") -> LayoutEncoder | None:
    """The folder's layout encoder (fp32), or None for a model without a layout map."""
    return icons_layout.load_layout_encoder(folder, cond_dim=cfg.cond_dim, device=device) if cfg.layout else None


def read_meta(folder: str | Path) -> dict:
    path = Path(folder) / "wordbrush.json"
    if not path.exists():
        raise FileNotFoundError(f"{folder} has no wordbrush.json: not a Wordbrush model folder")
    return json.loads(path.read_text())


def load(folder: str | Path, *, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """(unet, config, meta) from a folder written by `save`."""
    meta = read_meta(folder)
    cfg = DiffusionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
    unet = UNet2DConditionModel.from_pretrained(Path(folder) / "unet", use_safetensors=True)
    return unet.to(device, dtype).eval(), cfg, meta


# ----------------------------------------------------------------------------------------------------
# The generator: what the embedded pipeline (pipeline/core.py) calls


def batch_invariant(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """The UNet with its per-image linears (time and prompt embeddings) run row by row: a request gets the same
    bits alone as in any batch (pipeline/batch_invariance.py; 1e-6 apart before, the odd pixel one level)."""

    def per_image(name: str) -> bool:
        return name.startswith(("time_embedding.", "class_embedding.")) or name.endswith(".time_emb_proj")

    return rowwise_linears(unet, per_image)


class DiffusionGenerator:
    """The diffusion model behind the common generator call `generate(cond, uncond, seeds=..., ...)`."""

    kind = "diffusion"
    default_steps = 12
    default_guidance = 3.0

    def __init__(
        self,
        unet,
        cfg: DiffusionConfig,
        *,
        autocast: torch.dtype | None = None,
        inpaint_unet=None,
        layout_encoder: LayoutEncoder | None = None,
        defaults: dict | None = None,
    ):
        self.world = cfg.world
        # the model folder's own defaults (wordbrush.json "defaults": steps, guidance) over the class's
        self.default_steps = (defaults or {}).get("steps", self.default_steps)
        self.default_guidance = (defaults or {}).get("guidance", self.default_guidance)
        self.layout_encoder = layout_encoder  # the icons layout stage's learnt part (worlds/icons/layout.py)
        # follows the layout stage's regions (pipeline/layout.py): a pixel-level UNet with cross-attention
        self.plans_layout = any(cfg.attention) and cfg.patch == 1
        # Channels-last activations: oneDNN's faster bf16 convolutions on the CPU; the weights are unchanged.
        self.unet, self.cfg = batch_invariant(unet.to(memory_format=torch.channels_last)), cfg
        install_attention(self.unet)  # the layout stage's regional cross-attention, `layout.attend`'s products
        # A UNet trained to inpaint (it also reads the kept pixels and the mask), used for masked calls.
        self.inpaint_unet = (
            None if inpaint_unet is None else batch_invariant(inpaint_unet.to(memory_format=torch.channels_last))
        )
        if self.inpaint_unet is not None:
            install_attention(self.inpaint_unet)  # never gets regions: for `layout.attend`'s faster products
        self.resolution = cfg.resolution
        self.autocast = autocast  # run the UNet's matmuls and convolutions in this dtype (None: the weights')

    def generate(
        self,
        cond,
        uncond,
        *,
        seeds,
        steps,
        guidance,
        callback=None,
        init=None,
        strength=1.0,
        mask=None,
        resample=1,
        regions=None,
        layout: LayoutBatch | None = None,
    ) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] (`sample`). layout: the icons layout stage's plans, for a model that reads
        them (`reads_layout`)."""
        device_type = self.unet.device.type
        unet = self.inpaint_unet if mask is not None and self.inpaint_unet is not None else self.unet
        layout_map = None
        if layout is not None and self.layout_encoder is not None:
            grid = self.cfg.resolution // self.cfg.patch
            layout_map = torch.cat(self.layout_encoder.per_image(layout.to(self.unet.device), grid, self.resolution))
        with torch.autocast(device_type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            return sample(
                unet,
                self.cfg,
                cond,
                uncond,
                seeds=seeds,
                steps=steps,
                guidance=guidance,
                callback=callback,
                init=init,
                strength=strength,
                mask=mask,
                resample=resample,
                regions=regions,
                layout_map=layout_map,
            ).float()
