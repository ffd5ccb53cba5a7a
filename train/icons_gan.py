"""Training the icons world's one-step GAN (pipeline/gan.py `LayoutGAN`; a Task for train/loop.py).

    python -m train gan --size icons --out runs/icons-gan

The generator reads the layout stage's map, made by the icons diffusion model's trained layout encoder
(`--layout-from`, frozen here: the GAN and the diffusion model read the same codes and sketches), and learns as
pix2pix does: a conditional patch discriminator (hinge loss, lazy R1) that also rejects real images shown with
another image's map, plus an L1 term towards the rendered scene where the map decides the pixels (inside the
boxes; everywhere when the prompt names the background). Where the map leaves the background open, the
adversarial term alone asks for one of the world's colours, picked by the noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from pipeline import gan
from pipeline.worlds.icons import judge as icons_eval
from pipeline.worlds.icons.layout import LAYOUT_INPUTS, LayoutBatch, LayoutEncoder, box_coords, layout_for
from pipeline.worlds.icons.understand import IconsUnderstanding
from train.diffusion import CaptionPool, generate_for_items, rendered_batches
from train.gan import GANTask
from train.icons_diffusion import pool_layouts
from train.loop import ALONE, Shard


class LayoutDiscriminator(nn.Module):
    """(image, layout map) -> realness logits: the image folded into the map's grid beside the map, three
    strided convolutions, one logit per 4 x 4 patch, averaged."""

    def __init__(self, patch: int = 2, channels: tuple[int, ...] = (64, 128, 192)):
        super().__init__()
        c1, c2, c3 = channels
        self.patch = patch
        self.net = nn.Sequential(
            nn.Conv2d(3 * patch**2 + LAYOUT_INPUTS, c1, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c1, c2, 4, 2, 1),
            nn.LeakyReLU(0.2),  # 16
            nn.Conv2d(c2, c3, 4, 2, 1),
            nn.LeakyReLU(0.2),  # 8
            nn.Conv2d(c3, c3, 4, 2, 1),
            nn.LeakyReLU(0.2),  # 4
            nn.Conv2d(c3, 1, 3, padding=1),
        )

    def forward(self, image: torch.Tensor, layout_map: torch.Tensor) -> torch.Tensor:
        """image (B, 3, R, R) in [-1, 1], layout_map (B, LAYOUT_INPUTS, R / patch, R / patch) -> (B,)."""
        x = torch.cat([F.pixel_unshuffle(image, self.patch), layout_map], dim=1)
        return self.net(x).mean(dim=(1, 2, 3))


class IconsGANTask(GANTask):
    """GANTask's discriminator step, checkpointed state and export, with the layout map as the condition."""

    def __init__(
        self,
        generator: gan.LayoutGAN,
        layout_encoder: LayoutEncoder,
        encoder,
        pool: CaptionPool,
        *,
        lr: float = 2e-4,
        r1_gamma: float = 0.2,
        r1_every: int = 4,
        mismatch_weight: float = 0.5,
        l1_weight: float = 10.0,
        workers: int = 0,
        eval_per_category: int = 20,
        card: dict | None = None,
    ):
        self.generator, self.discriminator = generator, LayoutDiscriminator(generator.config.patch)
        self.layout = layout_encoder.eval().requires_grad_(False)
        self.encoder, self.pool, self.workers = encoder, pool, workers
        self.d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.0, 0.99))
        self.accel = None
        self.r1_gamma, self.r1_every, self.mismatch_weight = r1_gamma, r1_every, mismatch_weight
        self.l1_weight = l1_weight
        self.layouts = pool_layouts(encoder, pool.examples)
        self.eval_items = icons_eval.eval_set("combos", per_category=eval_per_category)
        self.reader = IconsUnderstanding(encoder)  # evaluation reads prompts as the app does
        self.card = card or {}
        self._step = 0

    def prepare(self, accel) -> None:
        super().prepare(accel)
        self.layout.to(accel.device)

    def batches(self, start_step: int, batch_size: int, device: torch.device, shard: Shard = ALONE) -> Iterator:
        return rendered_batches(
            self.pool, start_step, batch_size, device, workers=self.workers, shard=shard, boxes=True
        )

    def _layout_map(self, idx: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's layout maps as the pipeline makes them, and where they decide the pixels (B, 1, R, R)."""
        cpu, device = idx.cpu(), boxes.device
        layout = LayoutBatch(
            self.layouts.things[cpu].float(),
            self.layouts.present[cpu],
            boxes.cpu(),
            self.layouts.background[cpu].float(),
            self.layouts.said[cpu],
        ).to(device)
        resolution = self.generator.config.resolution
        with torch.no_grad():
            layout_map = self.layout(layout, resolution // self.generator.config.patch, resolution)
        inside = box_coords(layout, resolution, resolution)[2].amax(dim=1, keepdim=True)  # (B, 1, R, R)
        decided = torch.maximum(inside, layout.said.float()[:, None, None, None].expand_as(inside))
        return layout_map, decided

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        """One discriminator update, then the generator's hinge loss plus its L1 towards the render."""
        g, d = self.generator, self.discriminator
        idx, real, boxes = batch
        layout_map, decided = self._layout_map(idx, boxes)
        z = torch.randn(len(idx), g.config.z_dim, device=real.device)

        with torch.no_grad():
            fake = g(z, layout_map)
        self.discriminator_step(real, fake, layout_map, layout_map.roll(1, dims=0))  # wrong: another image's map

        d.requires_grad_(False)
        self._step += 1
        fake = model(z, layout_map)
        l1 = ((fake - real.detach()).abs() * decided).sum() / (decided.sum() * 3).clamp(min=1)
        return -d(fake, layout_map).mean() + self.l1_weight * l1

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        generator = model.eval()
        resolution = generator.config.resolution

        def draw(cond, seeds, prompts):
            _, layout = layout_for(self.encoder, prompts, seeds, backgrounds=True)  # as the pipeline plans them
            with torch.no_grad():
                layout_map = self.layout(layout.to(generator.device), resolution // generator.config.patch, resolution)
            return gan.generate_layout_step(generator, layout_map, seeds)

        read = [u.text for u in self.reader.apply([it.prompt for it in self.eval_items], True)]
        images = generate_for_items(self.encoder, self.eval_items, draw, prompts=read)
        return icons_eval.score(self.eval_items, images)

    def export(self, model: nn.Module, folder: Path, *, step: int, images_seen: int, seconds: float) -> None:
        card = {**self.card, "step": step, "images_seen": images_seen, "train_minutes": round(seconds / 60, 1)}
        export = gan.LayoutGAN(**model.config)
        export.load_state_dict(model.state_dict())
        gan.save(folder, export, encoder=self.encoder.name, card=card, layout_encoder=self.layout)
