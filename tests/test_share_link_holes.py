"""The holes a hostile sweep of a running app found, each reproduced as it was sent: a visitor cancelling another's
training through a route with no session, unbounded prompts, a 1-bit PNG bomb, the Train tab's validation image
outside gradio's folders, the top seed with several images, REST routes skipping the queue, values of the wrong
type, the page's hidden events callable by name, a killed training lost, and tracebacks for refused requests."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from pipeline.protocol import MAX_SEED
from scripts.live_app import call_http_api, resident_at_rest, running_app
from tests.tiny import make_tiny_diffusion
from train import tab
from train.job import JOB_FILE, LoraJob

# Inputs of /text_to_image: prompt, generator, steps, guidance, seed, random seed, images, LoRA, LoRA scale,
# expand, layout, understand.
GOOD = ["a red circle", "diffusion", 2, 3.0, 0, False, 1, "none", 1.0, False, True, True]


def _refused(url, api_name, data, words) -> float:
    """Send a request that must be refused with `words` in its message; returns the seconds it took."""
    start = time.time()
    with pytest.raises(RuntimeError) as err:
        call_http_api(url, api_name, data)
    assert words in str(err.value), str(err.value)[:300]
    return time.time() - start


def _with(**changes) -> list:
    names = ["prompt", "generator", "steps", "guidance", "seed", "random", "images", "lora", "scale"]
    names += ["expand", "layout", "understand"]
    data = list(GOOD)
    for k, v in changes.items():
        data[names.index(k)] = v
    return data


def _bomb(path: Path) -> Path:
    """A 1-bit PNG of 13000 x 13000 pixels: about 20 KB on disk, 500 MB as RGB."""
    Image.new("1", (13000, 13000)).save(path, optimize=True)
    return path


@pytest.mark.slow
def test_a_live_app_closes_the_holes(tmp_path):
    model = make_tiny_diffusion(tmp_path / "model")
    with running_app(str(model)) as url, httpx.Client(timeout=60) as http:
        call_http_api(url, "text_to_image", GOOD)  # warm

        # 1 and 6: the REST routes (no session) join the queue like every call: refused outright
        for api in ("cancel_training", "text_to_image", "style_transfer"):
            r = http.post(f"{url}gradio_api/run/{api}", json={"data": []})
            assert r.status_code >= 400 and "queue" in r.text.lower(), (api, r.status_code, r.text[:200])

        # 2: a prompt is bounded, in characters, before any work
        assert _refused(url, "text_to_image", _with(prompt="a red circle " * 20_000), "at most 1,000") < 2
        assert _refused(url, "text_to_image", _with(prompt="x" * 2_000_000, images=16), "at most 1,000") < 2

        # 3: a 1-bit bomb is refused before it is decoded
        bomb = _bomb(tmp_path / "bomb.png")
        rss = resident_at_rest(url.pid)
        upload = http.post(f"{url}gradio_api/upload", files={"files": ("bomb.png", bomb.read_bytes(), "image/png")})
        ref = {"path": upload.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": "bomb.png"}
        style = [ref, "outline", "", 0.5, 0, False, True, "none", 1.0]
        assert _refused(url, "style_transfer", style, "4096x4096, the largest image accepted") < 2
        assert resident_at_rest(url.pid) - rss < 300 * 2**20

        # 5: the top seed with several images
        outputs, files = call_http_api(url, "text_to_image", _with(seed=MAX_SEED, images=2))
        assert len(files) == 2 and outputs[3] == MAX_SEED

        # 7: values of the wrong type are refused, not read as their opposite
        _refused(
            url,
            "text_to_image",
            _with(expand="no"),
            "(Expand the prompt with the language model) must be true or false",
        )
        _refused(url, "text_to_image", _with(layout="false"), "must be true or false, got str")
        _refused(url, "text_to_image", _with(random="yes"), "(Random seed) must be true or false")
        _refused(url, "text_to_image", _with(prompt=["a red circle"]), "(Prompt) must be text, got list")
        _refused(url, "text_to_image", _with(prompt={"a": 1}), "(Prompt) must be text, got dict")
        _refused(url, "text_to_image", _with(lora=["none"]), "must be text, got list")
        _refused(url, "text_to_image", [*GOOD, *GOOD[:8]], "takes 12 inputs, got 20")

        # 8: the page's own events are not callable by name
        for name in ("false", "false_1", "false_15", "live_preview"):
            r = http.post(f"{url}gradio_api/call/{name}", json={"data": GOOD[:1]})
            assert r.status_code >= 400, (name, r.status_code, r.text[:200])

        # 10: unknown routes and events get a message, not a bare error; no server path is echoed
        r = http.post(f"{url}gradio_api/call/no_such_endpoint", json={"data": []})
        assert r.status_code == 404 and "Internal Server Error" not in r.text
        r = http.post(f"{url}gradio_api/queue/join", json={"data": [], "fn_index": 999, "session_hash": "x"})
        assert r.status_code >= 400 and "Internal Server Error" not in r.text
        with pytest.raises(RuntimeError) as err:
            call_http_api(
                url, "style_transfer", [{"path": "assets/x.png", "meta": {"_type": "gradio.FileData"}}, *style[1:]]
            )
        assert str(Path.cwd()) not in str(err.value) and str(Path(__file__).parents[1]) not in str(err.value)

        # 10: a sweep of refused requests leaves (almost) no tracebacks in the server's log
        before = url.log.read_text().count("Traceback")
        for k in range(100):
            data = [_with(expand="no"), _with(prompt="x" * 5000), _with(steps=-3)][k % 3]
            with pytest.raises(RuntimeError):
                call_http_api(url, "text_to_image", data, http=http)
        assert url.log.read_text().count("Traceback") - before < 3


def test_only_the_session_that_started_a_training_cancels_it(tmp_path):
    job = LoraJob(model="unused", runs_dir=tmp_path)
    job.state.owner = "owner-session"
    for stranger in (None, "someone-else"):
        with pytest.raises(ValueError, match="only the visitor who started"):
            job.cancel(stranger)
    job.cancel("owner-session")
    assert job._cancel.is_set()
    start = tab.start_training_handler(job, tmp_path / "uploads")
    with pytest.raises(Exception, match="from the page"):  # a route with no session starts nothing
        start(None, True, "x", 4, 10, 1e-3, 2, "", request=None)


def test_the_validation_image_is_shown_from_a_folder_gradio_serves(tmp_path):
    job = LoraJob(model="unused", runs_dir=tmp_path / "runs")
    job.state.out = tmp_path / "runs" / "stars-abc123"
    sheet = job.state.out / "model" / "validation-000001.png"
    sheet.parent.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(sheet)
    shown = job.shown_validation()
    assert shown.is_file() and Path(tempfile.gettempdir()) in shown.parents
    assert job.shown_validation() == shown  # copied once
    Image.new("RGB", (8, 8)).save(sheet.with_name("validation-000002.png"))
    newer = job.shown_validation()
    assert newer != shown and not shown.exists() and newer.is_file()  # the older copy is gone


@pytest.mark.slow
def test_a_training_killed_with_the_app_resumes_when_it_restarts(tmp_path):
    from gradio_client import Client

    model, data = make_tiny_diffusion(tmp_path / "model"), tmp_path / "data"
    env = {"WORDBRUSH_DATA": str(data)}
    with running_app(str(model), env=env) as url:
        client = Client(url, verbose=False)
        assert "started" in client.predict(None, True, "stars", 4, 60, 1e-3, 2, "", api_name="/train_lora")
        runs = data / "loras"
        deadline = time.time() + 300
        while not any(runs.glob("*/checkpoint/state.pt")) and time.time() < deadline:
            time.sleep(0.5)
        os.kill(url.pid, signal.SIGKILL)
    (run,) = [p for p in runs.iterdir() if (p / JOB_FILE).is_file()]
    assert not (run / "model" / "lora.safetensors").exists()
    stale = data / "uploads" / "left-by-a-killed-request"
    stale.mkdir(parents=True)
    with running_app(str(model), env=env) as url:
        deadline = time.time() + 300
        while not (run / "model" / "lora.safetensors").exists() and time.time() < deadline:
            time.sleep(1)
        assert (run / "model" / "lora.safetensors").exists()  # resumed and finished
        assert not stale.exists()  # the uploads no training uses are gone
        time.sleep(2)
        settings = json.loads((run / JOB_FILE).read_text())
        assert not Path(settings["data"]).exists()  # and, the training done, its own


def test_the_gate_refuses_unknown_and_hidden_events_extra_inputs_and_server_paths(tmp_path):
    from pipeline.gate import Event, problem

    events = {0: Event("text_to_image", 12, True), 1: Event("false", 12, False), 2: Event("live_preview", 4, False)}
    folders = [tmp_path / "gradio"]
    upload = tmp_path / "gradio" / "abc" / "image.png"

    def check(path, payload):
        return problem(events, folders, path, json.dumps(payload).encode())

    assert check("/gradio_api/call/text_to_image", {"data": GOOD}) is None
    assert check("/gradio_api/call/text_to_image", {"data": GOOD[:3]}) is None  # the rest are optional
    assert check("/gradio_api/call/text_to_image", {"data": GOOD * 2}) == (400, "text_to_image takes 12 inputs, got 24")
    for hidden in ("false", "live_preview", "nothing"):
        status, message = check(f"/gradio_api/call/{hidden}", {"data": []})
        assert status == 404 and "text_to_image" in message
    assert check("/gradio_api/queue/join", {"data": [], "fn_index": 2, "session_hash": "s"}) is None  # the page's
    assert check("/gradio_api/queue/join", {"data": [], "fn_index": 99, "session_hash": "s"})[0] == 404
    assert check("/gradio_api/call/text_to_image", {"data": [{"path": str(upload)}]}) is None
    for path in ("/etc/passwd", "assets/x.png", str(tmp_path / "gradio" / ".." / "secret")):
        assert check("/gradio_api/call/text_to_image", {"data": [{"path": path}]})[0] == 400
    assert check("/gradio_api/upload", {}) is None  # other routes are gradio's own
    assert problem(events, folders, "/gradio_api/call/text_to_image", b"not json")[0] == 400
