"""Tiny random models that tests build locally and load back through the real loading code."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline import diffusion, gan
from scripts.clip_vocab import byte_clip_tokenizer_files

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


def make_tiny_sd(folder: Path, *, seed: int = 0, inpainting: bool = False) -> Path:
    """A Stable Diffusion pipeline (CLIP text encoder, tokenizer, UNet, VAE, scheduler) with tiny random
    weights, saved with save_pretrained: 32 px images, loaded back as a hub id would be."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    vocab, merges = byte_clip_tokenizer_files(folder.parent / f"{folder.name}-vocab")
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
    )  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=9 if inpainting else 4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16, attention_head_dim=2,
        norm_num_groups=4,
    )  # fmt: skip
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4,
        sample_size=32,
    )  # fmt: skip
    cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipe = cls(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=EulerDiscreteScheduler(steps_offset=1), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(folder)
    return folder
