"""Training the worlds' evaluators' learned parts (the models live in their judges, pipeline/worlds/*/judge.py).

- The shapes world's style classifier: colour, shape, count and position are judged by rules; style ("flat",
  "outline", "striped", "soft") is a texture question that a 60k-parameter CNN answers more robustly than
  hand-made features. Trained on clean renders with mild noise and blur as augmentation.
- The icons world's icon classifier: crops found by the finder in rendered scenes, each labelled with the icon
  whose drawn box it overlaps most.

    python -m train style-classifier --out assets/evaluator/style-classifier
    python -m train icons-classifier --out assets/evaluator/icons-classifier
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.nn import functional as F

from pipeline.worlds.icons import judge as icons_judge
from pipeline.worlds.icons import scenes as icons_world
from pipeline.worlds.shapes import scenes as world
from pipeline.worlds.shapes.judge import StyleClassifier, to_tensor


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


def degrade_icons(image: Image.Image, rng: random.Random) -> Image.Image:
    """Mild blur and pixel noise, as a generator's pictures have."""
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.8)))
    px = np.asarray(image, np.float32) + np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(0, 8), (1,))
    return Image.fromarray(px.clip(0, 255).astype(np.uint8))


def labelled_crops(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` crops found by `blobs` in random rendered scenes (any split: the evaluator knows every icon), each
    labelled with the icon whose drawn box it overlaps most."""
    rng, index = random.Random(seed), {name: i for i, name in enumerate(icons_world.names())}
    crops, labels = [], []
    while len(crops) < n:
        scene = icons_world.sample_scene(rng)
        image, layout = icons_world.render_scene(scene, rng.getrandbits(31))
        image = degrade_icons(image, rng)
        for box in icons_judge.blobs(image)[1]:
            overlaps = [_overlap(box, drawn) for drawn in layout.boxes]
            best = int(np.argmax(overlaps))
            if overlaps[best] > 0.5:
                crops.append(icons_judge.crop(image, box))
                labels.append(index[scene.icons[best]])
    return icons_judge.to_tensor(crops[:n]), torch.tensor(labels[:n])


def _overlap(a, b) -> float:
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def train_icon_classifier(
    *, out: str, steps: int = 3000, batch: int = 128, pool: int = 60_000, seed: int = 0, log=print
) -> float:
    """Train on `pool` crops (refreshed by a quarter every 1,000 steps), save to `out`; returns the accuracy on
    fresh crops."""
    torch.manual_seed(seed)
    model = icons_judge.IconClassifier(names=tuple(icons_world.names()))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    x, y = labelled_crops(pool, seed)
    log(f"{pool} crops in {time.time() - t0:.0f}s")
    gen = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        xb = x[idx]
        if torch.rand(()) < 0.5:  # small colour shifts, as a generator's colours drift
            xb = (xb + 0.05 * torch.randn(batch, 3, 1, 1)).clamp(-1, 1)
        loss = F.cross_entropy(model.train()(xb), y[idx], label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0:
            fresh_x, fresh_y = labelled_crops(pool // 4, seed + step)
            x[: pool // 4], y[: pool // 4] = fresh_x, fresh_y
            log(f"step {step}: loss {loss.item():.3f} ({time.time() - t0:.0f}s)")
    test_x, test_y = labelled_crops(4000, seed + 10**6)
    with torch.inference_mode():
        accuracy = (model.eval()(test_x).argmax(-1) == test_y).float().mean().item()
    model.save_pretrained(out)
    log(f"accuracy on fresh crops {accuracy:.4f}; saved to {out}")
    return accuracy
