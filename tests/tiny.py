"""Tiny random models that tests build locally and load back through the real loading code."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline import diffusion, gan

TINY_DIFFUSION = diffusion.SIZES["tiny"]


def make_tiny_diffusion(folder: Path, *, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    unet = diffusion.build_unet(TINY_DIFFUSION)
    diffusion.save(folder, unet, TINY_DIFFUSION, encoder="minilm", card={"note": "random weights, for tests"})
    return folder


def make_tiny_gan(folder: Path, *, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = gan.build_gan(gan.GAN_SIZES["tiny"])
    gan.save(folder, model, encoder="minilm", card={"note": "random weights, for tests"})
    return folder
