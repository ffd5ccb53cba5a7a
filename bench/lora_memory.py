"""Peak GPU memory of LoRA training on SD 1.5 and SDXL, counted without a GPU: the real UNet architectures
are built on PyTorch's meta device (shapes only, no memory, no arithmetic), one training forward pass runs
there, and every tensor autograd keeps for the backward pass is added up. Attention runs the memory-efficient
kernel a GPU would pick.

    python -m bench.lora_memory [--out bench/results/lora-memory.md]

Counted per configuration (train/hub_lora.py's recipe: bf16 base, fp32 rank-8 adapter on the attention
projections, AdamW, EMA of the adapter):
- base weights: the frozen UNet in bf16, plus the text encoders and VAE, which stay on the GPU in bf16 for
  the validation images;
- adapter state: its fp32 weights, gradients, two AdamW moments and the EMA copy (5 x 4 bytes per parameter);
- activations: the bytes autograd saves in the forward pass. With gradient checkpointing the UNet keeps only
  each block's input and recomputes one block at a time in the backward pass, so the peak is the saved
  tensors outside the blocks, plus the blocks' inputs, plus the largest single block's activations.
Not counted: the CUDA context and allocator slack (typically 0.5-1.5 GB), and temporaries inside kernels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
GB = 1024**3

# The UNets of stable-diffusion-v1-5 and stable-diffusion-xl-base-1.0 (their unet/config.json), and the
# frozen text encoders and VAE that share the GPU (parameter counts of the released checkpoints).
UNETS = {
    "SD 1.5": dict(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ),
    "SDXL": dict(
        sample_size=128,
        cross_attention_dim=2048,
        attention_head_dim=(5, 10, 20),
        block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    ),
}
OTHER_PARAMS = {"SD 1.5": 123e6 + 84e6, "SDXL": 123e6 + 695e6 + 84e6}  # text encoder(s) + VAE
TEXT = {"SD 1.5": (77, 768), "SDXL": (77, 2048)}  # prompt states: tokens, width


class EfficientAttention:
    """A diffusers attention processor that calls the memory-efficient SDPA kernel a GPU would pick (it saves
    O(tokens) for the backward pass, not the attention matrix): on the meta device SDPA only has its math path."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        b, context = hidden_states.shape[0], hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        q, k, v = (x.view(b, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2) for x in (q, k, v))
        out = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True)[0]  # (B, heads, N, d)
        return attn.to_out[1](attn.to_out[0](out.transpose(1, 2).flatten(2)))


def measure(name: str, batch: int, checkpointing: bool) -> dict[str, float]:
    """Bytes of base weights, adapter state and activations for one training step of `name`'s UNet."""
    from diffusers import UNet2DConditionModel
    from diffusers.training_utils import cast_training_params

    from train.lora import add_lora

    with torch.device("meta"):
        unet = UNet2DConditionModel(**UNETS[name]).to(torch.bfloat16)
        unet.set_attn_processor(EfficientAttention())
        add_lora(unet, rank=8)
    cast_training_params(unet, dtype=torch.float32)
    unet.train()
    frozen = sum(p.numel() * p.element_size() for p in unet.parameters() if not p.requires_grad)
    adapter = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    saved, inputs, per_block = [0], [0], []

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    def before(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        inputs[0] += hidden.numel() * hidden.element_size()
        module._saved_before = saved[0]

    handles = [b.register_forward_pre_hook(before, with_kwargs=True) for b in blocks]
    handles += [b.register_forward_hook(lambda m, a, o: per_block.append(saved[0] - m._saved_before)) for b in blocks]
    size = UNETS[name]["sample_size"]
    with torch.device("meta"):
        z = torch.randn(batch, 4, size, size, dtype=torch.bfloat16)
        t = torch.randint(0, 1000, (batch,))
        states = torch.randn(batch, *TEXT[name], dtype=torch.bfloat16)
        extra = {}
        if name == "SDXL":
            extra["added_cond_kwargs"] = {
                "text_embeds": torch.randn(batch, 1280, dtype=torch.bfloat16),
                "time_ids": torch.randn(batch, 6, dtype=torch.bfloat16),
            }
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            unet(z, t, encoder_hidden_states=states, **extra)
    for h in handles:
        h.remove()
    outside = saved[0] - sum(per_block)
    activations = outside + inputs[0] + max(per_block) if checkpointing else saved[0]
    return {
        "base": frozen + OTHER_PARAMS[name] * 2,
        "adapter": adapter * 4 * 5,
        "activations": activations,
        "adapter_params": adapter,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "lora-memory.md"))
    args = parser.parse_args()
    rows = [
        "| model, resolution | batch | gradient checkpointing | base weights | adapter state | activations | "
        "estimated peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, resolution in (("SD 1.5", 512), ("SDXL", 1024)):
        for batch in (1, 2, 4) if name == "SDXL" else (4, 8, 16):
            for checkpointing in (False, True):
                m = measure(name, batch, checkpointing)
                peak = m["base"] + m["adapter"] + m["activations"]
                on = "on" if checkpointing else "off"
                rows.append(
                    f"| {name}, {resolution} px | {batch} | {on} | {m['base'] / GB:.1f} GB "
                    f"| {m['adapter'] / GB:.2f} GB ({m['adapter_params'] / 1e6:.1f}M params) "
                    f"| {m['activations'] / GB:.1f} GB | {peak / GB:.1f} GB |"
                )
                print(rows[-1], flush=True)
    Path(args.out).write_text("\n".join([__doc__.split("\n\n")[0], "", *rows, ""]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
