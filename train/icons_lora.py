"""LoRA fine-tuning of the icons model: teach it a thing its world never had, from a folder of captioned pictures.

    python -m train lora --model icons --data DIR --out DIR
    python -m train lora-demo --world icons --out DIR        # 40 pictures of a kite, drawn by code

The icons UNet has no attention: its adapters go on the convolutions of its residual blocks (peft's LoRA for
Conv2d). A new thing also needs a sketch, since the UNet draws what the layout stage's sketch painter drafts in
each box (pipeline/worlds/icons/layout.py): the painter is fine-tuned beside the adapters, on each picture's thing as
cropped from it (its box found as the evaluator finds icons, pipeline/worlds/icons/judge.py `blobs`), while it keeps
drawing the world's own icons (`sketch_loss` on them). The prior preservation is train/lora.py's: fresh renders
of the icons world, on which the adapted UNet must predict what the base predicts.

The LoRA file is diffusers' format (`unet.` keys) plus the painter's weights (`painter.` keys) and the phrases it
teaches (metadata "wordbrush_phrases"): the pipeline loads all three (pipeline/core.py), and the prompt reader
then keeps those words as written instead of reading "kite" as its nearest icon.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from pipeline import diffusion
from pipeline.worlds.icons import judge as icons_eval
from pipeline.worlds.icons import scenes as world
from pipeline.worlds.icons.layout import (
    LORA_PAINTER,
    LORA_PHRASES,
    MAX_ICONS,
    SKETCH_SIDE,
    LayoutBatch,
    LayoutEncoder,
    Plan,
    Request,
    encode_plans,
    read_request,
    snapped,
)
from train.adapters import PRIOR_DROPOUT, CaptionedImages, LoraTask, export_lora
from train.diffusion import CaptionPool, conditioning, padded_boxes, timesteps, to_tensor
from train.icons_diffusion import SKETCH_BATCH, LayoutDenoiser, pool_layouts, sketch_loss, sketch_targets

PRIOR_CAPTIONS = 4096  # icons-world captions for prior preservation, encoded once, their scenes drawn anew

FILL = 0.92  # share of a sprite's box its drawing spans: a blob's tight box is widened by 1 / FILL


def thing_boxes(image: Image.Image, count: int) -> list[tuple[int, int, int, int]] | None:
    """`count` square boxes around the picture's things as the world's boxes hold its sprites (left to right),
    or None when the picture does not show that many separate things."""
    found = sorted(icons_eval.blobs(image)[1], key=lambda b: (b[0], b[1]))
    if count == 1 and found:  # one thing, maybe in pieces: the box around all of them
        found = [
            (min(b[0] for b in found), min(b[1] for b in found), max(b[2] for b in found), max(b[3] for b in found))
        ]
    if len(found) != count:
        return None
    boxes = []
    for x0, y0, x1, y1 in found:
        side = max(x1 - x0, y1 - y0) / FILL
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        boxes.append(snapped((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)))
    return boxes


def thing_sketch(image: Image.Image, box: tuple[int, int, int, int]) -> torch.Tensor:
    """(4, SKETCH_SIDE, SKETCH_SIDE): the thing in `box` as the painter should draw it: its pixels where they
    stand out from the picture's background (the alpha), premultiplied."""
    _, measured = icons_eval.background_of(image)
    px = np.asarray(image.convert("RGB").crop(box).resize((SKETCH_SIDE, SKETCH_SIDE), Image.LANCZOS), np.float32)
    alpha = np.clip((np.linalg.norm(px - measured, axis=-1) - 10) / 40, 0, 1)[..., None]
    rgba = np.concatenate([px / 255 * alpha, alpha], axis=-1)
    return torch.from_numpy(rgba).permute(2, 0, 1).float()


def data_layouts(encoder, data: CaptionedImages) -> tuple[LayoutBatch, torch.Tensor, list[str], torch.Tensor]:
    """Each picture's layout (its caption's things in the boxes found in it), which pictures have one, the
    phrases the world has no icon for, and each picture's sketch target of its first new thing (zeros when none)."""
    plans, found, targets = [], [], []
    taught = tuple(sorted({t for text in data.captions for t in read_request(text).things if t not in world.icons()}))
    for image, text in zip(data.images, data.captions):
        request = read_request(text, taught)  # "a kite next to a frog": the kite too
        boxes = thing_boxes(image, len(request.things)) if request.things else None
        found.append(boxes is not None)
        plans.append(Plan(request, tuple(boxes or [])) if boxes else Plan(Request(()), ()))
        new = [i for i, t in enumerate(request.things) if t not in world.icons()] if boxes else []
        targets.append(thing_sketch(image, boxes[new[0]]) if new else torch.zeros(4, SKETCH_SIDE, SKETCH_SIDE))
    phrases = sorted({t for p in plans for t in p.request.things if t not in world.icons()})
    layouts = _encode(encoder, plans)
    return layouts, torch.tensor(found), phrases, torch.stack(targets)


def _encode(encoder, plans: list[Plan]) -> LayoutBatch:
    if any(p.boxes for p in plans):
        return encode_plans(encoder, plans)
    zero = torch.zeros(len(plans), MAX_ICONS)
    return LayoutBatch(
        zero[..., None].expand(-1, -1, encoder.hidden_size),
        zero.bool(),
        zero[..., None].expand(-1, -1, 4),
        torch.zeros(len(plans), encoder.hidden_size),
        torch.zeros(len(plans), dtype=torch.bool),
    )


class IconsLoraTask(LoraTask):
    """train/lora.py's task with the layout map: the adapters and the sketch painter learn together."""

    def __init__(
        self,
        unet,
        layout_encoder: LayoutEncoder,
        cfg: diffusion.DiffusionConfig,
        encoder,
        data: CaptionedImages,
        *,
        validation_prompts: list[str],
        card: dict,
        prior: CaptionPool | None,
        prior_weight: float,
    ):
        super().__init__(
            unet,
            cfg,
            encoder,
            data,
            validation_prompts=validation_prompts,
            card=card,
            prior=prior,
            prior_weight=prior_weight,
        )
        layout_encoder.requires_grad_(False)
        layout_encoder.painter.requires_grad_(True)  # the only part of the layout stage that learns
        self.model = LayoutDenoiser(unet, layout_encoder, cfg)
        self.layouts, self.has_layout, self.phrases, self.new_sketches = data_layouts(encoder, data)
        self.new_states = encoder.encode([t for t in self._first_new(data)], cache=False).pooled.float()
        self.world_states = encoder.encode(world.names(), cache=False).pooled.float()
        self.world_sketches = sketch_targets()
        self.prior_layouts = pool_layouts(encoder, prior.examples) if prior is not None else None
        card["phrases"] = self.phrases

    def _first_new(self, data: CaptionedImages) -> list[str]:
        """Each picture's first thing that is not a world icon (its caption when there is none)."""
        out = []
        for text in data.captions:
            new = [t for t in read_request(text, tuple(self.phrases)).things if t not in world.icons()]
            out.append(new[0] if new else text)
        return out

    def trainable(self) -> torch.nn.Module:
        return self.model

    def loss(self, model, batch) -> torch.Tensor:
        idx, x0 = batch
        device = x0.device
        states, mask, pooled, _ = conditioning(self.pool, idx, device, 0.0)
        cpu = idx.cpu()
        noise = torch.randn_like(x0)
        t = timesteps(len(idx), self.cfg.train_timesteps, 0.0, device)
        pred = model(
            self.noise.add_noise(x0, noise, t),
            t,
            states,
            mask,
            pooled,
            self.layouts[cpu].to(device),
            self.has_layout[cpu].to(device),
        )
        loss = F.mse_loss(pred.float(), self.noise.get_velocity(x0, noise, t).float())
        painter = getattr(model, "module", model).layout
        drawn = self.has_layout[cpu] & (self.new_sketches[cpu].flatten(1).amax(1) > 0)
        if drawn.any():  # the new thing's sketch from its name, against its crops
            loss = loss + sketch_loss(
                painter, self.new_states[cpu][drawn].to(device), self.new_sketches[cpu][drawn].to(device)
            )
        pick = torch.randint(len(self.world_states), (SKETCH_BATCH,))  # and the world's icons as they were
        loss = loss + sketch_loss(painter, self.world_states[pick].to(device), self.world_sketches[pick].to(device))
        if self.prior is not None and self.prior_weight > 0:
            loss = loss + self.prior_weight * self.icons_prior_loss(model, len(idx), device)
        return loss

    def icons_prior_loss(self, model, n: int, device) -> torch.Tensor:
        """Self-distillation on fresh renders of the icons world (train/lora.py `prior_loss`), with their maps."""
        inner = getattr(model, "module", model)
        j = torch.randint(0, len(self.prior.states), (n,))
        drawn = [world.render_scene(self.prior.examples[int(k)].scene, random.getrandbits(31)) for k in j]
        x0 = to_tensor([image for image, _ in drawn]).to(device)
        p = self.prior_layouts
        layout = LayoutBatch(
            p.things[j].float(),
            p.present[j],
            padded_boxes([lay for _, lay in drawn]),
            p.background[j].float(),
            p.said[j],
        ).to(device)
        states, mask, pooled, dropped = conditioning(self.prior, j, device, PRIOR_DROPOUT)
        t = torch.randint(0, self.cfg.train_timesteps, (n,), device=device)
        x_t = self.noise.add_noise(x0, torch.randn_like(x0), t)
        with torch.no_grad():
            inner.unet.disable_adapters()
            target = model(x_t, t, states, mask, pooled, layout, ~dropped)
            inner.unet.enable_adapters()
        return F.mse_loss(model(x_t, t, states, mask, pooled, layout, ~dropped).float(), target.float())

    def export(self, model, folder: Path, *, step: int, images_seen: int, seconds: float) -> None:
        from pipeline.images import to_pil
        from pipeline.worlds.icons.layout import layout_for

        def draw(prompts: list[str]) -> list[Image.Image]:
            model.eval()
            seeds = list(range(len(prompts)))
            _, layout = layout_for(self.encoder, prompts, seeds, tuple(self.phrases))
            with torch.no_grad():
                layout_map = model.layout(layout, model.grid, self.cfg.resolution)
            x = diffusion.sample(
                model.unet,
                self.cfg,
                self.encoder.encode(prompts),
                self.pool.uncond,
                seeds=seeds,
                steps=6,
                guidance=2.0,
                layout_map=layout_map,
            )
            return [tile.resize((128, 128), Image.NEAREST) for tile in to_pil(x)]

        card = {**self.card, "step": step, "images_seen": images_seen, "train_minutes": round(seconds / 60, 1)}
        export_lora(model.unet, folder, card, self.validation_prompts, draw)
        add_painter(folder / "lora.safetensors", model.layout, self.phrases)


def add_painter(path: Path, layout: LayoutEncoder, phrases: list[str]) -> None:
    """Put the sketch painter's weights (fp16) and the taught phrases into the LoRA file."""
    tensors = load_file(path)
    tensors |= {LORA_PAINTER + k: v.detach().half().contiguous() for k, v in layout.painter.state_dict().items()}
    save_file(tensors, path, metadata={"format": "pt", LORA_PHRASES: json.dumps(phrases)})


def icons_lora_task(
    unet, cfg, meta, folder, encoder, images: CaptionedImages, *, validation_prompts, card, seed, prior_weight: float
) -> IconsLoraTask:
    """The LoRA task for an icons model: conv adapters, its layout encoder, the icons world as the prior."""
    from train.diffusion import build_pool

    layout_encoder = diffusion.load_layout_encoder(folder, cfg).float()
    prior = build_pool(encoder, size=PRIOR_CAPTIONS, seed=seed + 1, world_name="icons") if prior_weight > 0 else None
    card["prior_weight"], card["prior_data"] = prior_weight, "world"
    task = IconsLoraTask(
        unet,
        layout_encoder,
        cfg,
        encoder,
        images,
        validation_prompts=validation_prompts,
        card=card,
        prior=prior,
        prior_weight=prior_weight,
    )
    if not task.has_layout.any():
        raise ValueError(
            "no picture shows its caption's things as separate shapes on a plain background; the "
            "icons model learns a thing from pictures like its world's (one to three things)"
        )
    return task


# ----------------------------------------------------------------------------------------------------
# The demo: a kite, a thing the icons world does not have


# ----------------------------------------------------------------------------------------------------
# Measuring a taught thing: is it in the picture?


def _template(sprite: Image.Image, colour) -> np.ndarray:
    """A sprite on a plain background, cropped as the evaluator crops a blob: (CROP, CROP, 3) floats."""
    canvas = Image.new("RGBA", sprite.size, tuple(int(c) for c in colour) + (255,))
    canvas.alpha_composite(sprite)
    rgb = canvas.convert("RGB")
    x0, y0, x1, y1 = Image.fromarray((np.asarray(sprite)[..., 3] > 128).astype(np.uint8) * 255).getbbox()
    margin = max(1, round((x1 - x0) / 30))
    return np.asarray(icons_eval.crop(rgb, (x0 + margin, y0 + margin, x1 - margin, y1 - margin)), np.float32)


def thing_found(image: Image.Image, sprite: Image.Image) -> bool:
    """Does a thing in `image` look more like `sprite` than like any of the world's icons? Each blob the
    evaluator finds (`icons_eval.blobs`) is compared, at the evaluator's crop size, with every icon and
    with `sprite`, each put on the picture's measured background: the nearest by mean squared error names it."""
    _, measured = icons_eval.background_of(image)
    sprites = [sprite, *(icon.sprite for icon in world.icons().values())]
    templates = np.stack([_template(s, measured) for s in sprites])  # (1 + N, CROP, CROP, 3)
    for box in icons_eval.blobs(image)[1]:
        crop = np.asarray(icons_eval.crop(image.convert("RGB"), box), np.float32)
        if int(((templates - crop) ** 2).mean(axis=(1, 2, 3)).argmin()) == 0:
            return True
    return False
