"""LoRA fine-tuning of a real diffusers checkpoint: Stable Diffusion 1.x/2.x and SDXL (a Task for train/loop.py).

    python -m train lora --model sd15 --data DIR --out DIR          # a preset, hub id or pipeline folder

Sized for real checkpoints (memory estimate in docs/training.md): on CUDA the frozen UNet, VAE and text
encoders sit in bf16 and the UNet recomputes its activations in the backward pass (gradient checkpointing);
only the adapter trains, in fp32, and only the adapter is in the EMA and in every checkpoint. Latents and
prompt states are computed once, so the VAE and text encoders do no work per step. The loss is the
checkpoint's own (epsilon or v, as its scheduler says); SDXL also gets its pooled prompt and size
conditioning. The output is diffusers' LoRA format: plain `pipe.load_lora_weights(...)` reads it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from train.loop import ALONE, Shard


def load_for_training(model: str, device: str):
    """The text-to-image pipeline of `model`, frozen, on `device` (bf16 on CUDA); a ValueError with the
    reason when its family has no LoRA training here."""
    from pipeline.hub import from_pretrained, lora_training_refusal
    from pipeline.presets import preset_of

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    pipe = from_pretrained(model, preset_of(model), dtype)
    refusal = lora_training_refusal(pipe)
    if refusal:
        raise ValueError(f"cannot train a LoRA for {model}: {refusal}")
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    for name in ("vae", "text_encoder", "text_encoder_2", "unet"):
        if getattr(pipe, name, None) is not None:
            getattr(pipe, name).requires_grad_(False)
    return pipe


def native_size(pipe) -> int:
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


class HubLoraTask:
    """LoRA training of a Stable Diffusion-family UNet on captioned images. Every step's batch, noise and
    timesteps are drawn from that step's own seed, so a resumed run continues exactly as an unbroken one."""

    def __init__(
        self,
        pipe,
        data,
        *,
        validation_prompts: list[str],
        card: dict | None = None,
        seed: int = 0,
        sampling: tuple[int, float] = (20, 5.0),
    ):
        from diffusers import DDPMScheduler

        from train.diffusion import to_tensor

        self.pipe, self.data, self.validation_prompts, self.card = pipe, data, validation_prompts, card or {}
        self.seed, self.sampling = seed, sampling
        self.noise = DDPMScheduler.from_config(pipe.scheduler.config)
        self.xl = pipe.unet.config.addition_embed_type == "text_time"
        device, size = pipe.device, native_size(pipe)
        with torch.no_grad():
            x = to_tensor(data.images).to(device, pipe.vae.dtype)  # (N, 3, R, R) in [-1, 1]
            self.latents = torch.cat(
                [  # (N, 4, h, w), encoded a few at a time
                    pipe.vae.encode(chunk).latent_dist.mean * pipe.vae.config.scaling_factor for chunk in x.split(8)
                ]
            )
            if self.xl:  # both encoders' states side by side, the second's pooled output, and the image sizes
                states, _, pooled, _ = pipe.encode_prompt(
                    data.captions, device=device, do_classifier_free_guidance=False
                )
                self.pooled = pooled  # (N, D2)
                # (original height, width, crop top, left, target height, width): SDXL's size conditioning
                self.time_ids = torch.tensor([[size, size, 0, 0, size, size]] * len(states), device=device)
            else:
                states = pipe.encode_prompt(data.captions, device, 1, False)[0]
        self.states = states  # (N, 77, D)

    def trainable(self) -> torch.nn.Module:
        return self.pipe.unet

    def batches(self, start_step: int, batch_size: int, device: torch.device, shard: Shard = ALONE) -> Iterator:
        step = start_step
        while True:
            rng = random.Random(shard.seed(f"{self.seed}-{step}"))
            idx = torch.tensor([rng.randrange(len(self.latents)) for _ in range(batch_size)])
            gen = torch.Generator().manual_seed(rng.getrandbits(63))
            z0 = self.latents[idx].float()
            noise = torch.randn(z0.shape, generator=gen)
            t = torch.randint(0, self.noise.config.num_train_timesteps, (batch_size,), generator=gen)
            yield idx, z0.to(device), noise.to(device), t.to(device)
            step += 1

    def loss(self, model, batch) -> torch.Tensor:
        idx, z0, noise, t = batch
        dtype = self.pipe.unet.dtype
        z_t = self.noise.add_noise(z0, noise, t)
        v_pred = self.noise.config.prediction_type == "v_prediction"
        target = self.noise.get_velocity(z0, noise, t) if v_pred else noise
        extra = {}
        if self.xl:
            extra["added_cond_kwargs"] = {"text_embeds": self.pooled[idx], "time_ids": self.time_ids[idx]}
        pred = model(z_t.to(dtype), t, encoder_hidden_states=self.states[idx], **extra).sample
        return F.mse_loss(pred.float(), target.float())

    def evaluate(self, model) -> dict[str, float]:
        return {}

    def export(self, model, folder: Path, *, step: int, images_seen: int, seconds: float) -> None:
        from train.adapters import export_lora, run_card

        def draw(prompts: list[str]) -> list[Image.Image]:
            steps, guidance = self.sampling
            gens = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
            return self.pipe(prompts, generator=gens, num_inference_steps=steps, guidance_scale=guidance).images

        card = {**self.card, **run_card(step, images_seen, seconds)}
        export_lora(model, folder, card, self.validation_prompts, draw, pipeline_class=type(self.pipe))


def hub_lora_task(
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
    gradient_checkpointing: bool | None,
):
    """(task, default batch size) for a LoRA on the diffusers checkpoint `model`."""
    from diffusers.training_utils import cast_training_params

    from pipeline.hub import LORA_BATCH, sampling_defaults
    from train.adapters import add_lora, load_folder

    pipe = load_for_training(model, device)
    images = load_folder(data, resolution=native_size(pipe), allow_empty_captions=allow_empty_captions)
    torch.manual_seed(seed)  # the adapter's initial weights: the same run gives the same LoRA
    add_lora(pipe.unet, rank=rank, targets=targets)
    cast_training_params(pipe.unet, dtype=torch.float32)  # the adapter trains in fp32 on a bf16 base
    if gradient_checkpointing if gradient_checkpointing is not None else device.startswith("cuda"):
        pipe.unet.enable_gradient_checkpointing()
    sampling = sampling_defaults(pipe, model)
    task = HubLoraTask(pipe, images, validation_prompts=validation_prompts, card=card, seed=seed, sampling=sampling)
    return task, LORA_BATCH[type(pipe).__name__]
