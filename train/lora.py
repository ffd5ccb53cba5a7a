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

import json
import random
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from pipeline import diffusion
from pipeline.encoders import PromptEncoder
from pipeline.images import to_rgb
from train import world
from train.diffusion import CaptionPool, DiffusionTask, build_pool, conditioning, to_tensor
from train.loop import ALONE, Shard

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}
LORA_FILE = "lora.safetensors"
PRIOR_IMAGES = 256  # prior preservation from the base model's drawings ("base"): captions drawn
# Prior preservation's weight against the new data's loss: the weight that kept the old skills best on the
# star demo (docs/shapes-world.md, "Teaching a new shape").
PRIOR_WEIGHT = 3.0
PRIOR_DROPOUT = 0.1  # prior samples under the empty prompt, as in the base's training (guidance's baseline)
EMBEDDED_BATCH = 16  # images per step for the embedded 32 px model
PRIOR_CAPTIONS = 4096  # prior preservation from the base's own training world ("world"): captions, rendered anew
# Which UNet layers get adapters: every attention projection, or (Custom Diffusion, Kumari et al., 2023)
# only the cross-attention keys and values, the layers that read the prompt.
TARGETS = {
    "attention": ["to_q", "to_k", "to_v", "to_out.0"],
    "cross-kv": ["attn2.to_k", "attn2.to_v"],
    "convolutions": ["conv1", "conv2"],  # the residual blocks' convolutions: the icons UNet has no attention
}


@dataclass
class CaptionedImages:
    images: list[Image.Image]  # RGB at the model's resolution
    captions: list[str]
    skipped: list[str]  # files that could not be read


def load_folder(folder: str | Path, *, resolution: int, allow_empty_captions: bool = False) -> CaptionedImages:
    """Captioned images from `folder` (metadata.jsonl or .txt files beside the images)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of images")
    captions: dict[str, str] = {}
    meta = folder / "metadata.jsonl"
    if meta.exists():
        for n, line in enumerate(meta.read_text().splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if "file_name" not in row:
                    raise ValueError(f"{meta}:{n} has no file_name")
                captions[row["file_name"]] = row.get("text", "")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images, texts, skipped = [], [], []
    for path in files:
        rel = str(path.relative_to(folder))
        text = captions.get(rel)
        if text is None and path.with_suffix(".txt").exists():
            text = path.with_suffix(".txt").read_text().strip()
        if not text:
            if not allow_empty_captions:
                raise ValueError(f"{rel} has no caption (metadata.jsonl or {path.with_suffix('.txt').name}); "
                                 "add one, or pass --allow-empty-captions to train it unconditionally")  # fmt: skip
            text = ""
        try:
            with Image.open(path) as im:
                im.load()
                rgb = to_rgb(im)
        except (UnidentifiedImageError, OSError):
            skipped.append(rel)
            continue
        images.append(rgb.resize((resolution, resolution), Image.BOX if min(rgb.size) >= resolution else Image.BICUBIC))
        texts.append(text)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable file(s): {', '.join(skipped)}", stacklevel=2)
    if not images:
        raise ValueError(f"none of the {len(files)} images in {folder} could be read")
    return CaptionedImages(images, texts, skipped)


def add_lora(unet, *, rank: int, alpha: float | None = None, targets: str = "attention") -> None:
    """Freeze the UNet and add trainable LoRA adapters (peft) to the layers TARGETS[targets] names."""
    from peft import LoraConfig

    if targets not in TARGETS:
        raise ValueError(f"unknown LoRA targets {targets!r}; choose one of {', '.join(TARGETS)}")
    unet.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=TARGETS[targets])
    )


def save_lora(unet, folder: str | Path, *, pipeline_class=None) -> Path:
    """The adapters in diffusers' LoRA format (keys `unet.<module>.lora_A.weight` ...), written by
    `pipeline_class.save_lora_weights` (default StableDiffusionPipeline): its `load_lora_weights` reads them."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    (pipeline_class or StableDiffusionPipeline).save_lora_weights(
        folder, unet_lora_layers=layers, weight_name=LORA_FILE
    )
    return Path(folder) / LORA_FILE


class ImageBatches:
    """Endless random batches from a fixed set of images, as (indices, images in [-1, 1])."""

    def __init__(self, images: list[Image.Image], batch_size: int, seed: int | str):
        self.x = to_tensor(images)
        self.batch_size, self.rng = batch_size, random.Random(seed)

    def __iter__(self):
        while True:
            idx = [self.rng.randrange(len(self.x)) for _ in range(self.batch_size)]
            yield torch.tensor(idx), self.x[idx]


class LoraTask(DiffusionTask):
    """The diffusion task on a user's folder: same loss, the UNet frozen but for its LoRA adapters."""

    def __init__(self, unet, cfg: diffusion.DiffusionConfig, encoder: PromptEncoder, data: CaptionedImages, *,
                 validation_prompts: list[str], card: dict | None = None, prior: CaptionPool | None = None,
                 prior_images: torch.Tensor | None = None, prior_weight: float = 0.0):  # fmt: skip
        out = encoder.encode(data.captions)
        pool = CaptionPool([], out.states.half(), out.mask, out.pooled.half(), encoder.encode([""]))
        # No prompt dropout on the new data: the empty prompt (the "unconditional" that guidance pushes
        # away from) must not learn the new concept, or every guided image shifts. The prior keeps it.
        super().__init__(unet, cfg, encoder, pool, cond_dropout=0.0 if prior else 0.1, eval_per_category=1, card=card)
        self.data, self.validation_prompts = data, validation_prompts
        self.prior, self.prior_weight = prior, prior_weight
        self.prior_images = prior_images  # (N, 3, R, R) in [-1, 1]: the base model's own drawings of the prior

    def loss(self, model, batch) -> torch.Tensor:
        loss = super().loss(model, batch)
        if self.prior is None or self.prior_weight == 0:
            return loss
        return loss + self.prior_weight * self.prior_loss(model, batch[1])

    def prior_loss(self, model, x0: torch.Tensor) -> torch.Tensor:
        """Prior preservation by self-distillation (the idea of DreamBooth's prior loss, with the base model
        as teacher): under captions of what the base already draws, on noisy images of them, the adapted
        UNet must predict what the frozen base UNet predicts. The images are fresh renders of the base's
        own training world (prior_data="world": thousands of captions, a new layout every time) or the
        base's drawings of a few hundred captions ("base"). No extra training images from the user; it
        keeps the LoRA from drawing its new concept everywhere."""
        device, dtype, n = x0.device, x0.dtype, len(x0)
        j = torch.randint(0, len(self.prior.states), (n,))
        if self.prior_images is not None:
            x0 = self.prior_images[j].to(device, dtype)
        elif self.prior.examples:
            seeds = torch.randint(0, 2**31, (n,)).tolist()
            images = [world.render_scene(self.prior.examples[int(k)].scene, s)[0] for k, s in zip(j, seeds)]
            x0 = to_tensor(images).to(device, dtype)
        states, mask, pooled, _ = conditioning(self.prior, j, device, PRIOR_DROPOUT)
        t = torch.randint(0, self.cfg.train_timesteps, (n,), device=device)
        x_t = diffusion.unet_inputs(self.unet, self.noise.add_noise(x0, torch.randn_like(x0), t))
        unet = getattr(model, "module", model)  # under DDP the adapters live on the wrapped module
        with torch.no_grad():
            unet.disable_adapters()
            target = model(x_t, t, states, class_labels=pooled, encoder_attention_mask=mask).sample
            unet.enable_adapters()
        pred = model(x_t, t, states, class_labels=pooled, encoder_attention_mask=mask).sample
        return F.mse_loss(pred.float(), target.float())

    def batches(self, start_step: int, batch_size: int, device: torch.device, shard: Shard = ALONE) -> Iterator:
        for idx, images in ImageBatches(self.data.images, batch_size, seed=shard.seed(start_step)):
            yield idx, images.to(device)

    def evaluate(self, model) -> dict[str, float]:
        """Validation images for the prompts given (saved by export); the loss is the number that moves."""
        return {}

    def export(self, model, folder: Path, *, step: int, images_seen: int, seconds: float) -> None:
        from pipeline.images import to_pil

        def draw(prompts: list[str]) -> list[Image.Image]:
            model.eval()
            seeds = list(range(len(prompts)))
            x = diffusion.sample(model, self.cfg, self.encoder.encode(prompts), self.pool.uncond, seeds=seeds)
            return [tile.resize((128, 128), Image.NEAREST) for tile in to_pil(x)]

        export_lora(model, folder, {**self.card, **run_card(step, images_seen, seconds)}, self.validation_prompts, draw)


def run_card(step: int, images_seen: int, seconds: float) -> dict:
    return {"step": step, "images_seen": images_seen, "train_minutes": round(seconds / 60, 1)}


def export_lora(model, folder: Path, card: dict, validation_prompts: list[str], draw, *, pipeline_class=None) -> None:
    """folder/lora.safetensors, lora.json (how it was made) and validation-STEP.png: draw(prompts) side by side."""
    folder.mkdir(parents=True, exist_ok=True)
    save_lora(model, folder, pipeline_class=pipeline_class)
    (folder / "lora.json").write_text(json.dumps(card, indent=2) + "\n")
    if validation_prompts:
        tiles = draw(validation_prompts)
        sheet = Image.new("RGB", (sum(t.size[0] for t in tiles), tiles[0].size[1]))
        for i, tile in enumerate(tiles):
            sheet.paste(tile, (sum(t.size[0] for t in tiles[:i]), 0))
        sheet.save(folder / f"validation-{card['step']:06d}.png")


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
            model, data, rank=rank, targets=targets, device=device, validation_prompts=validation_prompts or [],
            card=card, seed=seed, allow_empty_captions=allow_empty_captions,
            gradient_checkpointing=gradient_checkpointing,
        )  # fmt: skip
        unet, images, batch_size = task.pipe.unet, task.data, batch_size or family_batch
    else:  # a Wordbrush model (the embedded shapes model, or a folder of ours)
        task = embedded_lora_task(
            model, data, rank=rank, targets=targets, device=device, validation_prompts=validation_prompts or [],
            card=card, seed=seed, allow_empty_captions=allow_empty_captions, prior_weight=prior_weight,
            prior_data=prior_data,
        )  # fmt: skip
        unet, images, batch_size = task.unet, task.data, batch_size or EMBEDDED_BATCH
        if gradient_checkpointing:
            unet.enable_gradient_checkpointing()
    n_params = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    print(f"LoRA rank {rank} on {model}: {n_params:,} trainable params; {len(images.images)} images")
    train_cfg = TrainConfig(
        out=str(out), steps=steps, batch_size=batch_size, lr=lr, warmup=min(50, steps // 10), ema_decay=0.99,
        checkpoint_every=checkpoint_every, eval_every=0, log_every=10, mixed_precision=mixed_precision, seed=seed,
    )  # fmt: skip
    run_training(task, train_cfg, on_log=on_log, should_stop=should_stop)
    return Path(out) / "model" / LORA_FILE


def embedded_lora_task(model: str, data, *, rank: int, targets: str, device: str, validation_prompts: list[str],
                       card: dict, seed: int, allow_empty_captions: bool, prior_weight: float,
                       prior_data: str) -> LoraTask:  # fmt: skip
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

        return icons_lora_task(unet, cfg, meta, folder, encoder, images, validation_prompts=validation_prompts,
                               card=card, seed=seed, prior_weight=prior_weight)  # fmt: skip
    prior, prior_images = None, None
    if prior_weight > 0 and prior_data == "base":  # captions of what the base learned, its own drawings of them
        prior = build_pool(encoder, size=PRIOR_IMAGES, seed=seed + 1)
        prior_images = draw_prior(unet, cfg, prior)
    elif prior_weight > 0:  # the base's training world: captions encoded once, scenes rendered every step
        prior = build_pool(encoder, size=PRIOR_CAPTIONS, seed=seed + 1)
    card["prior_weight"], card["prior_data"] = prior_weight, prior_data
    return LoraTask(
        unet, cfg, encoder, images, validation_prompts=validation_prompts, card=card, prior=prior,
        prior_images=prior_images, prior_weight=prior_weight,
    )  # fmt: skip


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


def write_star_demo(out: Path, *, n: int = 40, seed: int = 0) -> Path:
    """A folder of `n` captioned images of flat stars in every colour: a shape the base model never saw."""

    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        color = list(world.COLORS)[i % len(world.COLORS)]
        image, _ = world.render_scene(world.Scene("single", (world.Obj(color, "star"),), "flat"), rng.getrandbits(31))
        image.save(out / f"{i:03d}.png")
        text = rng.choice([f"a {color} star", f"one {color} star", f"a picture of a {color} star"])
        rows.append({"file_name": f"{i:03d}.png", "text": text})
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out
