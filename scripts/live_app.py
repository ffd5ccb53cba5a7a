"""Start the real app (`python app.py`) in a subprocess on a free port, for live tests and benchmarks;
call it over gradio's plain HTTP API, as curl does."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppURL(str):
    """The app's URL, the server's process id (for memory checks) and its log file."""

    def __new__(cls, url: str, pid: int, log: Path | None = None):
        self = super().__new__(cls, url)
        self.pid, self.log = pid, log
        return self


@contextmanager
def running_app(model: str, *, extra: list[str] | None = None, timeout: float = 180, env: dict | None = None):
    """Yields the app's URL; the server is stopped afterwards. `env`: more environment variables for it."""
    port = free_port()
    data = tempfile.mkdtemp(prefix="wordbrush-test-data-")  # trained LoRAs and uploads: gone with the server
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "WORDBRUSH_DATA": data,
        **(env or {}),
    }
    cmd = [sys.executable, "app.py", "--model", model, "--port", str(port), *(extra or [])]
    # The server's log goes to a file: a pipe nobody reads fills up and then blocks the server mid-request.
    log = open(Path(data) / "server.log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    try:
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"app exited with {proc.returncode}:\n{log.read()[-5000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise TimeoutError(f"app did not answer on {url} within {timeout}s") from None
                time.sleep(0.5)
        yield AppURL(url, proc.pid, Path(log.name))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def call_http_api(url: str, api_name: str, data: list, *, http=None) -> tuple[list, list[bytes]]:
    """One request over gradio's HTTP API (what the README's curl lines do): POST the inputs, read the
    event stream to its end, fetch the output files. Returns (outputs, bytes of each gallery/image file)."""
    import httpx

    http = http or httpx.Client(timeout=120)
    body = json.dumps({"data": data})  # ASCII-escaped, as most JSON encoders send it (a lone surrogate too)
    headers = {"Content-Type": "application/json"}
    posted = http.post(f"{url}gradio_api/call/{api_name}", content=body, headers=headers)
    if posted.status_code != 200:  # refused at the door (pipeline/gate.py), before the queue
        raise RuntimeError(f"{api_name} refused ({posted.status_code}): {posted.text}")
    event = posted.json()["event_id"]
    kind, payload = None, None
    with http.stream("GET", f"{url}gradio_api/call/{api_name}/{event}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.removeprefix("event:").strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                payload = line.removeprefix("data:").strip()
                break
    if kind != "complete":
        raise RuntimeError(f"{api_name} failed: {payload}")
    outputs = json.loads(payload)
    files = []
    for out in outputs:
        items = out if isinstance(out, list) else [out]
        for item in items:
            ref = item.get("image", item) if isinstance(item, dict) else None
            if isinstance(ref, dict) and ref.get("url"):
                files.append(http.get(ref["url"]).content)
    return outputs, files


def join_queue(url: str, fn_index: int, data: list, *, timeout: float = 120) -> dict:
    """Call an event by its number, as a crafted POST to /gradio_api/queue/join does (any event the page has,
    named or not). Returns its answer less timings: {"success", "error", "data"}, or {"refused": status} when the
    queue turns it away, or {"timeout": fn_index} when no answer comes."""
    import httpx

    session = uuid.uuid4().hex
    body = json.dumps(
        {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    )
    with httpx.Client(timeout=timeout) as http:
        r = http.post(f"{url}gradio_api/queue/join", content=body, headers={"Content-Type": "application/json"})
        if r.status_code != 200:
            return {"refused": r.status_code}
        try:
            with http.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        msg = json.loads(line.removeprefix("data:"))
                        if msg.get("msg") == "process_completed":
                            output = msg.get("output") or {}
                            return {
                                "success": msg.get("success"),
                                "error": output.get("error"),
                                "data": output.get("data"),
                            }
        except httpx.ReadTimeout:
            pass
    return {"timeout": fn_index}


def resident_at_rest(pid: int) -> int:
    """The server's resident memory (bytes) once it is idle and has handed freed memory back to the system,
    which its runner does at most every `MainThreadRunner.TRIM_EVERY_S` seconds."""
    import psutil

    from pipeline.batcher import MainThreadRunner

    time.sleep(MainThreadRunner.TRIM_EVERY_S + 2)
    return psutil.Process(pid).memory_info().rss
