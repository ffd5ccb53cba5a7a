"""Training the prompt reader (pipeline/worlds/shapes/reader.py) on free phrasing (train/phrasing.py): a Task for
train/loop.py, so it checkpoints, resumes and logs like every other model.

    python -m train understanding --out runs/understanding --steps 3000
    cp runs/understanding/model/* assets/understanding/     # what the pipeline loads

The language model's weights stay frozen; a LoRA adapter on its linear layers and the slot heads train.
Every batch is drawn fresh from the training words and templates, seeded by the step, so a resumed run
sees the same data as an unbroken one. Evaluation reads held-out words and templates (text only: the
exact scene, no images), the images' scores come from bench/free_phrasing.py.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.nn import functional as F

from pipeline.worlds.shapes.reader import SLOTS, ReaderConfig, SceneReader, new_reader, save_reader, target_labels
from train import phrasing
from train.loop import ALONE, Shard

# Splits of the text evaluation: (words, templates) of the prompts, scenes from held-out combinations.
EVAL_SPLITS = {
    "train phrasing": ("train", "train"),
    "held-out words": ("heldout", "train"),
    "held-out templates": ("train", "heldout"),
    "held-out both": ("heldout", "heldout"),
}


class UnderstandingTask:
    """The shapes reader's task; `train/icons_understanding.py` changes its reader, data, loss and card."""

    stream = ""  # the data stream's name in each batch's seed

    def __init__(
        self,
        cfg: ReaderConfig | None = None,
        *,
        other_share: float = 0.15,
        seed: int = 0,
        eval_size: int = 400,
        command: str = "python -m train understanding",
    ):
        with torch.random.fork_rng(devices=[]):  # the LoRA and heads start from the run's seed
            torch.manual_seed(seed)
            self.reader = self.new_reader(cfg)
        self.command = command  # recorded in the model card
        self.other_share, self.seed, self.eval_size = other_share, seed, eval_size

    def new_reader(self, cfg):
        return new_reader(cfg or ReaderConfig())

    def examples(self, rng: random.Random, n: int) -> list:
        return [phrasing.sample_phrased(rng, other_share=self.other_share) for _ in range(n)]

    def collate(self, examples: list, device) -> dict:
        return collate(self.reader, examples, device)

    def trainable(self):
        return self.reader

    def batches(self, start_step: int, batch_size: int, device: torch.device, shard: Shard = ALONE) -> Iterator[dict]:
        step = start_step
        while True:
            rng = random.Random(shard.seed(f"{self.stream}{self.seed}-{step}"))
            yield self.collate(self.examples(rng, batch_size), device)
            step += 1

    def loss(self, model: SceneReader, batch: dict) -> torch.Tensor:
        logits = model(batch["input_ids"], batch["attention_mask"])
        total = 0.0
        for (slot, _), slot_logits in zip(SLOTS.items(), logits):
            labels = batch["labels"][slot]
            if (labels >= 0).any():
                total = total + F.cross_entropy(slot_logits, labels, ignore_index=-1)
        return total

    def evaluate(self, model) -> dict[str, float]:
        return evaluate_text(model.eval(), n=self.eval_size)

    def save(self, model, folder: Path) -> None:
        save_reader(model, folder)

    def model_card(self, model, card: dict) -> str:
        return model_card(model, card)

    def export(self, model, folder: Path, *, step: int, images_seen: int, seconds: float) -> None:
        self.save(model, folder)
        card = {
            "step": step,
            "prompts_seen": images_seen,
            "train_minutes": round(seconds / 60, 1),
            "eval": self.evaluate(model),
            "command": self.command,
        }
        (folder / "training.json").write_text(json.dumps(card, indent=2))
        (folder / "README.md").write_text(self.model_card(model, card))


def model_card(reader: SceneReader, card: dict) -> str:
    """The reader's model card: what it is, how it was trained, what it scores."""
    rows = "\n".join(f"| {name} | {score:.3f} |" for name, score in card["eval"].items())
    return f"""# Wordbrush prompt reader (shapes world)

Reads free phrasing ("could you paint a crimson disc resting on top of a navy cube?") into the shapes
world's own caption ("a red circle above a blue square"), which the embedded generators were trained on.
Used by `pipeline/worlds/shapes/reader.py`; `python -m pipeline generate --no-understand` turns it off.

- Language model: `{reader.cfg.backbone}` (frozen), with a LoRA adapter of rank {reader.cfg.rank} on every
  linear layer (`adapter_model.safetensors`, fp16, loads with peft) and one attention-pooled classifier per
  scene slot (kind, count, colour and shape of each object, relation, style: `heads.safetensors`, fp16).
- Trained by `{card["command"]}` on free phrasings drawn fresh each step
  from the training words and sentence forms of `train/phrasing.py` (scenes from the training combinations; 15% of the
  prompts are outside the world: other things, other languages, emoji, noise, too many objects).
- Steps: {card["step"]:,}; prompts seen: {card["prompts_seen"]:,}; training time: {card["train_minutes"]} min on
  the CPU.

Exact-scene accuracy on held-out combinations, by split of words and sentence forms (text only; images:
`python -m bench.free_phrasing`):

| phrasing | exact scene |
|---|---:|
{rows}

Below {reader.cfg.min_confidence} probability on any slot it answers, the prompt is drawn as written.
"""


def collate(reader: SceneReader, examples: list[phrasing.Phrased], device) -> dict:
    """Token ids, mask and per-slot labels (-1 where the example's kind does not answer the slot)."""
    batch = reader.tokenize([e.prompt for e in examples])
    labels = {slot: torch.full((len(examples),), -1, dtype=torch.long) for slot in SLOTS}
    for i, e in enumerate(examples):
        for slot, value in target_labels(e.target).items():
            labels[slot][i] = value
    return {
        "input_ids": batch["input_ids"].to(device),
        "attention_mask": batch["attention_mask"].to(device),
        "labels": {k: v.to(device) for k, v in labels.items()},
    }


def eval_examples(words: str, templates: str, *, n: int, seed: int = 4321) -> list[phrasing.Phrased]:
    """A fixed set of `n` free-phrased prompts (a tenth outside the world) from the given splits."""
    rng = random.Random(f"{seed}-{words}-{templates}")
    return [
        phrasing.sample_phrased(rng, words=words, templates=templates, combos="heldout", other_share=0.1)
        for _ in range(n)
    ]


@torch.no_grad()
def evaluate_text(reader: SceneReader, *, n: int = 400) -> dict[str, float]:
    """Exact-scene accuracy of the reader's answers (kind none included) on each split of EVAL_SPLITS."""
    return split_scores(eval_examples, lambda prompts: [scene for scene, _ in reader.read(prompts)], n=n)


def split_scores(examples_of, answers_of, *, n: int) -> dict[str, float]:
    """Per split of EVAL_SPLITS: the share of `examples_of(words, templates, n=n)` whose target `answers_of`
    (prompts -> answers, 64 at a time) gives exactly."""
    scores = {}
    for name, (words, templates) in EVAL_SPLITS.items():
        examples = examples_of(words, templates, n=n)
        answers = [a for start in range(0, n, 64) for a in answers_of([e.prompt for e in examples[start : start + 64]])]
        scores[name] = sum(a == e.target for a, e in zip(answers, examples)) / n
    return scores
