"""Training the icons model: its UNet and its layout stage's encoder together (a Task for train/loop.py).

    python -m train diffusion --size icons --out runs/icons

As train/diffusion.py, plus the layout map (pipeline/worlds/icons/layout.py): each example's icon names and
background go through the language model once (pooled states, kept with the caption pool), each batch's boxes
are the ones the renderer drew, and the map is dropped with the prompt (classifier-free guidance learns "no
layout" too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from pipeline import diffusion
from pipeline.worlds.icons.catalogue import icons, names
from pipeline.worlds.icons.layout import (
    SKETCH_SIDE,
    LayoutBatch,
    LayoutEncoder,
    Plan,
    Request,
    encode_plans,
    layout_for,
    read_request,
)
from pipeline.worlds.icons.understand import IconsUnderstanding
from train.diffusion import DiffusionTask, conditioning, generate_for_items, rendered_batches, timesteps
from train.loop import ALONE, Shard

SKETCH_BATCH = 32  # icons whose sketch is checked against their sprite at each training step
SKETCH_FIT = 0.004  # a painter whose sketches are further than this (MSE) from the sprites is fitted first


def sketch_targets(side: int = SKETCH_SIDE) -> torch.Tensor:
    """(N, 4, side, side): each icon's sprite in atlas order as the painter should draw it, premultiplied."""
    sprites = [
        np.asarray(icon.sprite.resize((side, side), Image.LANCZOS), np.float32) / 255 for icon in icons().values()
    ]
    rgba = torch.from_numpy(np.stack(sprites)).permute(0, 3, 1, 2)
    return torch.cat([rgba[:, :3] * rgba[:, 3:], rgba[:, 3:]], dim=1)


def sketch_loss(layout: LayoutEncoder, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MSE between the painter's sketches of the icons' names (their states) and their sprites."""
    return F.mse_loss(layout.sketch(states).float(), targets)


def fit_sketches(layout: LayoutEncoder, states, targets, *, steps: int = 1000, lr: float = 2e-3) -> float:
    """Train the painter alone for at most `steps` (all icons a step), stopping once its sketches are within
    SKETCH_FIT / 2 of the sprites, so that the UNet's training starts from sketches worth reading. A fresh
    painter got there in 668 steps, 8.5 minutes on 2 CPU cores (its sketches then named by the evaluator's
    classifier at 1.00, at 32 px on white). The final error."""
    optimizer = torch.optim.AdamW(layout.painter.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    with tqdm(range(steps), desc="sketch painter", unit="step") as bar:
        for _step in bar:
            loss = sketch_loss(layout, states, targets)
            if loss.item() < SKETCH_FIT / 2:
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(mse=f"{loss.item():.4f}")
    return sketch_loss(layout, states, targets).item()


class LayoutDenoiser(nn.Module):
    """The trained pair: the UNet and the layout encoder whose map it reads."""

    def __init__(self, unet, layout: LayoutEncoder, cfg: diffusion.DiffusionConfig):
        super().__init__()
        self.unet, self.layout, self.grid = unet, layout, cfg.resolution // cfg.patch

    def forward(self, x_t, t, states, mask, pooled, layout: LayoutBatch, keep: torch.Tensor) -> torch.Tensor:
        """v for the noisy images x_t; `keep` (B,) bool: which images see their layout map (the rest: none)."""
        layout_map = self.layout(layout, self.grid, x_t.shape[-1]) * keep[:, None, None, None]
        x = diffusion.unet_inputs(self.unet, x_t, None, layout_map)
        out = self.unet(x, t, states, class_labels=pooled, encoder_attention_mask=mask).sample
        return diffusion.unet_outputs(self.unet, out)


def pool_layouts(encoder, examples: list) -> LayoutBatch:
    """Every pool example's things (its scene's icons, in the scene's order) and said background, through the
    language model as the pipeline encodes them (`encode_plans`); boxes are left at zero for each batch's own."""
    said = [read_request(e.caption).background for e in examples]
    plans = [
        Plan(Request(e.scene.icons, background=b), ((0, 0, 0, 0),) * len(e.scene.icons)) for e, b in zip(examples, said)
    ]
    layouts = encode_plans(encoder, plans)
    return LayoutBatch(layouts.things.half(), layouts.present, layouts.boxes, layouts.background.half(), layouts.said)


class IconsDiffusionTask(DiffusionTask):
    def __init__(
        self,
        unet,
        cfg,
        encoder,
        pool,
        *,
        layout_encoder: LayoutEncoder | None = None,
        sketch_steps: int = 1000,
        **kwargs,
    ):
        super().__init__(unet, cfg, encoder, pool, **kwargs)
        self.sketch_states = encoder.encode(names(), cache=False).pooled.float()  # the world's names
        if layout_encoder is None:  # a fresh one: centred on the world's names (a checkpoint's own centre wins)
            layout_encoder = LayoutEncoder(cfg.cond_dim)
            layout_encoder.center.copy_(self.sketch_states.mean(0))
        # the painter learns each icon's sprite from its name beside the denoiser (`loss`), fitted first if new
        self.sketch_targets = sketch_targets()
        with torch.no_grad():
            error = sketch_loss(layout_encoder, self.sketch_states, self.sketch_targets).item()
        if error > SKETCH_FIT:
            error = fit_sketches(layout_encoder, self.sketch_states, self.sketch_targets, steps=sketch_steps)
        print(f"sketch painter: MSE {error:.4f} from the sprites")
        self.model = LayoutDenoiser(unet, layout_encoder, cfg)
        self.layouts = pool_layouts(encoder, pool.examples)
        self.reader = IconsUnderstanding(encoder)  # evaluation reads prompts as the app does

    def trainable(self) -> nn.Module:
        return self.model

    def batches(self, start_step: int, batch_size: int, device: torch.device, shard: Shard = ALONE):
        return rendered_batches(
            self.pool, start_step, batch_size, device, workers=self.workers, shard=shard, boxes=True
        )

    def loss(self, model, batch) -> torch.Tensor:
        """v-prediction MSE, the prompt and the layout map dropped together for `cond_dropout` of the batch."""
        idx, x0, boxes = batch
        device = x0.device
        states, mask, pooled, dropped = conditioning(self.pool, idx, device, self.cond_dropout)
        cpu = idx.cpu()
        layout = LayoutBatch(
            self.layouts.things[cpu].float(),
            self.layouts.present[cpu],
            boxes.cpu(),
            self.layouts.background[cpu].float(),
            self.layouts.said[cpu],
        ).to(device)
        noise = torch.randn_like(x0)
        t = timesteps(len(idx), self.cfg.train_timesteps, self.high_noise, device)
        x_t = self.noise.add_noise(x0, noise, t)
        pred = model(x_t, t, states, mask, pooled, layout, ~dropped)
        pick = torch.randint(len(self.sketch_states), (SKETCH_BATCH,))
        sketched = sketch_loss(model.layout, self.sketch_states[pick].to(device), self.sketch_targets[pick].to(device))
        return F.mse_loss(pred.float(), self.noise.get_velocity(x0, noise, t).float()) + sketched

    def evaluate(self, model) -> dict[str, float]:
        model.eval()
        grid = self.cfg.resolution // self.cfg.patch

        def draw(cond, seeds, prompts):
            _, layout = layout_for(self.encoder, prompts, seeds)
            with torch.no_grad():
                layout_map = model.layout(layout.to(model.unet.device), grid, self.cfg.resolution)
            return diffusion.sample(
                model.unet,
                self.cfg,
                cond,
                self.pool.uncond,
                seeds=seeds,
                steps=self.eval_steps,
                guidance=self.eval_guidance,
                layout_map=layout_map,
            )

        read = [u.text for u in self.reader.apply([it.prompt for it in self.eval_items], True)]
        images = generate_for_items(self.encoder, self.eval_items, draw, prompts=read)
        return self.evaluator.score(self.eval_items, images)

    def export(self, model, folder: Path, *, step: int, images_seen: int, seconds: float) -> None:
        card = {**self.card, "step": step, "images_seen": images_seen, "train_minutes": round(seconds / 60, 1)}
        unet = diffusion.build_unet(self.cfg)
        unet.load_state_dict(model.unet.state_dict())
        diffusion.save(
            folder,
            unet,
            self.cfg,
            encoder=self.encoder.name,
            card=card,
            layout_encoder=model.layout,
            defaults={"steps": self.eval_steps, "guidance": self.eval_guidance},  # sampled as it was evaluated
        )
