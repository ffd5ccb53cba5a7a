"""Training an inpainting UNet for the embedded diffusion model (a Task for train/loop.py).

    python -m train inpaint --init assets/shapes-diffusion --out runs/inpaint --steps 3000

The text-to-image UNet is widened to also read the kept pixels and the mask (`diffusion.inpainting_unet`:
zero-initialised extra input channels, so training starts from the base model's drawing) and fine-tuned on
masked shapes-world scenes:

- most masks cover one object of a scene (its box grown by a few pixels), captioned as that object alone:
  "a red circle" in the scene's style, the way a user asks for what goes in the box;
- some are random rectangles captioned with the whole scene's caption;
- some cover the whole image, so a full mask still draws from text alone.

The loss is the base model's v-prediction, weighted toward the masked pixels. The run's export is a model
folder: the base (unet/, wordbrush.json) plus inpaint-unet/, which the pipeline uses for masked calls.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset

from pipeline import diffusion, images
from pipeline.encoders import PromptEncoder
from pipeline.images import to_pil
from pipeline.worlds.shapes import judge as evaluate
from pipeline.worlds.shapes import scenes as world
from train.diffusion import to_tensor
from train.loop import ALONE, Shard

FULL_MASKS = 0.10  # share of training masks that cover the whole image (text-to-image)
RANDOM_BOXES = 0.20  # share of random rectangles with the scene's caption; the rest cover one object
MASK_WEIGHT = 4.0  # extra loss weight of masked pixels (the kept ones are mostly copied)
EVAL_BOX = 14  # side of the evaluation's mask box (bench/edit_quality.py)


def object_mask(box, rng: random.Random, size: int = world.RESOLUTION) -> np.ndarray:
    """(H, W) bool: an object's box grown by 0-3 px on each side, clipped to the image."""
    x0, y0, x1, y1 = box
    grow = [rng.randint(0, 3) for _ in range(4)]
    left, top = max(0, int(x0) - grow[0]), max(0, int(y0) - grow[1])
    right, bottom = min(size, int(np.ceil(x1)) + grow[2]), min(size, int(np.ceil(y1)) + grow[3])
    mask = np.zeros((size, size), bool)
    mask[top:bottom, left:right] = True
    return mask


def random_box(rng: random.Random, size: int = world.RESOLUTION) -> np.ndarray:
    w, h = rng.randint(6, 24), rng.randint(6, 24)
    x, y = rng.randint(0, size - w), rng.randint(0, size - h)
    mask = np.zeros((size, size), bool)
    mask[y : y + h, x : x + w] = True
    return mask


def masked_example(rng: random.Random) -> tuple[Image.Image, np.ndarray, str]:
    """(image, mask, prompt) of one training example; the prompt says what the masked region shows."""
    ex = world.sample_example(rng)
    image, layout = world.render_scene(ex.scene, rng.getrandbits(31))
    r = rng.random()
    if r < FULL_MASKS:
        return image, np.ones((world.RESOLUTION, world.RESOLUTION), bool), ex.caption
    if r < FULL_MASKS + RANDOM_BOXES:
        return image, random_box(rng), ex.caption
    placed = rng.choice(layout.placed)
    alone = world.Scene("single", (placed.obj,), ex.scene.style)
    return image, object_mask(placed.box, rng), world.caption(alone, rng)


class MaskedBatches(IterableDataset):
    """Endless batches of (images in [-1, 1], masks (B, 1, H, W), prompts)."""

    def __init__(self, batch_size: int, seed: int | str):
        self.batch_size, self.seed = batch_size, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = random.Random(f"inpaint-{self.seed}-{info.id if info else 0}")
        while True:
            examples = [masked_example(rng) for _ in range(self.batch_size)]
            masks = torch.from_numpy(np.stack([m for _, m, _ in examples]).astype(np.float32))[:, None]
            yield to_tensor([im for im, _, _ in examples]), masks, [p for _, _, p in examples]


# ----------------------------------------------------------------------------------------------------
# The evaluation: a new object asked for in an empty box of a held-out scene (bench/edit_quality.py too)


@dataclass
class InpaintCase:
    image: Image.Image  # a held-out one-object scene
    mask: np.ndarray  # (32, 32) bool: a 14 px box
    box: tuple[int, int]  # the box's left, top
    want: world.Obj  # the object asked for
    prompt: str


def inpaint_cases(n: int, seed: int = 0, *, clear: bool = True) -> list[InpaintCase]:
    """n held-out one-object scenes, each with a 14 px box where a new object is asked for.
    clear: the box is background, 2 px clear of the object (the scene is drawn again until such a box
    exists). clear=False: the first version's cases, which tried 1000 random boxes and kept the last when
    none was clear: with objects of 12-18 px, 87 of the first 100 boxes cover part of the object."""
    rng = random.Random(seed)
    cases = []
    while len(cases) < n:
        scene = world.sample_split_scene(rng, split="heldout", kind="single", style="flat")
        image, layout = world.render_scene(scene, rng.getrandbits(31))
        obj = layout.placed[0].box
        if clear:
            boxes = [(bx, by) for bx in range(1, 18) for by in range(1, 18) if _clear_of(obj, bx, by)]
            if not boxes:
                continue
            bx, by = rng.choice(boxes)
        else:
            for _ in range(1000):
                bx, by = rng.randint(1, 17), rng.randint(1, 17)
                if _clear_of(obj, bx, by):
                    break
        mask = np.zeros((32, 32), bool)
        mask[by : by + EVAL_BOX, bx : bx + EVAL_BOX] = True
        want = world.Obj(rng.choice(list(world.COLORS)), rng.choice(world.SHAPES))
        cases.append(InpaintCase(image, mask, (bx, by), want, f"a {want.color} {want.shape}"))
    return cases


def _clear_of(obj_box, bx: int, by: int) -> bool:
    """Is the evaluation box at (bx, by) 2 px clear of the object's box?"""
    x0, y0, x1, y1 = obj_box
    return bx + EVAL_BOX + 2 <= x0 or x1 + 2 <= bx or by + EVAL_BOX + 2 <= y0 or y1 + 2 <= by


def object_present(case: InpaintCase, out: Image.Image) -> bool:
    """Is an object of the asked colour and shape found with its centre inside the box?"""
    bx, by = case.box
    found = [f for f in evaluate.find_objects(out) if (f.color, f.shape) == (case.want.color, case.want.shape)]
    return any(bx <= f.center[0] <= bx + EVAL_BOX and by <= f.center[1] <= by + EVAL_BOX for f in found)


class InpaintTask:
    def __init__(
        self,
        unet,
        cfg: diffusion.DiffusionConfig,
        encoder: PromptEncoder,
        *,
        base: Path,
        cond_dropout: float = 0.1,
        workers: int = 0,
        eval_n: int = 50,
        card: dict | None = None,
    ):
        self.unet, self.cfg, self.encoder, self.base = unet, cfg, encoder, Path(base)
        self.cond_dropout, self.workers = cond_dropout, workers
        self.eval_cases = inpaint_cases(eval_n)
        self.noise = diffusion.training_scheduler(cfg)
        self.uncond = encoder.encode([""])
        self.card = card or {}

    def trainable(self) -> torch.nn.Module:
        return self.unet

    def batches(self, start_step: int, batch_size: int, device: torch.device, shard: Shard = ALONE) -> Iterator:
        data = MaskedBatches(batch_size, seed=shard.seed(start_step))
        loader = DataLoader(data, batch_size=None, num_workers=self.workers, persistent_workers=self.workers > 0)
        for pixels, masks, prompts in loader:
            yield pixels.to(device), masks.to(device), prompts

    def loss(self, model, batch) -> torch.Tensor:
        """v-prediction MSE on masked scenes, the prompt dropped for `cond_dropout` of the batch."""
        x0, mask, prompts = batch
        device = x0.device
        prompts = ["" if random.random() < self.cond_dropout else p for p in prompts]
        cond = self.encoder.encode(prompts)
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.cfg.train_timesteps, (len(x0),), device=device)
        x_t = self.noise.add_noise(x0, noise, t)
        target = self.noise.get_velocity(x0, noise, t)
        inputs = diffusion.unet_inputs(self.unet, x_t, diffusion.inpaint_inputs(x0, mask))
        # The encoder answers with inference-mode tensors (cached across batches): copies enter autograd.
        states, pooled = cond.states.to(device, torch.float32).clone(), cond.pooled.to(device, torch.float32).clone()
        mask_t = cond.mask.to(device).clone()
        pred = diffusion.unet_outputs(
            self.unet, model(inputs, t, states, class_labels=pooled, encoder_attention_mask=mask_t).sample
        )
        weight = 1 + MASK_WEIGHT * mask
        return (weight * F.mse_loss(pred.float(), target.float(), reduction="none")).mean() / weight.mean()

    def evaluate(self, model) -> dict[str, float]:
        """Object present in the box (the edit benchmark's measure) on `eval_n` held-out scenes."""
        model.eval()
        hits = []
        for case in self.eval_cases:
            init = images.to_model(case.image, self.cfg.resolution)
            mask = images.mask_to_model(case.mask, self.cfg.resolution)
            x = diffusion.sample(
                model, self.cfg, self.encoder.encode([case.prompt]), self.uncond, seeds=[0], init=init, mask=mask
            )
            hits.append(object_present(case, to_pil(x)[0]))
        return {"inpaint_present": float(np.mean(hits))}

    def export(self, model, folder: Path, *, step: int, images_seen: int, seconds: float) -> None:
        """The base model folder with this run's inpainting UNet in inpaint-unet/ (and its card)."""
        folder = Path(folder)
        if not (folder / "wordbrush.json").exists():
            skip = shutil.ignore_patterns(diffusion.INPAINT_FOLDER)
            shutil.copytree(self.base, folder, dirs_exist_ok=True, ignore=skip)
        export_model = diffusion.UNet2DConditionModel.from_config(model.config)
        export_model.load_state_dict(model.state_dict())
        diffusion.save_unet(export_model, folder / diffusion.INPAINT_FOLDER)
        card = {**self.card, "step": step, "images_seen": images_seen, "train_minutes": round(seconds / 60, 1)}
        meta = diffusion.read_meta(folder)
        meta["inpaint_card"] = card
        (folder / "wordbrush.json").write_text(json.dumps(meta, indent=2) + "\n")
