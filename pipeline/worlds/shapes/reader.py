"""Prompt understanding: free phrasing in, the embedded world's own caption out, by a language model.

The embedded generators learnt the shapes world's own words ("a red circle above a blue square"). People
write "could you paint a crimson disc resting on top of a navy cube?". The prompt reader is a language model
(MiniLM with a LoRA adapter, trained by `python -m train understanding`) with one classifier per slot of the
scene (`SLOTS`); its answer is written back as the world's caption:

    1. as written   a prompt in the world's own vocabulary goes straight to the generator (no LM call)
    2. read         otherwise the reader answers each slot, all of a request's prompts in one batch
    3. check        kind "none", a confidence under `min_confidence` on any slot the kind answers, and a
                    prompt too long to read fall back to the prompt as written

    reader = load_reader()                         # assets/understanding
    reader.understand(["twin charcoal squares"])   # [Understood(text='two black squares', how='rewritten')]

The canonical grammar (`canonical`, `parse_canonical`) is the contract between the reader, the layout
stage and the evaluator: it is the subset of the world's caption language that names every attribute.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.layout import COLORS, SHAPES  # the embedded shapes world's vocabulary
from pipeline.worlds.base import Understood
from pipeline.worlds.shapes import judge
from pipeline.worlds.tuned import backbone, load_tuned, save_tuned, with_lora

# The rest of the world's caption language (pipeline/worlds/shapes/scenes.py; tests keep the two in step).
STYLES = ("outline", "striped", "soft")  # flat is the default and goes unsaid
RELATION_PHRASES = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
NUMBERS = ("two", "three", "four")

READER_DIR = Path(__file__).resolve().parents[3] / "assets" / "understanding"

# Words the training captions use (scenes.py TEMPLATES, STYLE_WORDS, numbers, relations): a
# prompt made only of these is already in the generator's language and skips the reader.
WORLD_WORDS = frozenset(
    """a an and as well both with together next to the left right of on top above over below beneath under
    underneath is there are picture image showing just single one in draw plain background exactly group
    all it two three four 2 3 4 flat style drawn outlined outline striped stripes soft edges blurry
    """.split()
    + list(COLORS)
    + list(SHAPES)
    + [s + "s" for s in SHAPES]
)
_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]", re.IGNORECASE)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def canonical(kind: str, objects: list[tuple[str, str]], *, relation: str | None = None, style: str = "flat") -> str:
    """The world's caption of a scene: kind "single", "pair", "relation" or "count" (objects repeated n times)."""
    suffix = "" if style == "flat" else f" in {style} style"
    a = f"{objects[0][0]} {objects[0][1]}"
    if kind == "single":
        return f"{article(a)} {a}{suffix}"
    if kind == "count":
        return f"{NUMBERS[len(objects) - 2]} {a}s{suffix}"
    b = f"{objects[1][0]} {objects[1][1]}"
    joint = "and" if kind == "pair" else RELATION_PHRASES[relation]
    return f"{article(a)} {a} {joint} {article(b)} {b}{suffix}"


_OBJ = rf"(?:a|an) ({'|'.join(COLORS)}) ({'|'.join(SHAPES)})"
_STYLE = rf"(?: in ({'|'.join(STYLES)}) style)?"
_CANONICAL = [
    ("count", re.compile(rf"({'|'.join(NUMBERS)}) ({'|'.join(COLORS)}) ({'|'.join(SHAPES)})s{_STYLE}")),
    ("single", re.compile(rf"{_OBJ}{_STYLE}")),
    ("pair", re.compile(rf"{_OBJ} (and|{'|'.join(RELATION_PHRASES.values())}) {_OBJ}{_STYLE}")),
]


@dataclass(frozen=True)
class Parsed:
    kind: str  # "single", "pair", "relation" or "count"
    objects: tuple[tuple[str, str], ...]  # (colour, shape) per object; a count repeats its object
    relation: str | None  # "left of", "right of", "above", "below" for kind "relation"
    style: str  # "flat", "outline", "striped" or "soft"


def parse_canonical(text: str) -> Parsed | None:
    """The scene a canonical caption names, or None when `text` is not one."""
    for kind, pattern in _CANONICAL:
        m = pattern.fullmatch(text)
        if m is None:
            continue
        g = m.groups()
        if kind == "count":
            return Parsed("count", ((g[1], g[2]),) * (NUMBERS.index(g[0]) + 2), None, g[3] or "flat")
        if kind == "single":
            return Parsed("single", ((g[0], g[1]),), None, g[2] or "flat")
        a, b = (g[0], g[1]), (g[3], g[4])
        if a == b:
            return None  # "a red circle and a red circle" is a count
        if g[2] == "and":
            return Parsed("pair", (a, b), None, g[5] or "flat")
        relation = next(key for key, phrase in RELATION_PHRASES.items() if phrase == g[2])
        return Parsed("relation", (a, b), relation, g[5] or "flat")
    return None


def in_world_words(prompt: str) -> bool:
    """Is every word of `prompt` one the world's captions use (case and punctuation aside)?"""
    words = [w.lower() for w in _WORD.findall(prompt) if w.isalnum()]
    return bool(words) and all(w in WORLD_WORDS for w in words)


# ----------------------------------------------------------------------------------------------------
# The scene reader: a language model with one classifier per slot of the scene


SLOTS: dict[str, tuple[str, ...]] = {
    "kind": ("none", "single", "pair", "relation", "count"),  # "none": not a scene of this world
    "count": ("2", "3", "4"),  # kind "count"
    "color_a": COLORS,  # the first object: a relation's subject
    "shape_a": SHAPES,
    "relation": tuple(RELATION_PHRASES),  # kind "relation": object a is `relation` object b
    "color_b": COLORS,  # the second object (pair, relation)
    "shape_b": SHAPES,
    "style": ("flat", *STYLES),
}
# The slots each kind answers (the rest are not read, and not trained, for it).
KIND_SLOTS: dict[str, tuple[str, ...]] = {
    "none": ("kind",),
    "single": ("kind", "color_a", "shape_a", "style"),
    "pair": ("kind", "color_a", "shape_a", "color_b", "shape_b", "style"),
    "relation": ("kind", "color_a", "shape_a", "relation", "color_b", "shape_b", "style"),
    "count": ("kind", "count", "color_a", "shape_a", "style"),
}


@dataclass(frozen=True)
class ReaderConfig:
    backbone: str = "minilm"  # the language model: an encoder registry name (pipeline/encoders.py) or folder
    rank: int = 16  # LoRA rank on every linear layer of the language model
    max_tokens: int = 64  # prompts are read up to this many tokens; longer ones are drawn as written
    min_confidence: float = 0.5  # below this probability on any slot it answers, the prompt is drawn as written


def target_labels(parsed: Parsed | None) -> dict[str, int]:
    """Slot -> class index for a parsed scene (None: kind "none"); only the slots its kind answers."""
    if parsed is None:
        return {"kind": 0}
    labels = {"kind": SLOTS["kind"].index(parsed.kind)}
    (ca, sa), (cb, sb) = parsed.objects[0], parsed.objects[-1]
    values = {
        "count": str(len(parsed.objects)),
        "color_a": ca,
        "shape_a": sa,
        "relation": parsed.relation,
        "color_b": cb,
        "shape_b": sb,
        "style": parsed.style,
    }
    for slot in KIND_SLOTS[parsed.kind][1:]:
        labels[slot] = SLOTS[slot].index(values[slot])
    return labels


class SlotHeads(torch.nn.Module):
    """Per slot: attention pooling of the token states by a learnt query, then a linear classifier."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = torch.nn.LayerNorm(hidden)
        self.queries = torch.nn.Parameter(torch.randn(len(SLOTS), hidden) * hidden**-0.5)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(2 * hidden, len(v)) for v in SLOTS.values())

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """states (B, T, D), mask (B, T) -> per slot logits (B, n_classes)."""
        h = self.norm(states)
        scores = torch.einsum("btd,sd->bst", h, self.queries)  # (B, S, T)
        scores = scores.masked_fill(~mask.bool()[:, None, :], float("-inf"))
        pooled = torch.einsum("bst,btd->bsd", scores.softmax(-1), h)  # (B, S, D)
        m = mask[..., None].to(h.dtype)
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1)  # (B, D)
        return [head(torch.cat([pooled[:, i], mean], -1)) for i, head in enumerate(self.heads)]


class SceneReader(torch.nn.Module):
    """A language model (LoRA-tuned) and slot heads: prompts in, per-slot logits out."""

    def __init__(self, tokenizer, model, heads: SlotHeads, cfg: ReaderConfig):
        super().__init__()
        self.tokenizer, self.model, self.heads, self.cfg = tokenizer, model, heads, cfg
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def tokenize(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.cfg.max_tokens, return_tensors="pt"
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        states = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.heads(states.float(), attention_mask)

    @torch.inference_mode()
    def read(self, prompts: list[str]) -> list[tuple[Parsed | None, float]]:
        """Each prompt's scene (None: not one of this world) and the reader's confidence in it."""
        batch = self.tokenize(prompts).to(next(self.parameters()).device)
        probs = [logits.softmax(-1) for logits in self(batch["input_ids"], batch["attention_mask"])]
        out = []
        for i in range(len(prompts)):
            pick = {slot: int(p[i].argmax()) for slot, p in zip(SLOTS, probs)}
            conf = {slot: float(p[i].max()) for slot, p in zip(SLOTS, probs)}
            kind = SLOTS["kind"][pick["kind"]]
            confidence = min(conf[s] for s in KIND_SLOTS[kind])
            out.append((_scene_of(kind, pick), confidence))
        return out

    def understand(self, prompts: list[str]) -> list[Understood]:
        """Each prompt as the generator should read it (see the module docstring's three steps)."""
        results: list[Understood | None] = [None] * len(prompts)
        todo = []
        for i, p in enumerate(prompts):
            if in_world_words(p):
                results[i] = Understood(p, p, "as written")
            elif len(self.tokenizer(p)["input_ids"]) > self.cfg.max_tokens:
                results[i] = Understood(p, p, "too long")
            else:
                todo.append(i)
        unique = list(dict.fromkeys(prompts[i] for i in todo))  # a batch of copies is read once
        answers = dict(zip(unique, self.read(unique))) if unique else {}
        for i in todo:
            p = prompts[i]
            scene, confidence = answers[p]
            if scene is None or confidence < self.cfg.min_confidence:
                results[i] = Understood(p, p, "not understood")
            else:
                text = canonical(scene.kind, list(scene.objects), relation=scene.relation, style=scene.style)
                results[i] = Understood(p, text, "rewritten")
        return results  # type: ignore[return-value]


def _scene_of(kind: str, pick: dict[str, int]) -> Parsed | None:
    if kind == "none":
        return None
    a = (COLORS[pick["color_a"]], SHAPES[pick["shape_a"]])
    b = (COLORS[pick["color_b"]], SHAPES[pick["shape_b"]])
    style = SLOTS["style"][pick["style"]]
    if kind == "single":
        return Parsed(kind, (a,), None, style)
    if kind == "count":
        return Parsed(kind, (a,) * int(SLOTS["count"][pick["count"]]), None, style)
    if a == b:  # two of the same object is a count of two
        return Parsed("count", (a, a), None, style)
    relation = SLOTS["relation"][pick["relation"]] if kind == "relation" else None
    return Parsed(kind, (a, b), relation, style)


def new_reader(cfg: ReaderConfig = ReaderConfig(), *, device: str = "cpu") -> SceneReader:
    """An untrained reader: the backbone language model with fresh LoRA layers and slot heads (training)."""
    tokenizer, model = backbone(cfg.backbone)
    model = with_lora(model, cfg.rank)
    return SceneReader(tokenizer, model, SlotHeads(model.config.hidden_size), cfg).to(device)


def save_reader(reader: SceneReader, folder: str | Path) -> None:
    """The LoRA adapter (peft's adapter_model.safetensors), the heads and the config, all fp16."""
    save_tuned(reader.model, reader.heads, dataclasses.asdict(reader.cfg), folder, config_name="reader.json")


def load_reader(folder: str | Path = READER_DIR, *, device: str = "cpu") -> SceneReader:
    """A trained reader: its backbone with the LoRA merged in (one plain model, fp32) and its heads."""
    tokenizer, model, state, cfg = load_tuned(
        folder, config_name="reader.json", train_command="python -m train understanding"
    )
    heads = SlotHeads(model.config.hidden_size)
    heads.load_state_dict(state)
    return SceneReader(tokenizer, model, heads, ReaderConfig(**cfg)).eval().requires_grad_(False).to(device)


@functools.lru_cache(maxsize=2)
def shared_reader(folder: str, device: str) -> SceneReader:
    """`load_reader`, once per process for each folder and device: a server that loads models again and again
    (each with its understanding stage) keeps one reader, not one copy per load."""
    return load_reader(folder, device=device)


def describe_image(image) -> str:
    """The canonical caption of a shapes-world picture, from the judge's scene parser (`judge.find_objects`):
    one object, two different ones with the relation along their main axis, or 2-4 alike; "" otherwise."""
    found = judge.find_objects(image)
    if not found or len(found) > 4:
        return ""
    objects = [(f.color, f.shape) for f in found]
    if len(found) == 1:
        return canonical("single", objects)
    if len(set(objects)) == 1:
        return canonical("count", objects)
    if len(found) != 2:
        return ""
    (ax, ay), (bx, by) = found[0].center, found[1].center
    if abs(bx - ax) >= abs(by - ay):
        relation = "left of" if ax < bx else "right of"
    else:
        relation = "above" if ay < by else "below"  # image y grows downwards
    return canonical("relation", objects, relation=relation)


def without_style(caption: str) -> str:
    """A canonical caption with its style phrase dropped (other text unchanged)."""
    parsed = parse_canonical(caption)
    if parsed is None:
        return caption
    return canonical(parsed.kind, list(parsed.objects), relation=parsed.relation)


class UnderstandingStage:
    """The reader as a pipeline stage: loaded once, in the background or on first use."""

    def __init__(self, folder: str | Path = READER_DIR, *, device: str = "cpu"):
        self.folder, self.device = Path(folder), device
        self._reader: SceneReader | None = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return (self.folder / "reader.json").is_file()

    @property
    def loaded(self) -> bool:
        return self._reader is not None

    def reader(self) -> SceneReader:
        with self._lock:
            if self._reader is None:
                self._reader = shared_reader(str(self.folder), self.device)
            return self._reader

    def load_in_background(self) -> threading.Thread:
        """Start loading now (the app does, so the first request does not wait for it)."""
        thread = threading.Thread(target=self.reader, name="load-reader", daemon=True)
        thread.start()
        return thread

    def names_content(self, prompt: str) -> bool:
        """Does `prompt` name something to draw (a shape of the world, or a scene the reader finds)?"""
        words = {w.lower() for w in _WORD.findall(prompt)}
        if words & (set(SHAPES) | {s + "s" for s in SHAPES}):
            return True
        if not self.available:
            return False
        reader = self.reader()
        scene, confidence = reader.read([prompt])[0]
        return scene is not None and confidence >= reader.cfg.min_confidence

    def apply(self, prompts: list[str], understand: bool) -> list[Understood]:
        if not understand:
            return [Understood(p, p, "off") for p in prompts]
        if all(in_world_words(p) for p in prompts):  # no need to wait for the language model
            return [Understood(p, p, "as written") for p in prompts]
        return self.reader().understand(prompts)
