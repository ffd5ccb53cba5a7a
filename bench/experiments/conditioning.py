"""Which path carries the prompt into the diffusion UNet: the pooled vector or the per-token states?

    python -m bench.experiments.conditioning [--model shapes] [--per-category 30]

The UNet reads a prompt twice: its per-token states through cross-attention, and their mean (the pooled
vector) added to the time embedding. Each column samples the evaluator's held-out-combination prompts
with one path replaced by the empty prompt's, everything else (seeds, guidance) the same. A model that
draws from the pooled vector alone would fail the "no states" column only a little.
"""

from __future__ import annotations

import argparse

import torch

from pipeline import diffusion, presets
from pipeline.encoders import EncodedPrompts, load_encoder
from pipeline.images import to_pil
from pipeline.worlds.shapes import judge as evaluate

ABLATIONS = ("both", "no pooled vector", "no token states")


def ablated(cond: EncodedPrompts, empty: EncodedPrompts, ablation: str) -> EncodedPrompts:
    """`cond` with the pooled vector or the token states of the empty prompt instead of its own."""
    b = cond.states.shape[0]
    if ablation == "no pooled vector":
        return EncodedPrompts(cond.states, cond.mask, empty.pooled.expand(b, -1), cond.truncated)
    if ablation == "no token states":
        return EncodedPrompts(empty.states.expand(b, -1, -1), empty.mask.expand(b, -1), cond.pooled, cond.truncated)
    return cond


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes", help="preset or Wordbrush diffusion folder")
    parser.add_argument("--per-category", type=int, default=30)
    parser.add_argument("--batch", type=int, default=70)
    args = parser.parse_args()
    folder, _ = presets.resolve_model(args.model, "diffusion")
    unet, cfg, meta = diffusion.load(folder)
    encoder = load_encoder(meta["encoder"])
    empty = encoder.encode([""])
    items = evaluate.eval_set("combos", per_category=args.per_category)
    columns = {}
    for ablation in ABLATIONS:
        images = []
        for i in range(0, len(items), args.batch):
            chunk = items[i : i + args.batch]
            cond = ablated(encoder.encode([it.prompt for it in chunk]), empty, ablation)
            with torch.autocast("cpu", torch.bfloat16):
                x = diffusion.sample(unet, cfg, cond, empty, seeds=[it.seed for it in chunk])
            images += to_pil(x)
        columns[ablation] = evaluate.score(items, images)
    print(f"model {args.model}, {args.per_category} held-out-combination prompts a category, 12 steps, guidance 3\n")
    print(evaluate.format_table(columns))


if __name__ == "__main__":
    main()
