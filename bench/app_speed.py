"""What the app costs on top of the pipeline, and what batching concurrent requests buys, in one run.

    python -m bench.app_speed [--model shapes] [--generator diffusion] [--repeats 10] [--device auto]

1. one request: the bare pipeline call (in a process of its own) against the same request through the live app,
   over gradio's plain HTTP API (what curl and a browser's fetch do: POST, read the event stream, fetch
   the PNG) and through the `gradio_client` library (whose own client-side cost is counted too); the
   three take turns, so a drift in the machine's speed shows in all three alike;
2. eight concurrent requests through the app (batched by the app's queue) against the same eight
   requests sent one by one, over each of the two; and the ceiling of that ratio on this machine: the
   bare pipeline call, eight one by one against one batch of eight.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import threading
import time

import httpx
import torch
from gradio_client import Client

from pipeline import Wordbrush
from scripts.live_app import call_http_api, running_app

PROMPT = "a red circle above a blue square"


def _bare_worker(model: str, generator: str, device: str, conn) -> None:
    """A process of its own that runs the pipeline call alone, one seed per message (no client threads
    of this benchmark beside it)."""
    wb = Wordbrush.load(model, generator=generator, device=device)
    steps, guidance = wb.generator.default_steps, wb.generator.default_guidance
    conn.send((steps, guidance))
    while (seeds := conn.recv()) is not None:  # one batch
        wb.text_to_image([PROMPT] * len(seeds), seed=seeds, steps=steps, guidance=guidance)
        conn.send(True)


def bare_pipeline(model: str, generator: str, device: str):
    """(ask(seed or list of seeds) running the bare pipeline call in its own process, stop(), default steps,
    guidance)."""
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    worker = ctx.Process(target=_bare_worker, args=(model, generator, device, theirs), daemon=True)
    worker.start()
    steps, guidance = mine.recv()

    def ask(seed):
        mine.send(seed if isinstance(seed, list) else [seed])
        mine.recv()

    def stop():
        mine.send(None)
        worker.join(timeout=30)

    return ask, stop, steps, guidance


def timed(fn, seeds) -> list[float]:
    out = []
    for s in seeds:
        t0 = time.perf_counter()
        fn(s)
        out.append(time.perf_counter() - t0)
    return out


def together(askers, seeds) -> float:
    """Seconds until every asker has its answer, all sent at once (one thread each)."""
    threads = [threading.Thread(target=ask, args=(s,)) for ask, s in zip(askers, seeds)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--generator", default="diffusion", help="diffusion or gan (the embedded model's two)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto (cuda where there is one), cpu or cuda")
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    bare, stop_bare, steps, guidance = bare_pipeline(args.model, args.generator, device)
    n = args.concurrent

    with running_app(args.model, extra=["--device", device]) as url:

        def http_asker():
            session = httpx.Client(timeout=120)

            def ask(seed):
                inputs = [PROMPT, args.generator, steps, guidance, seed, False, 1, "none", 1.0, False, True, True]
                _, files = call_http_api(url, "text_to_image", inputs, http=session)
                assert len(files) == 1

            return ask

        def client_asker():
            client = Client(url, verbose=False)

            def ask(seed):
                client.predict(PROMPT, args.generator, steps, guidance, seed, False, 1, api_name="/text_to_image")

            return ask

        ways = {"bare pipeline call": bare, "plain HTTP (curl's way)": http_asker(), "gradio_client": client_asker()}
        one = {name: [] for name in ways}
        for ask in ways.values():
            ask(0)  # warm-up
        for i in range(1, args.repeats + 1):  # in turns
            for name, ask in ways.items():
                one[name] += timed(ask, [i])
        one = {name: statistics.median(t) for name, t in one.items()}
        # The ceiling batching can reach on this machine: the bare call, n one by one against one batch of n.
        bare([0] * n)  # warm-up at that batch size
        ceiling = (sum(timed(bare, range(100, 100 + n))), sum(timed(bare, [list(range(200, 200 + n))])))
        stop_bare()
        rows = {"bare pipeline call": ceiling}
        for name, make in [("plain HTTP (curl's way)", http_asker), ("gradio_client", client_asker)]:
            askers = [make() for _ in range(n)]
            for a in askers:
                a(0)  # each client's connection opened before the clock starts
            t0 = time.perf_counter()
            for i, ask in enumerate(askers):
                ask(100 + i)
            one_by_one = time.perf_counter() - t0
            rows[name] = (one_by_one, together(askers, range(200, 200 + n)))

    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"model {args.model}, {args.generator} generator, {steps} steps, guidance {guidance}, {where}, ", end="")
    print(f"medians of {args.repeats}\n")
    print("| measurement | seconds | ratio |")
    print("|---|---:|---:|")
    bare_s = one.pop("bare pipeline call")
    print(f"| one request, bare pipeline call | {bare_s:.3f} | |")
    for name, seconds in one.items():
        print(f"| one request through the app, {name} | {seconds:.3f} | app adds {100 * (seconds / bare_s - 1):.1f}% |")
    for name, (one_by_one, both) in rows.items():
        print(f"| {n} requests one by one, {name} | {one_by_one:.3f} | |")
        label = f"{n} concurrent requests (batched), {name}"
        if name == "bare pipeline call":  # the most batching can give on this machine
            label = f"the same {n} as one batch, bare pipeline call (the ceiling)"
        print(f"| {label} | {both:.3f} | {one_by_one / both:.2f}x faster |")


if __name__ == "__main__":
    main()
