"""What the worlds' trained prompt readers share: a frozen language model with a LoRA adapter on every linear layer,
and heads on its token states, saved as fp16 safetensors (peft's adapter file, the heads, a JSON config).

    model = with_lora(backbone("minilm")[1], rank=16)       # training (train/*understanding.py)
    save_tuned(model, heads, cfg, folder, config_name=...)  # the model folder the pipeline loads
    tokenizer, model, heads_state, cfg = load_tuned(folder, ...)  # LoRA merged into one plain fp32 model

The shapes reader (pipeline/worlds/shapes/reader.py) reads slots of a scene; the icons reader
(pipeline/worlds/icons/reader.py) tags words and reads the scene's frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def backbone(name: str):
    """A registry language model (pipeline/encoders.py) or a folder: (tokenizer, model), fp32, safetensors only."""
    from transformers import AutoModel, AutoTokenizer

    from pipeline.encoders import resolve

    source = resolve(name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModel.from_pretrained(source, dtype=torch.float32, use_safetensors=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def with_lora(model, rank: int):
    """The model with fresh LoRA layers of `rank` on every linear layer and no dropout (so a batch's loss depends
    on the step alone, and resuming is exact)."""
    from peft import LoraConfig, get_peft_model

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    targets = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, target_modules=targets))


def save_tuned(model, heads: torch.nn.Module, cfg: dict, folder: str | Path, *, config_name: str) -> None:
    """The LoRA adapter (peft's adapter_model.safetensors), the heads and the config, all fp16."""
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    adapter = folder / "adapter_model.safetensors"
    save_file({k: v.half().contiguous() for k, v in load_file(adapter).items()}, adapter)
    save_file({k: v.half().contiguous() for k, v in heads.state_dict().items()}, folder / "heads.safetensors")
    (folder / config_name).write_text(json.dumps(cfg, indent=2))


def load_tuned(folder: str | Path, *, config_name: str, train_command: str):
    """A trained reader's parts: (tokenizer, backbone with the LoRA merged in (fp32), the heads' state, config)."""
    from peft import PeftModel
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / config_name).is_file() or not (folder / "adapter_model.safetensors").is_file():
        raise ValueError(
            f"no prompt reader in {folder} ({config_name}, adapter_model.safetensors); train one with "
            f"`{train_command} --out {folder}`"
        )
    cfg = json.loads((folder / config_name).read_text())
    tokenizer, model = backbone(cfg["backbone"])
    model = PeftModel.from_pretrained(model, folder).merge_and_unload().float()
    heads = {k: v.float() for k, v in load_file(folder / "heads.safetensors").items()}
    return tokenizer, model.eval().requires_grad_(False), heads, cfg
