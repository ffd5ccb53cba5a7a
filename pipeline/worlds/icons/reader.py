"""The icons world's trained prompt reader: free phrasing in, the parts of a scene out.

People write "could you put a tiny kitten underneath a wooden table, against something teal?" where the world's
captions say "a small cat below a table on a light blue background". The reader is a language model (MiniLM with
a LoRA adapter, trained by `python -m train understanding --world icons` on train/icons_phrasing.py) with two
kinds of head:

    tags    one per word: O (filler), T1 (the first thing: a relation's subject), T2 (the second: its object),
            T3 (any further thing), BG (the background's colour words), HUE (a colour said of a thing)
    frame   one per prompt, by attention pooling: kind (none, things, relation), the relation, the count of the
            first and second thing (1, 2, 3, many) and a single thing's size

    reader = load_reader()
    reader.read(["two kittens, and to their left a red car"])
    # [Reading(kind='relation', things=(('car', 1), ('kittens', 2)), relation='left of', hues=('red',), ...)]

Which icon a thing's words name, and which background a colour's, is pipeline/worlds/icons/understand.py's to say.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.worlds.tuned import backbone, load_tuned, save_tuned, with_lora

READER_DIR = Path(__file__).resolve().parents[3] / "assets" / "icons-understanding"
CONFIG = "reader.json"

TAGS = ("O", "T1", "T2", "T3", "BG", "HUE")
FRAME: dict[str, tuple[str, ...]] = {
    "kind": ("none", "things", "relation"),  # none: not a scene (noise, chatter)
    "relation": ("left of", "right of", "above", "below"),  # kind relation: T1 is `relation` T2
    "count1": ("1", "2", "3", "many"),
    "count2": ("1", "2", "3", "many"),
    "size": ("none", "small", "big"),  # of a single thing
}
# The frame slots each kind answers; count2 is read when a second thing is tagged
KIND_SLOTS = {"none": ("kind",), "things": ("kind", "count1", "size"), "relation": ("kind", "relation", "count1")}

_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*|[^\w\s]", re.UNICODE)


def split_words(prompt: str) -> list[str]:
    """The words (and punctuation marks) the reader tags, as training writes them."""
    return _WORD.findall(prompt)


@dataclass(frozen=True)
class ReaderConfig:
    backbone: str = "minilm"  # an encoder registry name (pipeline/encoders.py) or a folder
    rank: int = 16  # LoRA rank on every linear layer
    max_words: int = 40  # longer prompts are not read (drawn as written)
    min_confidence: float = 0.5  # below this on any frame slot it answers, the prompt is drawn as written


@dataclass(frozen=True)
class Reading:
    """What a prompt asks for, in the prompt's own words."""

    kind: str  # "none", "things" or "relation"
    things: tuple[tuple[str, int], ...] = ()  # (words, count) per thing; count 4 stands for "many"
    relation: str | None = None  # kind relation: things[0] is `relation` things[1]
    size: str | None = None  # "small", "big" or None
    background: str | None = None  # the background's colour words
    hues: tuple[str, ...] = ()  # colours said of things
    confidence: float = field(default=1.0, compare=False)


class FrameHeads(torch.nn.Module):
    """A tag per token, and per frame slot attention pooling of the token states by a learnt query, then a linear
    classifier."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = torch.nn.LayerNorm(hidden)
        self.tagger = torch.nn.Linear(hidden, len(TAGS))
        self.queries = torch.nn.Parameter(torch.randn(len(FRAME), hidden) * hidden**-0.5)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(2 * hidden, len(v)) for v in FRAME.values())

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """states (B, T, D), mask (B, T) -> tag logits (B, T, n_tags), per frame slot logits (B, n_classes)."""
        h = self.norm(states)
        scores = torch.einsum("btd,sd->bst", h, self.queries).masked_fill(~mask.bool()[:, None, :], float("-inf"))
        pooled = torch.einsum("bst,btd->bsd", scores.softmax(-1), h)
        m = mask[..., None].to(h.dtype)
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
        return self.tagger(h), [head(torch.cat([pooled[:, i], mean], -1)) for i, head in enumerate(self.heads)]


class TagReader(torch.nn.Module):
    """A language model (LoRA-tuned) and its heads: prompts in, word tags and a frame out."""

    def __init__(self, tokenizer, model, heads: FrameHeads, cfg: ReaderConfig):
        super().__init__()
        self.tokenizer, self.model, self.heads, self.cfg = tokenizer, model, heads, cfg

    def tokenize(self, words: list[list[str]]):
        """Token ids of each prompt's words, lower-cased; `.word_ids(i)` maps tokens back to words."""
        return self.tokenizer(
            [[w.lower() for w in ws] for ws in words], is_split_into_words=True, padding=True, return_tensors="pt"
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        states = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.heads(states.float(), attention_mask)

    @torch.inference_mode()
    def read(self, prompts: list[str]) -> list[Reading]:
        """Each prompt's reading (kind "none" for one too long to read or with no words)."""
        words = [split_words(p.encode("utf-8", "ignore").decode()) for p in prompts]  # no lone surrogates
        todo = [i for i, w in enumerate(words) if 0 < len(w) <= self.cfg.max_words]
        out = [Reading("none", confidence=0.0) for _ in prompts]
        if not todo:
            return out
        batch = self.tokenize([words[i] for i in todo])
        tags, frame = self(batch["input_ids"], batch["attention_mask"])
        tag_ids = tags.argmax(-1)
        probs = [f.softmax(-1) for f in frame]
        for row, i in enumerate(todo):
            word_tags = ["O"] * len(words[i])
            for t, w in enumerate(batch.word_ids(row)):
                if w is not None and (t == 0 or batch.word_ids(row)[t - 1] != w):  # a word's first token
                    word_tags[w] = TAGS[int(tag_ids[row, t])]
            pick = {slot: FRAME[slot][int(p[row].argmax())] for slot, p in zip(FRAME, probs)}
            conf = {slot: float(p[row].max()) for slot, p in zip(FRAME, probs)}
            out[i] = decode(words[i], word_tags, pick, conf)
        return out


def spans(words: list[str], tags: list[str], tag: str) -> list[str]:
    """The runs of consecutive words tagged `tag`, each joined by spaces."""
    runs, current = [], []
    for w, t in zip([*words, ""], [*tags, "O"]):
        if t == tag:
            current.append(w.lower())
        elif current:
            runs.append(" ".join(current))
            current = []
    return runs


COUNT_OF = {"1": 1, "2": 2, "3": 3, "many": 4}


def decode(words: list[str], tags: list[str], pick: dict[str, str], conf: dict[str, float]) -> Reading:
    """A reading from word tags and frame picks. A thing tagged in pieces ("a big, fluffy dog": "big ... dog") is
    the first piece's words; every T3 run is one further thing."""
    kind = pick["kind"]
    first, second, more = spans(words, tags, "T1"), spans(words, tags, "T2"), spans(words, tags, "T3")
    if kind == "none" or not first:
        return Reading("none", confidence=conf["kind"])
    things = [(first[0], COUNT_OF[pick["count1"]])]
    slots = list(KIND_SLOTS[kind])
    if second:
        things.append((second[0], COUNT_OF[pick["count2"]]))
        slots.append("count2")
    things += [(t, 1) for t in more]
    if kind == "relation" and len(things) < 2:
        kind, slots = "things", list(KIND_SLOTS["things"])
    if len(things) > 1 and "size" in slots:
        slots.remove("size")
    background = spans(words, tags, "BG")
    return Reading(
        kind,
        tuple(things),
        pick["relation"] if kind == "relation" else None,
        None if "size" not in slots or pick["size"] == "none" else pick["size"],
        " ".join(background) if background else None,
        tuple(spans(words, tags, "HUE")),
        min(conf[s] for s in slots),
    )


def new_reader(cfg: ReaderConfig = ReaderConfig(), *, device: str = "cpu") -> TagReader:
    """An untrained reader: the backbone with fresh LoRA layers and heads (training)."""
    tokenizer, model = backbone(cfg.backbone)
    model = with_lora(model, cfg.rank)
    return TagReader(tokenizer, model, FrameHeads(model.config.hidden_size), cfg).to(device)


def save_reader(reader: TagReader, folder: str | Path) -> None:
    save_tuned(reader.model, reader.heads, dataclasses.asdict(reader.cfg), folder, config_name=CONFIG)


def load_reader(folder: str | Path = READER_DIR, *, device: str = "cpu") -> TagReader:
    """A trained reader: its backbone with the LoRA merged in (one plain fp32 model) and its heads."""
    command = "python -m train understanding --world icons"
    tokenizer, model, state, cfg = load_tuned(folder, config_name=CONFIG, train_command=command)
    heads = FrameHeads(model.config.hidden_size)
    heads.load_state_dict(state)
    return TagReader(tokenizer, model, heads, ReaderConfig(**cfg)).eval().requires_grad_(False).to(device)


@functools.lru_cache(maxsize=2)
def shared_reader(folder: str, device: str = "cpu") -> TagReader:
    """`load_reader`, once per process for each folder and device."""
    return load_reader(folder, device=device)
