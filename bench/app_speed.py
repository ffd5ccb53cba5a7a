"""What the app costs on top of the pipeline, and what batching concurrent requests buys, in one run.

    python bench/app_speed.py [--model shapes] [--repeats 10]

1. one request: the bare pipeline call against the same request through the live app (gradio_client);
2. eight concurrent requests through the app (batched by the app's queue) against the same eight
   requests sent one by one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gradio_client import Client  # noqa: E402

from pipeline import Wordbrush  # noqa: E402
from tests.server import running_app  # noqa: E402

PROMPT = "a red circle above a blue square"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=8)
    args = parser.parse_args()

    wb = Wordbrush.load(args.model, device="cpu")
    steps, guidance = wb.generator.default_steps, wb.generator.default_guidance
    wb.text_to_image(PROMPT, seed=0)  # warm-up
    bare = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        wb.text_to_image(PROMPT, seed=i, steps=steps, guidance=guidance)
        bare.append(time.perf_counter() - t0)
    del wb  # the server process holds its own copy; this one would only compete for memory

    with running_app(args.model) as url:
        client = Client(url, verbose=False)

        def ask(c: Client, seed: int) -> None:
            c.predict(PROMPT, "diffusion", steps, guidance, seed, False, 1, api_name="/text_to_image")

        ask(client, 0)  # warm-up
        app = []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            ask(client, i)
            app.append(time.perf_counter() - t0)

        n = args.concurrent
        clients = [Client(url, verbose=False) for _ in range(n)]
        t0 = time.perf_counter()
        for i, c in enumerate(clients):
            ask(c, 100 + i)
        one_by_one = time.perf_counter() - t0
        threads = [threading.Thread(target=ask, args=(c, 200 + i)) for i, c in enumerate(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        together = time.perf_counter() - t0

    b, a = statistics.median(bare), statistics.median(app)
    print(f"model {args.model}, {steps} steps, guidance {guidance}, CPU, medians of {args.repeats}\n")
    print("| measurement | seconds | ratio |")
    print("|---|---:|---:|")
    print(f"| one request, bare pipeline call | {b:.3f} | |")
    print(f"| one request through the app (gradio_client) | {a:.3f} | app adds {100 * (a / b - 1):.1f}% |")
    print(f"| {n} requests one by one through the app | {one_by_one:.2f} | |")
    print(
        f"| {n} concurrent requests through the app (batched) | {together:.2f} | {one_by_one / together:.2f}x faster |"
    )


if __name__ == "__main__":
    main()
