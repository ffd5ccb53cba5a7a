"""Prompt-encoder speed on this machine: load time (after first use) and 1,000 captions encoded.

python -m bench.encoders [--encoders minilm smollm2]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from pipeline.encoders import load_encoder
from pipeline.worlds.shapes import scenes as world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoders", nargs="+", default=["minilm", "smollm2"])
    parser.add_argument("--captions", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(0)
    captions = [world.sample_example(rng).caption for _ in range(args.captions)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(f"| encoder | load (cached) | encode {args.captions:,} captions | captions/s |")
    print("|---|---:|---:|---:|")
    for name in args.encoders:
        load_encoder(name)  # first use: converts/caches where needed
        t0 = time.perf_counter()
        enc = load_encoder(name)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(0, len(captions), args.batch):
            enc.encode(captions[i : i + args.batch])
        enc_s = time.perf_counter() - t0
        print(f"| {name} | {load_s:.2f} s | {enc_s:.2f} s | {len(captions) / enc_s:,.0f} |")


if __name__ == "__main__":
    main()
