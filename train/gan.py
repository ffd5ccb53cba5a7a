"""Training the one-step GAN from scratch on the shapes world (a Task for train/loop.py).

    python -m train gan --out runs/gan --steps 20000

Hinge loss; a projection discriminator (Miyato & Koyama, 2018) that also attends to the prompt's tokens
and learns to reject real images paired with the wrong prompt (a text-matching term, as in GAN-INT-CLS);
lazy R1 on real images (Mescheder et al., 2018); EMA of the generator. The loop trains the generator (its
`trainable`); this task steps the discriminator inside `loss`, through the loop's accelerator (`prepare`), with
its weights and optimizer kept in the checkpoint's task state.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from pipeline import gan
from pipeline.encoders import EncodedPrompts, PromptEncoder
from pipeline.worlds.shapes import judge as evaluate
from train.diffusion import CaptionPool, generate_for_items, rendered_batches
from train.loop import ALONE, Shard


class Discriminator(nn.Module):
    def __init__(self, cond_dim: int, channels: tuple[int, ...] = (64, 128, 192), heads: int = 4):
        super().__init__()
        c1, c2, c3 = channels
        self.down = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(3, c1, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(c1, c1, 4, 2, 1), nn.LeakyReLU(0.2)
                ),
                nn.Sequential(
                    nn.Conv2d(c1, c2, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(c2, c2, 4, 2, 1), nn.LeakyReLU(0.2)
                ),
            ]
        )  # 32 -> 16 -> 8
        self.attn = gan.TextCrossAttention(c2, cond_dim, heads)  # at 8 x 8: judge layout against the words
        self.last = nn.Sequential(nn.Conv2d(c2, c3, 4, 2, 1), nn.LeakyReLU(0.2))  # 8 -> 4
        self.out = nn.Linear(c3, 1)
        self.project = nn.Linear(cond_dim, c3)

    def forward(self, x: torch.Tensor, cond: EncodedPrompts) -> torch.Tensor:
        """images (B, 3, 32, 32) in [-1, 1] -> realness logits (B,)."""
        for block in self.down:
            x = block(x)
        x = self.attn(x, cond.states, cond.mask)
        h = self.last(x).sum(dim=(2, 3))  # (B, C3)
        return self.out(h).squeeze(1) + (h * self.project(cond.pooled)).sum(1)


class GANTask:
    def __init__(
        self,
        generator: gan.TextToImageGAN,
        encoder: PromptEncoder,
        pool: CaptionPool,
        *,
        lr: float = 2e-4,
        r1_gamma: float = 0.2,
        r1_every: int = 4,
        mismatch_weight: float = 0.5,
        workers: int = 0,
        eval_per_category: int = 20,
        card: dict | None = None,
    ):
        self.generator, self.discriminator = generator, Discriminator(encoder.hidden_size)
        self.encoder, self.pool, self.workers = encoder, pool, workers
        self.d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.0, 0.99))
        self.accel = None  # the loop's accelerator, once `prepare` is called
        self.r1_gamma, self.r1_every, self.mismatch_weight = r1_gamma, r1_every, mismatch_weight
        self.eval_items = evaluate.eval_set("combos", per_category=eval_per_category)
        self.card = card or {}
        self._step = 0

    def trainable(self) -> nn.Module:
        return self.generator

    def prepare(self, accel) -> None:
        """The discriminator on the accelerator's device; its backward goes through the accelerator, and its
        gradients are averaged over the processes before each of its steps (`_step_discriminator`)."""
        self.accel = accel
        self.discriminator.to(accel.device)

    def state_dict(self) -> dict:
        weights = {k: v.detach().cpu() for k, v in self.discriminator.state_dict().items()}
        return {"d_opt": self.d_opt.state_dict(), "step": self._step, "discriminator": weights}

    def load_state_dict(self, state: dict) -> None:
        if "discriminator" in state:
            self.discriminator.load_state_dict(state["discriminator"])
        self.d_opt.load_state_dict(state["d_opt"])
        self._step = state["step"]

    def batches(self, start_step: int, batch_size: int, device: torch.device, shard: Shard = ALONE) -> Iterator:
        return rendered_batches(self.pool, start_step, batch_size, device, workers=self.workers, shard=shard)

    def _cond(self, idx: torch.Tensor, device) -> EncodedPrompts:
        p = self.pool
        return EncodedPrompts(
            p.states[idx].to(device).float(), p.mask[idx].to(device), p.pooled[idx].to(device).float(), []
        )

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        """One discriminator update here, then the generator's hinge loss for the loop to step. `model` is the
        generator as the loop prepared it (wrapped for several processes)."""
        g, d = self.generator, self.discriminator
        idx, real = batch
        device = real.device
        cond = self._cond(idx, device)
        wrong = self._cond(idx.roll(1), device)  # each image with another image's prompt
        z = torch.randn(len(idx), g.config.z_dim, device=device)

        with torch.no_grad():
            fake = g(z, cond)
        self.discriminator_step(real, fake, cond, wrong)

        # Generator: fool the discriminator (its weights frozen, so the loop steps only the generator).
        d.requires_grad_(False)
        self._step += 1
        return -d(model(z, cond), cond).mean()

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor, cond, wrong) -> None:
        """The GAN's discriminator step: hinge loss, real images high under their condition (`cond`, as the
        discriminator reads it), generated ones low, real ones under another image's condition (`wrong`) low;
        lazy R1 on the real images every r1_every steps."""
        d = self.discriminator
        d.requires_grad_(True)
        real.requires_grad_(self._step % self.r1_every == 0)
        d_real = d(real, cond)
        d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d(fake, cond)).mean()
        d_loss = d_loss + self.mismatch_weight * F.relu(1 + d(real, wrong)).mean()
        if real.requires_grad:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            d_loss = d_loss + self.r1_every * self.r1_gamma / 2 * grad.square().sum(dim=(1, 2, 3)).mean()
        self._step_discriminator(d_loss)

    def _step_discriminator(self, d_loss: torch.Tensor) -> None:
        self.d_opt.zero_grad(set_to_none=True)
        if self.accel is None:
            d_loss.backward()
        else:
            self.accel.backward(d_loss)
            if self.accel.num_processes > 1:  # every process steps the same discriminator
                for p in self.discriminator.parameters():
                    if p.grad is not None:
                        p.grad = self.accel.reduce(p.grad, reduction="mean")
        self.d_opt.step()
        self.d_opt.zero_grad(set_to_none=True)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        generator = model.eval()
        images = generate_for_items(
            self.encoder, self.eval_items, lambda cond, seeds: gan.generate_step(generator, cond, seeds)
        )
        return evaluate.score(self.eval_items, images)

    def export(self, model: nn.Module, folder: Path, *, step: int, images_seen: int, seconds: float) -> None:
        card = {**self.card, "step": step, "images_seen": images_seen, "train_minutes": round(seconds / 60, 1)}
        export = gan.TextToImageGAN(**model.config)
        export.load_state_dict(model.state_dict())
        gan.save(folder, export, encoder=self.encoder.name, card=card)
