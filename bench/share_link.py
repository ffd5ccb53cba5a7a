"""A share link under strangers: the live app on the embedded default, measured against the bars of a public demo.

    python -m bench.share_link [--model shapes] [--out bench/results/share-link.md]

1. crowd:   20 clients x 5 requests, once clean and once with 10% poisoned requests mixed in; every good
            request must get its own image (its recipe's prompt and seed; a sample compared with the same
            request made alone); p50/p95 latency of the good requests, poisoned run against clean run.
2. swaps:   attempts to switch the model or probe server paths without the host's permission: every event
            gradio serves called through /gradio_api/queue/join with existing and missing paths, and file
            routes with paths outside the app; refused or answered alike, and the model never changes.
3. bad:     distinct bad inputs through the HTTP API, the CLI and the page (headless Chromium): each must
            get its own message; tracebacks and bare "Error" badges are counted.
4. memory:  the host loads models 20 times (a server started with --allow-model-load) and 500 requests are
            served; the server's RSS after all that against its RSS after the first 100 requests.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from pipeline.recipe import read_recipe
from scripts import browser
from scripts.live_app import call_http_api, join_queue, resident_at_rest, running_app

ROOT = Path(__file__).resolve().parent.parent
# /text_to_image inputs: prompt, generator, steps, guidance, seed, random, images, LoRA, scale, expand, layout,
# understand
GOOD = ["", "diffusion", 12, 3.0, 0, False, 1, "none", 1.0, False, True, True]
POISON = [{0: "a red \ud800 circle"}, {3: float("nan")}, {0: ""}, {4: 2.5}, {7: "nobody"}]


def t2i(prompt: str, seed: int, change: dict | None = None) -> list:
    data = list(GOOD)
    data[0], data[4] = prompt, seed
    for i, v in (change or {}).items():
        data[i] = v
    return data


def crowd(url: str, *, poisoned: bool, clients: int = 20, per_client: int = 5) -> dict:
    latencies, wrong, good, bad_messages, images = [], [], 0, 0, {}

    def client(c: int) -> None:
        nonlocal good, bad_messages
        with httpx.Client(timeout=600) as http:
            for k in range(per_client):
                n = c * per_client + k
                prompt, seed = f"a red circle above a blue square ({c}.{k})", 1000 + n
                poison = POISON[n // 10 % len(POISON)] if poisoned and n % 10 == 7 else None
                t0 = time.perf_counter()
                try:
                    outputs, files = call_http_api(url, "text_to_image", t2i(prompt, seed, poison), http=http)
                except RuntimeError as err:
                    if poison is None:
                        wrong.append(f"good request failed: {err}")
                    elif '"error": null' in str(err) or "Traceback" in str(err):
                        wrong.append(f"bad request without a message: {err}")
                    else:
                        bad_messages += 1
                    continue
                if poison is not None:
                    wrong.append(f"bad request {poison} succeeded")
                    continue
                latencies.append(time.perf_counter() - t0)
                recipe = read_recipe(Image.open(io.BytesIO(files[0])))
                if (recipe.prompt, recipe.seed) != (prompt, seed):
                    wrong.append(f"{prompt}/{seed} got {recipe.prompt}/{recipe.seed}")
                good += 1
                images[(prompt, seed)] = files[0]

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q = statistics.quantiles(latencies, n=20)
    return {
        "good": good,
        "bad_with_message": bad_messages,
        "wrong": wrong,
        "p50": statistics.median(latencies),
        "p95": q[18],
        "images": images,
    }


def same_alone(url: str, images: dict, n: int = 10) -> int:
    """Largest pixel difference between a crowd image and the same request made alone (n samples)."""
    worst = 0
    for (prompt, seed), png in list(images.items())[:n]:
        _, files = call_http_api(url, "text_to_image", t2i(prompt, seed))
        a = np.asarray(Image.open(io.BytesIO(png)), np.int16)
        b = np.asarray(Image.open(io.BytesIO(files[0])), np.int16)
        worst = max(worst, int(np.abs(a - b).max()))
    return worst


def swaps(url: str, model: str) -> dict:
    config = httpx.get(f"{url}config", timeout=30).json()
    pairs = [("/etc", "/no/such/folder"), ("assets/shapes-gan", "assets/no-such-model"), ("/root", "/nope")]
    attempts, leaks, changed = 0, 0, 0
    for fn_index in range(len(config["dependencies"])):
        for real_path, missing in pairs:
            a = json.dumps(join_queue(url, fn_index, [real_path])).replace(real_path, "PATH")
            b = json.dumps(join_queue(url, fn_index, [missing])).replace(missing, "PATH")
            attempts += 2
            leaks += a != b
    for path in ("/etc/passwd", "../../etc/passwd", str(ROOT / "app.py"), "/proc/self/environ"):
        for route in ("gradio_api/file=", "file="):
            attempts += 1
            r = httpx.get(f"{url}{route}{path}", timeout=30)
            leaks += r.status_code == 200
    outputs, _ = call_http_api(url, "text_to_image", t2i("a red circle", 0))
    changed += f"Model: {model}" not in outputs[2]
    return {
        "attempts": attempts,
        "answers_that_differ_or_serve_a_file": leaks,
        "model_changed": changed,
        "load_button_in_page": "Load model" in json.dumps(config),
    }


def api_bad_inputs(url: str, folder: Path) -> list[tuple[str, str]]:
    """(input, the message it got) through the HTTP API."""
    from gradio_client import Client, handle_file

    text = folder / "text.png"
    text.write_text("not an image")
    bomb = folder / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)
    small = folder / "small.png"
    Image.new("RGB", (32, 32), (90, 90, 90)).save(small)
    other = folder / "other.png"
    Image.new("RGBA", (16, 16)).save(other)
    cases = [
        ("lone surrogate", t2i("a red \ud800 circle", 0)),
        ("NaN guidance", t2i("a red circle", 0, {3: float("nan")})),
        ("empty prompt", t2i("", 0)),
        ("fractional seed", t2i("a red circle", 2.5)),
        ("negative seed", t2i("a red circle", -5)),
        ("unknown LoRA", t2i("a red circle", 0, {7: "nobody"})),
        ("LoRA scale 1e30", t2i("a red circle", 0, {8: 1e30})),
        ("steps 0", t2i("a red circle", 0, {2: 0})),
        ("steps NaN", t2i("a red circle", 0, {2: float("nan")})),
        ("images 99", t2i("a red circle", 0, {6: 99})),
        ("unknown generator", t2i("a red circle", 0, {1: "vae"})),
        ("too few inputs", ["a red circle"]),
    ]
    got = []
    for name, data in cases:
        try:
            call_http_api(url, "text_to_image", data)
            got.append((f"API {name}", "accepted"))
        except RuntimeError as err:
            got.append((f"API {name}", str(err)))
    client = Client(url, verbose=False)
    files = [
        (
            "style: not an image",
            lambda: client.predict(handle_file(str(text)), "outline", "", 0.6, 0, False, api_name="/style_transfer"),
        ),
        (
            "style: decompression bomb",
            lambda: client.predict(handle_file(str(bomb)), "outline", "", 0.6, 0, False, api_name="/style_transfer"),
        ),
        ("style: no image", lambda: client.predict(None, "outline", "", 0.6, 0, False, api_name="/style_transfer")),
        (
            "style: strength NaN",
            lambda: client.predict(
                handle_file(str(small)), "outline", "", float("nan"), 0, False, api_name="/style_transfer"
            ),
        ),
        (
            "inpaint: layer of another size",
            lambda: client.predict(
                {"background": handle_file(str(small)), "layers": [handle_file(str(other))], "composite": None},
                "a red circle",
                0,
                False,
                api_name="/inpaint",
            ),
        ),
        (
            "inpaint: non-image layer",
            lambda: client.predict(
                {"background": handle_file(str(small)), "layers": [handle_file(str(text))], "composite": None},
                "a red circle",
                0,
                False,
                api_name="/inpaint",
            ),
        ),
        (
            "train: NaN learning rate",
            lambda: client.predict(None, True, "x", 4, 30, float("nan"), 4, "", api_name="/train_lora"),
        ),
        ("train: no data", lambda: client.predict(None, False, "x", 4, 30, 1e-3, 4, "", api_name="/train_lora")),
    ]
    for name, call in files:
        try:
            call()
            got.append((f"API {name}", "accepted"))
        except Exception as err:  # noqa: BLE001 - the message is what is measured
            got.append((f"API {name}", str(err)))
    return got


def cli_bad_inputs(folder: Path) -> list[tuple[str, str]]:
    (folder / "latin1.txt").write_bytes("un cercle rouge \xe9\n".encode("latin-1"))
    (folder / "empty.txt").write_text("\n")
    (folder / "not-a-model").mkdir(exist_ok=True)
    (folder / "corrupt.safetensors").write_bytes(b"garbage")
    out = str(folder / "out.png")
    cases = [
        ("missing output folder", ["generate", "a red circle", "--out", str(folder / "nope" / "x.png")]),
        ("non-UTF-8 prompts file", ["generate", "--prompts", str(folder / "latin1.txt"), "--out-dir", str(folder)]),
        ("empty prompts file", ["generate", "--prompts", str(folder / "empty.txt"), "--out-dir", str(folder)]),
        ("missing prompts file", ["generate", "--prompts", str(folder / "none.txt"), "--out-dir", str(folder)]),
        (
            "folder that is not a model",
            ["generate", "a red circle", "--model", str(folder / "not-a-model"), "--out", out],
        ),
        ("corrupt LoRA", ["generate", "a red circle", "--lora", str(folder / "corrupt.safetensors"), "--out", out]),
        (
            "LoRA scale NaN",
            ["generate", "a red circle", "--lora", f"{folder / 'corrupt.safetensors'}:nan", "--out", out],
        ),
        (
            "decompression bomb",
            ["style", "--image", str(folder / "bomb.png"), "--prompt", "in outline style", "--out", out],
        ),
        ("non-image input", ["style", "--image", str(folder / "text.png"), "--prompt", "x", "--out", out]),
        ("steps 0", ["generate", "a red circle", "--steps", "0", "--out", out]),
    ]
    got = []
    for name, argv in cases:
        r = subprocess.run([sys.executable, "-m", "pipeline", *argv], cwd=ROOT, capture_output=True, text=True)
        lines = [x for x in r.stderr.splitlines() if x.startswith("error:") or "Traceback" in x]
        got.append((f"CLI {name}", f"exit {r.returncode}: " + " | ".join(lines)))
    return got


def page_bad_inputs(url: str, folder: Path) -> list[tuple[str, str]]:
    """Bad input in the page itself: the toast each one raises, read from headless Chromium."""
    got = []
    with browser.browser_page(url) as page:

        def toast() -> str:
            box = page.locator(".toast-body").last
            box.wait_for(timeout=60_000)
            text = box.inner_text()
            page.wait_for_timeout(300)
            for close in page.locator(".toast-close").all():
                close.click()
            return " ".join(text.split())

        page.get_by_role("tab", name="Text to image").click()
        page.get_by_label("Prompt", exact=True).fill("")
        page.get_by_role("button", name="Generate").click()
        got.append(("page: empty prompt", toast()))
        page.get_by_role("tab", name="Style transfer").click()
        page.get_by_role("button", name="Apply style").click()
        got.append(("page: style without an image", toast()))
        page.get_by_role("tab", name="Inpainting").click()
        page.get_by_role("button", name="Inpaint").click()
        got.append(("page: inpaint without an image", toast()))
        page.get_by_role("tab", name="Train").click()
        page.get_by_role("button", name="Train", exact=True).click()
        got.append(("page: train without data", toast()))
    return got


def memory(model: str) -> dict:
    with running_app(model, extra=["--allow-model-load"]) as url:
        config = httpx.get(f"{url}config", timeout=30).json()
        load = next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "load_model")

        def requests(n: int) -> None:
            def one(c: int) -> None:
                with httpx.Client(timeout=600) as http:
                    for k in range(n // 10):
                        call_http_api(url, "text_to_image", t2i(f"a red circle ({c}.{k})", c * 1000 + k), http=http)

            threads = [threading.Thread(target=one, args=(c,)) for c in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        requests(100)
        after_100 = resident_at_rest(url.pid)
        for i in range(20):  # the host switches models back and forth
            join_queue(url, load, ["assets/shapes-gan" if i % 2 == 0 else model])
        requests(400)
        end = resident_at_rest(url.pid)
    return {"after_100_mb": after_100 / 2**20, "after_20_loads_and_500_mb": end / 2**20, "ratio": end / after_100}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--out", default="bench/results/share-link.md")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="share-link-"))
    with running_app(args.model) as url:
        call_http_api(url, "text_to_image", t2i("a red circle", 0))  # warm
        clean = crowd(url, poisoned=False)
        poisoned = crowd(url, poisoned=True)
        worst = same_alone(url, poisoned["images"])
        swap = swaps(url, args.model)
        bad = api_bad_inputs(url, folder) + page_bad_inputs(url, folder)
    bad += cli_bad_inputs(folder)
    mem = memory(args.model)
    lines = [
        f"# Share link under strangers (`python -m bench.share_link --model {args.model}`)",
        "",
        "## 20 clients x 5 requests",
        "",
        "| run | good requests served right | bad requests with their message | p50 (s) | p95 (s) |",
        "|---|---:|---:|---:|---:|",
        f"| clean | {clean['good']}/100 | - | {clean['p50']:.2f} | {clean['p95']:.2f} |",
        f"| 10% poisoned | {poisoned['good']}/90 | {poisoned['bad_with_message']}/10 | {poisoned['p50']:.2f} | "
        f"{poisoned['p95']:.2f} |",
        "",
        f"p95 poisoned / clean: **{poisoned['p95'] / clean['p95']:.2f}x**. Wrong answers: "
        f"{len(clean['wrong']) + len(poisoned['wrong'])}. Largest pixel difference between a crowd image and the same "
        f"request made alone (10 samples): {worst} of 255.",
        "",
        "## Changing the model or probing paths without the host's permission",
        "",
        f"{swap['attempts']} attempts (every event through `/gradio_api/queue/join` with an existing and a missing "
        "path, and file routes outside the app): answers that differ between an existing and a missing path or "
        f"serve a file: **{swap['answers_that_differ_or_serve_a_file']}**; model changed: **{swap['model_changed']}**;"
        f" Load button in the page: {swap['load_button_in_page']}.",
        "",
        f"## {len(bad)} distinct bad inputs",
        "",
        "| input | what it got |",
        "|---|---|",
        *[f"| {name} | {answer[:160].replace('|', '/')} |" for name, answer in bad],
        "",
        f"Tracebacks: **{sum('Traceback' in a for _, a in bad)}**; bare errors (no message): "
        f"**{sum(a.strip() in ('', 'Error', 'exit 2: ') or 'error: null' in a for _, a in bad)}**; accepted: "
        f"{sum(a == 'accepted' for _, a in bad)}.",
        "",
        "## Memory",
        "",
        "Server RSS at rest (idle, freed memory handed back to the system) after the first 100 requests: "
        f"{mem['after_100_mb']:.0f} MB; after 20 model loads by the host and 500 requests: "
        f"{mem['after_20_loads_and_500_mb']:.0f} MB (**{mem['ratio']:.2f}x**).",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
