"""Training the icons model: its UNet and its layout stage's encoder together (a Task for train/loop.py).

    python -m train diffusion --size icons --out runs/icons

As train/diffusion.py, plus the layout map (pipeline/icons_layout.py): each example's icon names and
background go through the language model once (pooled states, kept with the caption pool), each batch's boxes
are the ones the renderer drew, and the map is dropped with the prompt (classifier-free guidance learns "no
layout" too).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from pipeline import diffusion
from pipeline.icons import IconsReader, names
from pipeline.icons_layout import LayoutBatch, LayoutEncoder, Plan, Request, encode_plans, layout_for, read_request
from train.diffusion import DiffusionTask, conditioning, generate_for_items, rendered_batches, timesteps
from train.loop import ALONE, Shard


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
    plans = [Plan(Request(e.scene.icons, background=b), ((0, 0, 0, 0),) * len(e.scene.icons))
             for e, b in zip(examples, said)]  # fmt: skip
    layouts = encode_plans(encoder, plans)
    return LayoutBatch(layouts.things.half(), layouts.present, layouts.boxes, layouts.background.half(), layouts.said)


class IconsDiffusionTask(DiffusionTask):
    def __init__(self, unet, cfg, encoder, pool, *, layout_encoder: LayoutEncoder | None = None, **kwargs):
        super().__init__(unet, cfg, encoder, pool, **kwargs)
        if layout_encoder is None:  # a fresh one: centred on the world's names (a checkpoint's own centre wins)
            layout_encoder = LayoutEncoder(cfg.cond_dim)
            layout_encoder.center.copy_(encoder.encode(names(), cache=False).pooled.float().mean(0))
        self.model = LayoutDenoiser(unet, layout_encoder, cfg)
        self.layouts = pool_layouts(encoder, pool.examples)
        self.reader = IconsReader(encoder)  # evaluation reads prompts as the app does

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
        layout = LayoutBatch(self.layouts.things[cpu].float(), self.layouts.present[cpu], boxes.cpu(),
                             self.layouts.background[cpu].float(), self.layouts.said[cpu]).to(device)  # fmt: skip
        noise = torch.randn_like(x0)
        t = timesteps(len(idx), self.cfg.train_timesteps, self.high_noise, device)
        x_t = self.noise.add_noise(x0, noise, t)
        pred = model(x_t, t, states, mask, pooled, layout, ~dropped)
        return F.mse_loss(pred.float(), self.noise.get_velocity(x0, noise, t).float())

    def evaluate(self, model) -> dict[str, float]:
        model.eval()
        grid = self.cfg.resolution // self.cfg.patch

        def draw(cond, seeds, prompts):
            _, layout = layout_for(self.encoder, prompts, seeds)
            with torch.no_grad():
                layout_map = model.layout(layout.to(model.unet.device), grid, self.cfg.resolution)
            return diffusion.sample(model.unet, self.cfg, cond, self.pool.uncond, seeds=seeds, steps=self.eval_steps,
                                    guidance=self.eval_guidance, layout_map=layout_map)  # fmt: skip

        read = [self.reader.read(it.prompt) for it in self.eval_items]
        images = generate_for_items(self.encoder, self.eval_items, draw, prompts=read)
        return self.evaluator.score(self.eval_items, images)

    def export(self, model, folder: Path, *, step: int, images_seen: int, seconds: float) -> None:
        card = {**self.card, "step": step, "images_seen": images_seen, "train_minutes": round(seconds / 60, 1)}
        unet = diffusion.build_unet(self.cfg)
        unet.load_state_dict(model.unet.state_dict())
        diffusion.save(
            folder, unet, self.cfg, encoder=self.encoder.name, card=card, layout_encoder=model.layout,
            defaults={"steps": self.eval_steps, "guidance": self.eval_guidance},  # sampled as it was evaluated
        )  # fmt: skip
