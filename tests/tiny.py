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


def make_tiny_icons(folder: Path, *, seed: int = 0) -> Path:
    """An icons model of the icons-tiny shape (no attention, the layout map) with random weights."""
    import dataclasses

    from pipeline.worlds.icons.layout import LayoutEncoder

    torch.manual_seed(seed)
    cfg = dataclasses.replace(diffusion.SIZES["icons-tiny"], cond_dim=384)
    layout = LayoutEncoder(cfg.cond_dim)
    torch.nn.init.normal_(layout.center)  # a centre as training sets one
    diffusion.save(folder, diffusion.build_unet(cfg), cfg, encoder="minilm", card={}, layout_encoder=layout)
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
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4,
        sample_size=32,
    )
    cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipe = cls(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def _tiny_clip(tokenizer, *, hidden: int, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _tiny_vae(blocks: int = 2):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8,) * blocks,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        norm_num_groups=4,
        sample_size=32,
    )


def _bert_tokenizer():
    """The offline MiniLM's WordPiece tokenizer: stands in for T5's and Gemma's, which only the hub has."""
    from transformers import AutoTokenizer

    from pipeline.encoders import resolve

    return AutoTokenizer.from_pretrained(resolve("minilm"))


def make_tiny_sdxl(folder: Path, *, seed: int = 0) -> Path:
    """An SDXL pipeline (two CLIP text encoders, a size-conditioned UNet) with tiny random weights, 32 px."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    torch.manual_seed(seed)
    vocab, merges = byte_clip_tokenizer_files(folder.parent / f"{folder.name}-vocab")
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=4,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=16 + 6 * 8,
    )  # cross-attention reads both encoders' states side by side (16 + 16); the pooled 16 + 6 sizes
    pipe = StableDiffusionXLPipeline(
        vae=_tiny_vae(),
        text_encoder=_tiny_clip(tokenizer, hidden=16),
        tokenizer=tokenizer,
        text_encoder_2=_tiny_clip(tokenizer, hidden=16, projection=True),
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(steps_offset=1),
    )
    pipe.save_pretrained(folder)
    return folder


def make_tiny_pixart(folder: Path, *, seed: int = 0, transformer_only: Path | None = None) -> Path:
    """A PixArt-Sigma pipeline (a T5-style encoder, a DiT, a VAE) with tiny random weights, 32 px.
    transformer_only: also save a second DiT alone in that folder's transformer/, the way the hub's
    PixArt-Sigma-XL-2-512-MS repository holds only its transformer."""
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer = _bert_tokenizer()
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=16,
            d_ff=32,
            d_kv=8,
            num_layers=2,
            num_heads=2,
            pad_token_id=tokenizer.pad_token_id,
        )
    )

    def dit():
        return PixArtTransformer2DModel(
            sample_size=16,
            num_layers=2,
            patch_size=2,
            attention_head_dim=4,
            num_attention_heads=2,
            caption_channels=16,
            in_channels=4,
            cross_attention_dim=8,
            out_channels=8,
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
        )

    pipe = PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=_tiny_vae(),
        transformer=dit(),
        scheduler=DPMSolverMultistepScheduler(),
    )
    pipe.save_pretrained(folder)
    if transformer_only is not None:
        torch.manual_seed(seed + 1)
        dit().save_pretrained(transformer_only / "transformer")
    return folder


def make_tiny_sana(folder: Path, *, seed: int = 0) -> Path:
    """A Sana pipeline (a Gemma-2 decoder LM as text encoder, a linear DiT, a DC-AE) with tiny random weights."""
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(seed)
    tokenizer = _bert_tokenizer()
    text_encoder = Gemma2Model(
        Gemma2Config(
            head_dim=8,
            hidden_size=8,
            intermediate_size=16,
            max_position_embeddings=512,
            num_attention_heads=2,
            num_hidden_layers=1,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    transformer = SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=4,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=8,
        sample_size=16,
    )
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    pipe = SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    pipe.save_pretrained(folder)
    return folder


def make_tiny_lora(pipeline_folder: Path, out: Path, *, seed: int = 0) -> Path:
    """A LoRA for the denoiser of the pipeline saved in `pipeline_folder`, with random nonzero weights (it
    changes every image), in diffusers' format written by the pipeline's own `save_lora_weights`."""
    from diffusers import DiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    pipe = DiffusionPipeline.from_pretrained(pipeline_folder, use_safetensors=True)
    name = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
    denoiser = getattr(pipe, name)
    denoiser.add_adapter(LoraConfig(r=2, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v"]))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(denoiser))
    type(pipe).save_lora_weights(out, weight_name="lora.safetensors", **{f"{name}_lora_layers": layers})
    return out / "lora.safetensors"
