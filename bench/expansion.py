"""Prompt expansion for real checkpoints: is it faithful? (pipeline/expand.py)

    python -m bench.expansion [--n 120] [--expander smollm2] [--out bench/results/expansion.md]

Over `n` varied prompts (everyday scenes, colours, counts, relations), with CLIP's tokenizer counting the
77-token limit: how often the expander produced an expansion (else the prompt is used as written), how often
its raw candidates pass the faithfulness check before any is chosen, and, over everything it returned, the
share that keeps every word of the prompt in order, contradicts nothing, ends its sentence, repeats no
phrase and fits 77 tokens. Determinism: the same prompts again, one by one and in another batch order.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from pipeline.expand import (
    clip_length,
    faithfulness_problems,
    finish,
    load_expander,
)

SCENES = (
    "a cat sleeping on a sofa",
    "a lighthouse on a cliff at dusk",
    "a bowl of ramen",
    "a red fox in fresh snow",
    "a child flying a kite on a beach",
    "a mountain lake at sunrise",
    "an old bicycle leaning against a wall",
    "a cup of coffee on a desk",
    "a sailboat on a calm sea",
    "a busy street market at night",
    "a castle on a hill",
    "a dog running through a field",
    "a library full of books",
    "a rainy city street",
    "a vase of sunflowers",
    "an astronaut on the moon",
    "a cabin in the woods",
    "a bakery window",
    "a train crossing a bridge",
    "a garden with a stone path",
)
THINGS = (
    "apple",
    "cat",
    "dog",
    "car",
    "balloon",
    "candle",
    "chair",
    "bird",
    "umbrella",
    "book",
    "cup",
    "flower",
    "boat",
    "house",
    "lamp",
    "hat",
    "kite",
    "bottle",
    "tree",
    "ball",
)
COLORS = ("red", "blue", "green", "yellow", "white", "black", "orange", "purple", "pink", "brown")
COUNTS = ("two", "three", "four", "five")
RELATIONS = ("to the left of", "to the right of", "above", "below", "on top of", "under", "next to", "behind")
PLACES = ("on a table", "in a field", "on a shelf", "in the snow", "on the grass", "")


def varied_prompts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(kind, prompt): everyday scenes, colour attributes, counts and relations, a quarter each."""
    rng = random.Random(seed)
    out = [("scene", s) for s in SCENES]
    while len(out) < n:
        kind = ("attribute", "count", "relation")[len(out) % 3]
        place = rng.choice(PLACES)
        if kind == "attribute":
            text = f"a {rng.choice(COLORS)} {rng.choice(THINGS)} {place}"
        elif kind == "count":
            text = f"{rng.choice(COUNTS)} {rng.choice(COLORS)} {rng.choice(THINGS)}s {place}"
        else:
            a, b = rng.sample(THINGS, 2)
            text = f"a {rng.choice(COLORS)} {a} {rng.choice(RELATIONS)} a {rng.choice(COLORS)} {b}"
        if (kind, text.strip()) not in out:
            out.append((kind, text.strip()))
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--expander", default="smollm2")
    parser.add_argument("--batch", type=int, default=8, help="prompts per expander call (each with its candidates)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="bench/results/expansion.md")
    args = parser.parse_args()
    expander = load_expander(args.expander, device=args.device)
    prompts = varied_prompts(args.n)
    texts = [p for _, p in prompts]

    t0 = time.perf_counter()
    found = []
    for start in range(0, len(texts), args.batch):
        chunk = texts[start : start + args.batch]
        found += expander.expand(chunk, seeds=[start + i for i in range(len(chunk))], length_fn=clip_length)
    seconds = time.perf_counter() - t0

    # The LM alone: one unchecked candidate per prompt, cut at the last whole clause.
    lm_alone = []
    for start in range(0, len(texts), args.batch):
        chunk = texts[start : start + args.batch]
        batch = expander.tokenizer([expander._chat(p) for p in chunk], padding=True, return_tensors="pt")
        out = expander.model.generate(
            **batch.to(expander.model.device),
            do_sample=False,
            max_new_tokens=32,
            pad_token_id=expander.tokenizer.pad_token_id,
        )
        additions = expander.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        lm_alone += [finish(p, a, clip_length, 77) for p, a in zip(chunk, additions)]
    raw_pass = sum(not faithfulness_problems(p, t, length_fn=clip_length) and t != p for p, t in zip(texts, lm_alone))
    raw_total = len(texts)

    checked = [faithfulness_problems(p, e.text, length_fn=clip_length) for p, e in zip(texts, found)]
    expanded = [e.expanded for e in found]
    by_kind: dict[str, list[int]] = {}
    for (kind, _), e, problems in zip(prompts, found, checked):
        by_kind.setdefault(kind, []).append((e.expanded, not problems))
    # Determinism: the first 20 again, one at a time, after emptying the cache.
    expander._cache.clear()
    again = [expander.expand([p], seeds=[i], length_fn=clip_length)[0].text for i, p in enumerate(texts[:20])]
    same = sum(a == e.text for a, e in zip(again, found[:20]))

    lines = [
        f"# Prompt expansion (`python -m bench.expansion --n {args.n}`), expander {args.expander}, CLIP tokens\n",
        f"- prompts: {len(texts)} ({', '.join(f'{k} {len(v)}' for k, v in by_kind.items())})",
        f"- expanded (a candidate passed the check): {sum(expanded)} of {len(texts)} "
        f"({statistics.mean(expanded):.2f}); the rest are drawn as written",
        f"- faithful, over everything returned: {sum(not c for c in checked)} of {len(texts)}",
        f"- longest: {max(clip_length(e.text) for e in found)} CLIP tokens (limit 77)",
        f"- the LM alone (greedy, one candidate, no check): {raw_pass} of {raw_total} faithful and longer",
        f"- deterministic: {same} of 20 the same when asked again one by one",
        f"- time: {seconds / len(texts):.2f} s per prompt on {args.device} ({expander.cfg.candidates} candidates,"
        f" batches of {args.batch})",
        "",
        "| kind | prompts | expanded | faithful |",
        "|---|---:|---:|---:|",
    ]
    for kind, rows in by_kind.items():
        lines.append(
            f"| {kind} | {len(rows)} | {statistics.mean(r[0] for r in rows):.2f} | "
            f"{statistics.mean(r[1] for r in rows):.2f} |"
        )
    lines += ["", "Examples:", ""]
    for (kind, p), e in list(zip(prompts, found))[:: max(1, len(found) // 12)]:
        lines.append(f"- {kind}: `{p}` -> `{e.text}`" + ("" if e.expanded else f" (as written: {e.problems[0]})"))
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
