"""A small CNN that names the rendering style of a shapes-world image: the evaluator's one learned part.

Colour, shape, count and position are judged by rules (train/evaluate.py); style ("flat", "outline",
"striped", "soft") is a texture question that a 60k-parameter CNN answers more robustly than
hand-made features. It is trained on clean renders with mild noise and blur as augmentation:

    python -m train style-classifier --out assets/evaluator/style-classifier
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image, ImageFilter
from torch import nn
from torch.nn import functional as F

from train import world


class StyleClassifier(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, styles: tuple[str, ...] = world.STYLES, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.SiLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),  # 16 x 16
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),  # 8 x 8
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.SiLU(),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
            nn.Linear(2 * w, len(styles)),
        )  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) in [-1, 1] -> logits (B, n_styles)."""
        return self.net(images)

    @torch.inference_mode()
    def predict(self, images: list[Image.Image]) -> list[str]:
        x = torch.stack([to_tensor(im) for im in images]).to(self.device, self.dtype)
        return [self.config.styles[i] for i in self.forward(x).argmax(-1).tolist()]


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image at the world's resolution -> (3, H, W) float in [-1, 1]."""
    image = image.convert("RGB")
    if image.size != (world.RESOLUTION, world.RESOLUTION):
        image = image.resize((world.RESOLUTION, world.RESOLUTION), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1).permute(2, 0, 1)


def degrade(image: Image.Image, rng: random.Random, *, max_noise: float = 10.0, max_blur: float = 0.7) -> Image.Image:
    """Mild random blur and Gaussian pixel noise (std up to `max_noise` of 255): the augmentation."""
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0, max_blur)))
    if rng.random() < 0.5:
        arr = np.asarray(image, np.float32)
        noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(0, max_noise), arr.shape)
        image = Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))
    return image


def train_style_classifier(*, out: str, steps: int = 1500, batch: int = 64, pool: int = 6000, seed: int = 0) -> float:
    """Train on a pool of renders (all kinds, training combos) and save; returns held-out accuracy."""
    rng = random.Random(seed)
    torch.manual_seed(seed)

    def sample(n: int, split: str) -> list[tuple[Image.Image, int]]:
        items = []
        for _ in range(n):
            style = rng.choice(world.STYLES)
            scene = world.sample_scene(rng, style=style)
            if world.is_heldout_combo(scene) != (split == "heldout"):
                continue
            image, _ = world.render_scene(scene, rng.getrandbits(31))
            items.append((image, world.STYLES.index(style)))
        return items

    # Render a pool once; augmentation makes each epoch different.
    t0 = time.time()
    train_pool, val_pool = sample(pool, "train"), sample(pool // 2, "heldout")
    model = StyleClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    for step in range(steps):
        picks = [rng.choice(train_pool) for _ in range(batch)]
        x = torch.stack([to_tensor(degrade(im, rng)) for im, _ in picks])
        y = torch.tensor([label for _, label in picks])
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - t0:.0f}s", flush=True)
    model.eval()
    preds = model.predict([degrade(im, rng) for im, _ in val_pool])
    acc = float(np.mean([world.STYLES.index(p) == label for p, (_, label) in zip(preds, val_pool)]))
    print(f"held-out combos, mildly degraded: style accuracy {acc:.4f} on {len(val_pool)} images")
    model.save_pretrained(out)
    return acc
