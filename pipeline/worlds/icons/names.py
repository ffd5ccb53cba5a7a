"""Which icon a word names, by what the language models know: a word the world has no name for ("puppy",
"automobile", "dragon") is matched to an icon, or to none.

    1. shortlist  the CANDIDATES icon names whose MiniLM states ("a NAME") are nearest the word's ("a WORD")
    2. ask        SmolLM2's log-likelihood of each name completing "Q: What is a WORD? A: A WORD is a kind of",
                  less the same name's likelihood after the empty word "thing" (its prior: names that are
                  likely after anything, "lollipop", stop coming up for everything)
    3. combine    that calibrated likelihood plus COSINE_WEIGHT times MiniLM's cosine; the best name is the
                  word's icon when its score reaches SURE, its nearest icon (drawn, and said) from CONFIDENT,
                  and below that the word is left out (and said)

SmolLM2 runs with its linear layers in int8 (dynamic quantization: the package ships it as a 4-bit GGUF
file, so int8 loses little) and every answer is cached per word. The constants were chosen on one half of the
icons' everyday names (assets/icons/icons.json "heldout") and of nouns the world lacks; `bench/icons_names.py`
measures both halves.
"""

from __future__ import annotations

import functools
import threading
import warnings

import torch

CANDIDATES = 6
COSINE_WEIGHT = 60.0
CONFIDENT = 36.0  # a lower best score: the world has no icon for the word
SURE = 50.0  # a lower one (but CONFIDENT or more): drawn as the nearest icon, and said
QUESTION = "Q: What is {a} {w}? A: {A} {w} is a kind of"
PRIOR_WORD = "thing"


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


class NameMatcher:
    """Words to icon names (see the module docstring). `name_vectors`: (N, D) unit MiniLM states of "a NAME",
    `embed`: words -> (n, D) unit states of "a WORD", both from the prompt encoder."""

    def __init__(self, names: list[str], name_vectors, embed, *, lm: str = "smollm2", quantize: bool = True):
        self.names, self.name_vectors, self.embed = names, name_vectors, embed
        self.lm_name, self.quantize = lm, quantize
        self._lm = None
        self._prior: dict[str, float] = {}
        self._cache: dict[str, list[tuple[str, float]]] = {}
        self._lock = threading.Lock()

    def _load(self):
        if self._lm is None:
            self._lm = _language_model(self.lm_name, self.quantize)
            tokenizer, _ = self._lm
            self._name_ids = {n: tokenizer(" " + n, add_special_tokens=False)["input_ids"] for n in self.names}
            self._prior = dict(zip(self.names, self._loglik(PRIOR_WORD, self.names)))
        return self._lm

    def load(self) -> None:
        with self._lock:
            self._load()

    @torch.inference_mode()
    def _loglik(self, word: str, names: list[str]) -> list[float]:
        """Summed log-probability of each name's tokens after the question about `word`, in one batch."""
        tokenizer, model = self._lm
        context = tokenizer(QUESTION.format(a=article(word), A=article(word).capitalize(), w=word))["input_ids"]
        # one row per name of several tokens (a single token's log-probability is read where the context ends)
        long = [n for n in names if len(self._name_ids[n]) > 1]
        rows = [context + self._name_ids[n] for n in long] or [context]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id or 0)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # right padding: the context sits at the same place in every row
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        states = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        end = len(context) - 1
        where = [(0, end, self._name_ids[n][0]) for n in names]  # each name's first token
        where += [(r, end + k, t) for r, n in enumerate(long) for k, t in enumerate(self._name_ids[n][1:], 1)]
        rows_, cols, tokens = (torch.tensor(x) for x in zip(*where))
        # the LM head runs on the scored positions alone
        logp = model.lm_head(states[rows_, cols]).float().log_softmax(-1)[torch.arange(len(tokens)), tokens].tolist()
        out = dict(zip(names, logp[: len(names)]))
        for (r, _, _), value in zip(where[len(names) :], logp[len(names) :]):
            out[long[r]] += value
        return [out[n] for n in names]

    def scores(self, word: str) -> list[tuple[str, float]]:
        """The shortlisted names with their combined scores, best first; cached per word."""
        word = word.lower().strip()
        if word not in self._cache:
            sims = (self.embed([word]) @ self.name_vectors().T)[0]
            top = sims.topk(min(CANDIDATES, len(self.names)))
            shortlist = [self.names[int(i)] for i in top.indices]
            with self._lock:
                self._load()
                loglik = self._loglik(word, shortlist)
            scored = [
                (n, ll - self._prior[n] + COSINE_WEIGHT * float(s)) for n, ll, s in zip(shortlist, loglik, top.values)
            ]
            if len(self._cache) > 10_000:  # a stranger's stream of new words keeps memory bounded
                self._cache.clear()
            self._cache[word] = sorted(scored, key=lambda x: -x[1])
        return self._cache[word]

    def clear_cache(self) -> None:
        """Forget every word's answer (benchmarks time new words with it)."""
        self._cache.clear()

    def match(self, word: str) -> tuple[str | None, bool]:
        """The icon `word` names (None: none the models are confident of), and whether they are sure of it (not
        sure: it is the nearest icon, not the thing itself)."""
        name, score = self.scores(word)[0]
        return (name if score >= CONFIDENT else None), score >= SURE


@functools.lru_cache(maxsize=2)
def _language_model(name: str, quantize: bool):
    """SmolLM2 as a causal LM for scoring (fp32, linear layers int8 when `quantize`), loaded once per process."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.encoders import resolve

    source = resolve(name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, use_safetensors=True).eval()
    if quantize:
        with warnings.catch_warnings():  # torch.ao's dynamic quantization warns it will move to torchao
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return tokenizer, model.requires_grad_(False)
