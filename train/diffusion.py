"""Training the embedded diffusion model on the shapes world (a Task for train/loop.py).

    python -m train diffusion --out runs/diffusion --steps 20000

Efficiency: the captions of a fixed pool are encoded once (their language-model states cached in
memory); images are rendered fresh for every batch (a new layout each time, by worker processes on a
GPU host); the loss is v-prediction, which samples cleanly in few steps.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset

from pipeline import diffusion
from pipeline.encoders import EncodedPrompts, PromptEncoder
from pipeline.images import to_pil
from pipeline.worlds import world_named
from pipeline.worlds.icons import layout as icons_layout
from pipeline.worlds.shapes import scenes as world
from train import grounding as grounding_lib
from train.loop import ALONE, Shard


@dataclass
class CaptionPool:
    """Training examples with their prompts' states computed once: (N, T, D) states in fp16."""

    examples: list[world.Example]
    states: torch.Tensor  # (N, T, D) fp16
    mask: torch.Tensor  # (N, T)
    pooled: torch.Tensor  # (N, D) fp16
    uncond: EncodedPrompts  # the empty prompt, for classifier-free guidance
    world: str = "shapes"  # which world's scenes the examples are (pipeline.worlds.WORLDS)


def parse_kind_weights(spec: str | None) -> dict[str, float] | None:
    """ "relation=2,count=1.5" -> {"relation": 2.0, "count": 1.5}: how often each scene kind is drawn
    into the caption pool, against 1 for the kinds not named ("" or None: all alike). Both worlds have the
    same kinds (single, pair, relation, count)."""
    if not spec:
        return None
    weights = {}
    for part in spec.split(","):
        kind, _, value = part.partition("=")
        if kind.strip() not in world.KINDS or not value:
            raise ValueError(f"expected KIND=WEIGHT with KIND one of {', '.join(world.KINDS)}, got {part!r}")
        weights[kind.strip()] = float(value)
    return weights


def pool_examples(
    *, size: int, seed: int, kind_weights: dict[str, float] | None = None, world_name: str = "shapes"
) -> list:
    """The training examples of a run's caption pool, their scene kinds drawn by `kind_weights` (default:
    all alike): the same arguments give the same examples."""
    scenes = world_named(world_name).scenes
    rng = random.Random(seed)
    weights = [(kind_weights or {}).get(k, 1.0) for k in scenes.KINDS]
    kinds = rng.choices(scenes.KINDS, weights, k=size) if kind_weights else [None] * size
    return [scenes.sample_example(rng, kind=kind) for kind in kinds]


def build_pool(
    encoder: PromptEncoder,
    *,
    size: int,
    seed: int,
    kind_weights: dict[str, float] | None = None,
    chunk: int = 256,
    world_name: str = "shapes",
) -> CaptionPool:
    """`size` training examples (`pool_examples`) of a world with their captions' states."""
    examples = pool_examples(size=size, seed=seed, kind_weights=kind_weights, world_name=world_name)
    states, masks, pooled = [], [], []
    t0 = time.time()
    for i in range(0, size, chunk):
        out = encoder.encode([e.caption for e in examples[i : i + chunk]], cache=False)  # cached here instead
        states.append(out.states.half().cpu())
        masks.append(out.mask.cpu())
        pooled.append(out.pooled.half().cpu())
    t = max(s.shape[1] for s in states)
    states = torch.cat([F.pad(s, (0, 0, 0, t - s.shape[1])) for s in states])
    masks = torch.cat([F.pad(m, (0, t - m.shape[1])) for m in masks])
    print(f"encoded {size:,} captions with {encoder.name} in {time.time() - t0:.0f}s: states {tuple(states.shape)}")
    return CaptionPool(examples, states, masks, torch.cat(pooled), encoder.encode([""]), world_name)


class RenderedBatches(IterableDataset):
    """Endless batches of (pool indices, images in [-1, 1]), plus the objects' box masks
    (B, G, H, W) when `masks` is set (for train/grounding.py); each worker renders its own batches."""

    def __init__(
        self,
        examples: list,
        batch_size: int,
        seed: int | str,
        *,
        masks: bool = False,
        world_name: str = "shapes",
        boxes: bool = False,
    ):
        self.examples, self.batch_size, self.seed, self.masks = examples, batch_size, seed, masks
        self.world_name, self.boxes = world_name, boxes

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = random.Random(f"{self.seed}-{info.id if info else 0}")
        scenes = world_named(self.world_name).scenes  # the world's renderer
        while True:
            idx = [rng.randrange(len(self.examples)) for _ in range(self.batch_size)]
            drawn = [scenes.render_scene(self.examples[i].scene, rng.getrandbits(31)) for i in idx]
            batch = (torch.tensor(idx), to_tensor([image for image, _ in drawn]))
            if self.masks:
                shown = [self.examples[i].scene for i in idx]
                size = drawn[0][0].width
                batch += (torch.stack([grounding_lib.box_masks(s, lay, size) for s, (_, lay) in zip(shown, drawn)]),)
            if self.boxes:  # the icons layout stage's input: (B, MAX_ICONS, 4) boxes as drawn, zero-padded
                batch += (padded_boxes([lay for _, lay in drawn]),)
            yield batch


def padded_boxes(layouts: list) -> torch.Tensor:
    """(B, MAX_ICONS, 4) pixel boxes as the renderer drew them (`icons_layout.snapped`), zero rows after the last."""
    rows = [
        [icons_layout.snapped(b) for b in lay.boxes] + [(0, 0, 0, 0)] * (icons_layout.MAX_ICONS - len(lay.boxes))
        for lay in layouts
    ]
    return torch.tensor(rows, dtype=torch.float32)


def to_tensor(images: list) -> torch.Tensor:
    """RGB PIL images -> (B, 3, H, W) float in [-1, 1], the models' training range."""
    arr = np.stack([np.asarray(im, np.float32) for im in images]) / 127.5 - 1
    return torch.from_numpy(arr).permute(0, 3, 1, 2)


def rendered_batches(
    pool: CaptionPool,
    start_step: int,
    batch_size: int,
    device,
    *,
    workers: int,
    masks: bool = False,
    shard: Shard = ALONE,
    boxes: bool = False,
) -> Iterator:
    """(pool indices, images on `device`[, box masks][, boxes]) forever, rendered by `workers` processes (0: this
    one); each training process (`shard`) draws its own."""
    data = RenderedBatches(
        pool.examples, batch_size, seed=shard.seed(start_step), masks=masks, world_name=pool.world, boxes=boxes
    )
    loader = DataLoader(data, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    for idx, *tensors in loader:
        yield idx, *(t.to(device, non_blocking=True) for t in tensors)


class DiffusionTask:
    def __init__(
        self,
        unet,
        cfg: diffusion.DiffusionConfig,
        encoder: PromptEncoder,
        pool: CaptionPool,
        *,
        cond_dropout: float = 0.1,
        high_noise: float = 0.0,
        grounding: float = 0.0,
        workers: int = 0,
        eval_per_category: int = 20,
        eval_steps: int = 12,
        eval_guidance: float = 3.0,
        card: dict | None = None,
    ):
        self.unet, self.cfg, self.encoder, self.pool = unet, cfg, encoder, pool
        self.cond_dropout, self.workers = cond_dropout, workers
        self.high_noise = high_noise  # share of each batch at the noisiest levels (`timesteps`)
        self.grounding = grounding  # weight of train/grounding.py's attention loss (0: off)
        if grounding:
            self.recorder = grounding_lib.AttentionRecorder(unet)
            self.groups = grounding_lib.token_groups(encoder.tokenizer, pool.examples, pool.states.shape[1])
        self.evaluator = world_named(pool.world).judge
        self.eval_items = self.evaluator.eval_set("combos", per_category=eval_per_category)
        self.eval_steps, self.eval_guidance = eval_steps, eval_guidance
        self.noise = diffusion.training_scheduler(cfg)
        self.card = card or {}

    def trainable(self) -> torch.nn.Module:
        return self.unet

    def batches(self, start_step: int, batch_size: int, device: torch.device, shard: Shard = ALONE) -> Iterator:
        masks = self.grounding > 0
        return rendered_batches(
            self.pool, start_step, batch_size, device, workers=self.workers, masks=masks, shard=shard
        )

    def loss(self, model, batch) -> torch.Tensor:
        """v-prediction MSE (Salimans & Ho, 2022) with the prompt dropped for `cond_dropout` of the batch,
        plus `grounding` times the attention loss of train/grounding.py when that is on."""
        idx, x0, *boxes = batch
        device = x0.device
        states, mask, pooled, dropped = conditioning(self.pool, idx, device, self.cond_dropout)
        noise = torch.randn_like(x0)
        t = timesteps(len(idx), self.cfg.train_timesteps, self.high_noise, device)
        x_t = self.noise.add_noise(x0, noise, t)
        target = self.noise.get_velocity(x0, noise, t)
        with self.recorder.record() if self.grounding else nullcontext() as maps:
            pred = model(
                diffusion.unet_inputs(self.unet, x_t), t, states, class_labels=pooled, encoder_attention_mask=mask
            ).sample
            pred = diffusion.unet_outputs(self.unet, pred)
        if not self.grounding:
            return F.mse_loss(pred.float(), target.float())
        # Grounded: named objects of kept prompts, at the noise levels where the layout is decided. Below
        # LAYOUT_FROM the image shows where each object is, and forcing the words' attention into the boxes
        # there cost the denoiser (v-loss at t < 500: 0.012 -> 0.019 in 500 steps at weight 1).
        grounded = ~dropped & (t >= LAYOUT_FROM * self.cfg.train_timesteps)
        groups = self.groups[idx].to(device) * grounded[:, None, None]
        return F.mse_loss(pred.float(), target.float()) + self.grounding * grounding_lib.grounding_loss(
            maps, groups, boxes[0]
        )

    def evaluate(self, model) -> dict[str, float]:
        model.eval()
        uncond = self.pool.uncond

        def draw(cond, seeds):
            return diffusion.sample(
                model, self.cfg, cond, uncond, seeds=seeds, steps=self.eval_steps, guidance=self.eval_guidance
            )

        images = generate_for_items(self.encoder, self.eval_items, draw)
        return self.evaluator.score(self.eval_items, images)

    def export(self, model, folder: Path, *, step: int, images_seen: int, seconds: float) -> None:
        card = {**self.card, "step": step, "images_seen": images_seen, "train_minutes": round(seconds / 60, 1)}
        export_model = diffusion.build_unet(self.cfg)
        export_model.load_state_dict(model.state_dict())
        diffusion.save(folder, export_model, self.cfg, encoder=self.encoder.name, card=card)


LAYOUT_FROM = 0.8  # timesteps past this fraction of the schedule are where a 32 px layout is decided


def timesteps(n: int, total: int, high_noise: float, device) -> torch.Tensor:
    """n training timesteps: uniform, except that a `high_noise` share comes from the noisiest fifth.
    Why: at 32 px a 12 px object is still visible in the noise at a signal-to-noise ratio of ~0.002 per
    pixel (its ~430 values add up), which the cosine schedule reaches at t = 0.96 T. Where the
    objects go, and so which one is above the other, is decided in that last stretch; uniform sampling
    spends a tenth of the batch there, and the relation's direction stayed at chance after 304k images."""
    t = torch.randint(0, total, (n,), device=device)
    high = torch.rand(n, device=device) < high_noise
    t[high] = torch.randint(int(LAYOUT_FROM * total), total, (int(high.sum()),), device=device)
    return t


def conditioning(pool: CaptionPool, idx: torch.Tensor, device, dropout: float):
    """(states, mask, pooled, dropped) of pool entries `idx`, with the prompt replaced by the empty one
    for a `dropout` fraction (`dropped`, (B,) bool): classifier-free guidance learns the empty prompt as
    "unconditional"."""
    states = pool.states[idx].to(device, torch.float32)
    mask = pool.mask[idx].to(device)
    pooled = pool.pooled[idx].to(device, torch.float32)
    drop = torch.rand(len(idx), device=device) < dropout
    if drop.any():
        u = pool.uncond
        t_u = int(u.mask[0].sum())  # its real tokens (the encoder pads every prompt to one length)
        states[drop] = 0
        states[drop, :t_u] = u.states[0, :t_u].to(device, torch.float32)
        mask[drop] = 0
        mask[drop, :t_u] = 1
        pooled[drop] = u.pooled[0].to(device, torch.float32)
    return states, mask, pooled, drop


def generate_for_items(encoder: PromptEncoder, items: list, draw, *, batch: int = 64, prompts: list | None = None):
    """Images for evaluation items (their prompts and seeds), as PIL images at native resolution.
    draw(cond, seeds) -> (B, 3, H, W) in [0, 1] is the generator under evaluation. With `prompts` (the items'
    prompts as a prompt reader rewrote them) those are encoded instead and draw(cond, seeds, prompts) is called."""
    images = []
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        seeds = [it.seed for it in chunk]
        if prompts is None:
            images.extend(to_pil(draw(encoder.encode([it.prompt for it in chunk]), seeds)))
        else:
            texts = prompts[i : i + batch]
            images.extend(to_pil(draw(encoder.encode(texts), seeds, texts)))
    return images
