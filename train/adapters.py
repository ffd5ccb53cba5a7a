"""What every LoRA trainer shares (train/lora.py, train/hub_lora.py, train/icons_lora.py): the captioned image
folder, adding and saving peft adapters, the embedded models' LoRA task and the exported run."""

from __future__ import annotations

import json
import random
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
from pipeline.worlds.shapes import scenes as world
from train.diffusion import CaptionPool, DiffusionTask, conditioning, to_tensor
from train.loop import ALONE, Shard

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}


LORA_FILE = "lora.safetensors"


PRIOR_DROPOUT = 0.1  # prior samples under the empty prompt, as in the base's training (guidance's baseline)


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
                raise ValueError(
                    f"{rel} has no caption (metadata.jsonl or {path.with_suffix('.txt').name}); "
                    "add one, or pass --allow-empty-captions to train it unconditionally"
                )
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

    def __init__(
        self,
        unet,
        cfg: diffusion.DiffusionConfig,
        encoder: PromptEncoder,
        data: CaptionedImages,
        *,
        validation_prompts: list[str],
        card: dict | None = None,
        prior: CaptionPool | None = None,
        prior_images: torch.Tensor | None = None,
        prior_weight: float = 0.0,
    ):
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
