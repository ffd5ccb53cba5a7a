"""Training the icons world's prompt reader (pipeline/worlds/icons/reader.py) on free phrasing
(train/icons_phrasing.py): a Task for train/loop.py, so it checkpoints, resumes and logs like every other model.

    python -m train understanding --world icons --out runs/icons-understanding --steps 3000
    cp runs/icons-understanding/model/* assets/icons-understanding/     # what the pipeline loads

The language model's weights stay frozen; a LoRA adapter on its linear layers, the word tagger and the frame
heads train. Every batch is drawn fresh from the training words and sentence forms, seeded by the step, so a
resumed run sees the same data as an unbroken one. Evaluation reads held-out words and forms (text only: the
exact reading, words of every thing and background included).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from torch.nn import functional as F

from pipeline.worlds.icons.reader import FRAME, ReaderConfig, TagReader, new_reader, save_reader
from train import icons_phrasing
from train.understanding import UnderstandingTask, split_scores


class IconsUnderstandingTask(UnderstandingTask):
    stream = "icons-"

    def __init__(self, cfg: ReaderConfig | None = None, *, seed: int = 0, eval_size: int = 400, command: str = ""):
        super().__init__(
            cfg, seed=seed, eval_size=eval_size, command=command or "python -m train understanding --world icons"
        )

    def new_reader(self, cfg):
        return new_reader(cfg or ReaderConfig())

    def examples(self, rng: random.Random, n: int) -> list[icons_phrasing.Phrased]:
        return [icons_phrasing.sample_phrased(rng) for _ in range(n)]

    def collate(self, examples: list, device) -> dict:
        return collate(self.reader, examples, device)

    def loss(self, model: TagReader, batch: dict) -> torch.Tensor:
        tags, frame = model(batch["input_ids"], batch["attention_mask"])
        total = F.cross_entropy(tags.flatten(0, 1), batch["tags"].flatten(), ignore_index=-100)
        for slot, logits in zip(FRAME, frame):
            labels = batch["frame"][slot]
            if (labels >= 0).any():
                total = total + F.cross_entropy(logits, labels, ignore_index=-1)
        return total

    def evaluate(self, model: TagReader) -> dict[str, float]:
        return evaluate_text(model.eval(), n=self.eval_size)

    def save(self, model: TagReader, folder: Path) -> None:
        save_reader(model, folder)

    def model_card(self, model: TagReader, card: dict) -> str:
        return model_card(model, card)


def model_card(reader: TagReader, card: dict) -> str:
    rows = "\n".join(f"| {name} | {score:.3f} |" for name, score in card["eval"].items())
    return f"""# Wordbrush prompt reader (icons world)

Reads free phrasing ("could you put a tiny kitten underneath a wooden table, against something teal?") into the
parts of an icons-world scene: a tag per word (each thing's words, the background's colour words, colours said of
things) and the frame (none / things / relation, the relation, the first two things' counts, a single thing's
size). Used by `pipeline/worlds/icons/understand.py`, which names each thing's icon and the background;
`python -m pipeline generate --no-understand` turns it off.

- Language model: `{reader.cfg.backbone}` (frozen), with a LoRA adapter of rank {reader.cfg.rank} on every
  linear layer (`adapter_model.safetensors`, fp16, loads with peft), a word tagger and attention-pooled frame
  heads (`heads.safetensors`, fp16).
- Trained by `{card["command"]}` on free phrasings drawn fresh each step from the training words and sentence
  forms of `train/icons_phrasing.py` (things from the world's names and from nouns it lacks; 5% of the prompts
  name no scene).
- Steps: {card["step"]:,}; prompts seen: {card["prompts_seen"]:,}; training time: {card["train_minutes"]} min on
  the CPU.

Exact readings (every tag and frame slot right) by split of the word lists and sentence forms:

| phrasing | exact reading |
|---|---:|
{rows}

Below {reader.cfg.min_confidence} probability on a frame slot it answers, the prompt is drawn as written.
"""


def collate(reader: TagReader, examples: list[icons_phrasing.Phrased], device) -> dict:
    """Token ids, mask, each word's tag at its first token (-100 elsewhere) and the frame labels (-1: not
    answered)."""
    batch = reader.tokenize([e.words for e in examples])
    tags = torch.full(batch["input_ids"].shape, -100, dtype=torch.long)
    for i, e in enumerate(examples):
        previous = None
        for t, w in enumerate(batch.word_ids(i)):
            if w is not None and w != previous:
                tags[i, t] = e.tags[w]
            previous = w
    frame = {slot: torch.full((len(examples),), -1, dtype=torch.long) for slot in FRAME}
    for i, e in enumerate(examples):
        for slot, value in e.frame.items():
            frame[slot][i] = value
    return {
        "input_ids": batch["input_ids"].to(device),
        "attention_mask": batch["attention_mask"].to(device),
        "tags": tags.to(device),
        "frame": {k: v.to(device) for k, v in frame.items()},
    }


def eval_examples(words: str, templates: str, *, n: int, seed: int = 4321) -> list[icons_phrasing.Phrased]:
    rng = random.Random(f"icons-{seed}-{words}-{templates}")
    return [icons_phrasing.sample_phrased(rng, words=words, templates=templates) for _ in range(n)]


@torch.no_grad()
def evaluate_text(reader: TagReader, *, n: int = 400) -> dict[str, float]:
    """Exact-reading accuracy on each split of EVAL_SPLITS."""
    return split_scores(eval_examples, reader.read, n=n)
