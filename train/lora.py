"""LoRA fine-tuning of the diffusion generator on a folder of captioned images (a Task for train/loop.py).

    python -m train lora --model shapes --data DIR --out DIR [--rank 8 --steps 400 ...]
    python -m train lora --model sd15 --data DIR --out DIR      # a diffusers SD-family preset, hub id or folder

Data: images with captions, either a `metadata.jsonl` ({"file_name": ..., "text": ...} per line, the Hugging
Face imagefolder layout) or a `.txt` file beside each image. Images of any size and mode are converted
to RGB and resized to the model's resolution; unreadable files are skipped and listed.
Output: OUT/lora.safetensors in diffusers' LoRA format (`pipe.load_lora_weights` reads it), which
`python -m pipeline generate --lora OUT/lora.safetensors:1.0` and the app load.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pipeline import diffusion
from train.adapters import LORA_FILE, LoraTask, add_lora, load_folder
from train.diffusion import CaptionPool, build_pool

PRIOR_IMAGES = 256  # prior preservation from the base model's drawings ("base"): captions drawn
# Prior preservation's weight against the new data's loss: the weight that kept the old skills best on the
# star demo (docs/shapes-world.md, "Teaching a new shape").
PRIOR_WEIGHT = 3.0
EMBEDDED_BATCH = 16  # images per step for the embedded 32 px model
PRIOR_CAPTIONS = 4096  # prior preservation from the base's own training world ("world"): captions, rendered anew


def train_lora(
    *,
    model: str,
    data: str | Path,
    out: str | Path,
    rank: int = 8,
    targets: str = "attention",
    steps: int = 400,
    lr: float = 1e-3,
    batch_size: int | None = None,
    mixed_precision: str = "auto",
    gradient_checkpointing: bool | None = None,
    validation_prompts: list[str] | None = None,
    checkpoint_every: int = 50,
    allow_empty_captions: bool = False,
    prior_weight: float = PRIOR_WEIGHT,
    prior_data: str = "world",
    seed: int = 0,
    card: dict | None = None,
    on_log=None,
    should_stop=None,
) -> Path:
    """Train (or resume) a LoRA on `data` for the diffusion generator of `model`; returns the LoRA file.
    The CLI (`python -m train lora`) and the app's Train tab both call this. batch_size None: the model's
    default (EMBEDDED_BATCH, or pipeline/hub.py LORA_BATCH); gradient_checkpointing None: on for a
    diffusers checkpoint on CUDA."""
    from pipeline.hub import is_hub_pipeline
    from pipeline.presets import is_diffusers
    from train.loop import TrainConfig, run_training

    device = "cuda" if torch.cuda.is_available() else "cpu"
    card = {**(card or {}), "base_model": model, "rank": rank, "targets": targets}
    if is_diffusers(model) or is_hub_pipeline(model):  # a diffusers Stable Diffusion 1.x/2.x or SDXL checkpoint
        from train.hub_lora import hub_lora_task

        task, family_batch = hub_lora_task(
            model,
            data,
            rank=rank,
            targets=targets,
            device=device,
            validation_prompts=validation_prompts or [],
            card=card,
            seed=seed,
            allow_empty_captions=allow_empty_captions,
            gradient_checkpointing=gradient_checkpointing,
        )
        unet, images, batch_size = task.pipe.unet, task.data, batch_size or family_batch
    else:  # a Wordbrush model (the embedded shapes model, or a folder of ours)
        task = embedded_lora_task(
            model,
            data,
            rank=rank,
            targets=targets,
            device=device,
            validation_prompts=validation_prompts or [],
            card=card,
            seed=seed,
            allow_empty_captions=allow_empty_captions,
            prior_weight=prior_weight,
            prior_data=prior_data,
        )
        unet, images, batch_size = task.unet, task.data, batch_size or EMBEDDED_BATCH
        if gradient_checkpointing:
            unet.enable_gradient_checkpointing()
    n_params = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    print(f"LoRA rank {rank} on {model}: {n_params:,} trainable params; {len(images.images)} images")
    train_cfg = TrainConfig(
        out=str(out),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup=min(50, steps // 10),
        ema_decay=0.99,
        checkpoint_every=checkpoint_every,
        eval_every=0,
        log_every=10,
        mixed_precision=mixed_precision,
        seed=seed,
    )
    run_training(task, train_cfg, on_log=on_log, should_stop=should_stop)
    return Path(out) / "model" / LORA_FILE


def embedded_lora_task(
    model: str,
    data,
    *,
    rank: int,
    targets: str,
    device: str,
    validation_prompts: list[str],
    card: dict,
    seed: int,
    allow_empty_captions: bool,
    prior_weight: float,
    prior_data: str,
) -> LoraTask:
    """The LoRA task for a Wordbrush diffusion model, with prior preservation from its own world."""
    from pipeline.core import local_folder
    from pipeline.encoders import load_encoder
    from pipeline.presets import resolve_model

    source, _ = resolve_model(model, "diffusion")
    folder = local_folder(source)
    unet, cfg, meta = diffusion.load(folder)
    unet = unet.float()
    if cfg.layout:  # the icons UNet has no attention: its adapters go on the convolutions
        targets = card["targets"] = "convolutions"
    torch.manual_seed(seed)  # the adapter's initial weights: the same run gives the same LoRA
    add_lora(unet, rank=rank, targets=targets)
    encoder = load_encoder(meta["encoder"], device=device)
    images = load_folder(data, resolution=cfg.resolution, allow_empty_captions=allow_empty_captions)
    if cfg.layout:  # and a new thing needs a sketch from the layout stage (train/icons_lora.py)
        from train.icons_lora import icons_lora_task

        return icons_lora_task(
            unet,
            cfg,
            meta,
            folder,
            encoder,
            images,
            validation_prompts=validation_prompts,
            card=card,
            seed=seed,
            prior_weight=prior_weight,
        )
    prior, prior_images = None, None
    if prior_weight > 0 and prior_data == "base":  # captions of what the base learned, its own drawings of them
        prior = build_pool(encoder, size=PRIOR_IMAGES, seed=seed + 1)
        prior_images = draw_prior(unet, cfg, prior)
    elif prior_weight > 0:  # the base's training world: captions encoded once, scenes rendered every step
        prior = build_pool(encoder, size=PRIOR_CAPTIONS, seed=seed + 1)
    card["prior_weight"], card["prior_data"] = prior_weight, prior_data
    return LoraTask(
        unet,
        cfg,
        encoder,
        images,
        validation_prompts=validation_prompts,
        card=card,
        prior=prior,
        prior_images=prior_images,
        prior_weight=prior_weight,
    )


def draw_prior(unet, cfg: diffusion.DiffusionConfig, prior: CaptionPool) -> torch.Tensor:
    """The base model's drawings of the prior captions (the pipeline's default sampling: 12 guided steps, bf16
    where the hardware has it), in [-1, 1]. Call it while the LoRA's up-weights are still zero, so the adapted
    UNet is the base UNet."""
    from pipeline.core import native_bf16
    from pipeline.encoders import EncodedPrompts

    t0, out = time.time(), []
    autocast = torch.bfloat16 if native_bf16(str(unet.device)) else None
    gen = diffusion.DiffusionGenerator(unet.eval(), cfg, autocast=autocast)
    for i in range(0, len(prior.states), 64):
        sl = slice(i, i + 64)
        n = len(prior.states[sl])
        cond = EncodedPrompts(prior.states[sl].float(), prior.mask[sl], prior.pooled[sl].float(), [False] * n)
        seeds = list(range(i, i + n))
        out.append(
            gen.generate(cond, prior.uncond, seeds=seeds, steps=gen.default_steps, guidance=gen.default_guidance)
        )
    unet.train()
    print(f"drew {len(prior.states)} prior images with the base model in {time.time() - t0:.0f}s")
    return torch.cat(out).float() * 2 - 1
