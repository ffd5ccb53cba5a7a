"""The live app: gradio_client against each named endpoint, bad input, and concurrent users."""

import threading
import time

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from pipeline.recipe import read_recipe
from scripts.live_app import call_http_api, running_app
from tests.tiny import make_tiny_diffusion


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    folder = make_tiny_diffusion(tmp_path_factory.mktemp("tiny") / "model")
    with running_app(str(folder)) as u:
        yield u


@pytest.fixture(scope="module")
def client(url):
    return Client(url, verbose=False)


def _gallery_paths(gallery):
    return [item["image"] if isinstance(item["image"], str) else item["image"]["path"] for item in gallery]


def test_text_to_image_endpoint(client):
    gallery, seen, recipe, seed, *_ = client.predict(
        "a red circle above a blue square", "diffusion", 2, 3.0, 5, False, 2, api_name="/text_to_image"
    )
    paths = _gallery_paths(gallery)
    assert len(paths) == 2 and seed == 5 and "Seed: 5" in recipe and 'Layout: "red circle at' in recipe
    image = Image.open(paths[1])
    assert image.size == (32, 32) and read_recipe(image).seed == 6  # the download keeps its recipe
    assert read_recipe(image).layout.startswith("red circle at")  # the layout stage is on by default


def test_text_to_image_over_plain_http_as_curl_calls_it(url):
    import io

    # Plain HTTP takes every input (no defaults): ..., number of images, LoRA, LoRA scale, expand, layout,
    # understand.
    inputs = ["three green triangles", "diffusion", 2, 3.0, 9, False, 2, "none", 1.0, False, True, True]
    outputs, files = call_http_api(url, "text_to_image", inputs)
    assert outputs[3] == 9 and "Seed: 9" in outputs[2] and len(files) == 2
    image = Image.open(io.BytesIO(files[1]))
    assert image.size == (32, 32) and read_recipe(image).seed == 10  # the bytes keep their recipe
    with pytest.raises(RuntimeError, match="the prompt is empty"):
        call_http_api(url, "text_to_image", ["", *inputs[1:]])


def test_free_phrasing_is_understood_over_http_and_can_be_turned_off(url):
    import io

    inputs = [
        "please paint a scarlet disc sitting above a cobalt cube",
        "diffusion",
        2,
        3.0,
        1,
        False,
        1,
        "none",
        1.0,
        False,
        True,
        True,
    ]
    outputs, files = call_http_api(url, "text_to_image", inputs)
    assert outputs[1] == "understood as: a red circle above a blue square"
    recipe = read_recipe(Image.open(io.BytesIO(files[0])))
    assert recipe.understood == "rewritten" and recipe.layout.startswith("red circle at")
    outputs, files = call_http_api(url, "text_to_image", [*inputs[:-1], False])
    assert outputs[1].startswith("understanding off") and read_recipe(Image.open(io.BytesIO(files[0]))).layout is None


def test_a_deep_link_restores_what_the_session_typed(url):
    import httpx

    client = Client(url, verbose=False)
    client.predict("a violet hexagon left of a ring", "diffusion", 2, 3.0, 5, False, 1, api_name="/text_to_image")
    link = httpx.get(f"{url}gradio_api/deep_link", params={"session_hash": client.session_hash}).json()
    page = httpx.get(url, params={"deep_link": link}).text  # gradio's config for the page, from the session's
    assert '"deep_link_state":"valid"' in page and "a violet hexagon left of a ring" in page
    assert "a violet hexagon left of a ring" not in httpx.get(url).text


def test_style_transfer_endpoint(client, tmp_path):
    src = tmp_path / "in.png"
    Image.new("RGB", (60, 30), (30, 160, 40)).save(src)
    path, recipe = client.predict(
        handle_file(str(src)), "striped", "a green square", 0.6, 3, False, api_name="/style_transfer"
    )
    out = Image.open(path)
    assert out.size == (60, 30) and "in striped style" in recipe


def test_inpaint_endpoint(client, tmp_path):
    bg, layer = tmp_path / "bg.png", tmp_path / "layer.png"
    Image.new("RGB", (40, 40), (128, 128, 128)).save(bg)
    paint = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    paint.paste((255, 255, 255, 255), (10, 10, 30, 30))
    paint.save(layer)
    editor = {
        "background": handle_file(str(bg)),
        "layers": [handle_file(str(layer))],
        "composite": handle_file(str(bg)),
    }
    path, recipe = client.predict(editor, "a yellow triangle", 0, False, api_name="/inpaint")
    out = np.asarray(Image.open(path).convert("RGB"))
    outside = np.ones((40, 40), bool)
    outside[10:30, 10:30] = False
    assert np.all(out[outside] == 128)


def test_bad_input_gets_a_message_and_the_server_serves_on(client):
    with pytest.raises(Exception, match="prompt is empty"):
        client.predict("", "diffusion", 2, 3.0, 0, False, 1, api_name="/text_to_image")
    with pytest.raises(Exception, match="upload an image"):
        client.predict(None, "outline", "", 0.6, 0, False, api_name="/style_transfer")
    long_prompt = "a red circle " * 70  # 910 characters: cut at 64 tokens, said so in the result
    _, seen, *_ = client.predict(long_prompt, "diffusion", 1, 3.0, 0, False, 1, api_name="/text_to_image")
    assert len(seen) < 400
    with pytest.raises(Exception, match="at most 1,000 are accepted"):  # a longer one is refused at once
        client.predict("a red circle " * 800, "diffusion", 1, 3.0, 0, False, 1, api_name="/text_to_image")
    gallery, *_ = client.predict("a red circle", "diffusion", 1, 3.0, 0, False, 1, api_name="/text_to_image")
    assert len(gallery) == 1


def test_upload_over_the_size_limit_is_refused_and_no_outside_file_is_served(url, tmp_path):
    import httpx

    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(50 * 2**20))  # 50 MB
    with open(big, "rb") as f:  # straight at the server, past the client's own check
        r = httpx.post(url + "gradio_api/upload", files={"files": ("big.png", f, "image/png")}, timeout=60)
    assert r.status_code == 413 and "maximum allowed size" in r.text
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        Client(url, verbose=False).predict(handle_file(str(big)), "soft", "", 0.5, 0, False, api_name="/style_transfer")
    assert httpx.get(url + "gradio_api/file=/etc/passwd", timeout=10).status_code == 403
    gallery, *_ = Client(url, verbose=False).predict(
        "a red circle", "diffusion", 1, 3.0, 0, False, 1, api_name="/text_to_image"
    )
    assert len(gallery) == 1  # still serving


@pytest.mark.slow
def test_twenty_concurrent_users_each_get_their_own_images(url):
    users, per_user = 20, 5
    errors, checked = [], []

    def user(u):
        c = Client(url, verbose=False)
        for k in range(per_user):
            prompt, seed = f"user {u} request {k}", 1000 * u + k
            try:
                gallery, *_ = c.predict(prompt, "diffusion", 2, 3.0, seed, False, 1, api_name="/text_to_image")
                recipe = read_recipe(Image.open(_gallery_paths(gallery)[0]))
                checked.append((recipe.prompt, recipe.seed) == (prompt, seed))
            except Exception as err:  # noqa: BLE001 - every failure is counted
                errors.append(repr(err))

    threads = [threading.Thread(target=user, args=(u,)) for u in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors[:3]
    assert len(checked) == users * per_user and all(checked)


def test_the_main_thread_runner_runs_calls_on_the_serving_thread_and_passes_errors_back():
    from pipeline.batcher import MainThreadRunner

    runner = MainThreadRunner()
    server = threading.Thread(target=runner.serve_forever, daemon=True)
    server.start()
    assert runner.call(threading.current_thread) is server  # from this (another) thread, run over there

    def fail():
        raise ValueError("bad prompt")

    with pytest.raises(ValueError, match="bad prompt"):
        runner.call(fail)
    assert runner.call(lambda a, b=0: a + b, 2, b=3) == 5  # still serving after an error


def test_the_runner_hands_memory_back_once_idle_even_right_after_a_trim(monkeypatch):
    from pipeline import batcher

    trims = []
    monkeypatch.setattr(batcher, "release_memory", lambda: trims.append(time.monotonic()))
    runner = batcher.MainThreadRunner()
    runner.IDLE_S, runner.TRIM_EVERY_S = 0.05, 0.3
    threading.Thread(target=runner.serve_forever, daemon=True).start()
    time.sleep(0.2)
    assert trims == []  # nothing ran yet: nothing to hand back
    runner.call(lambda: None)
    time.sleep(0.5)
    assert len(trims) == 1  # idle after a call
    done = time.monotonic()
    runner.call(lambda: None)  # within TRIM_EVERY_S of that trim: the next one waits, and still comes
    time.sleep(0.6)
    assert len(trims) == 2 and trims[1] - trims[0] >= 0.3 - 0.01 and trims[1] > done
    time.sleep(0.5)
    assert len(trims) == 2  # idle and nothing ran since: no more trims


SPACES_STUB = '''"""A stand-in for Hugging Face's `spaces`: records when it is imported and where GPU calls run."""
import os
import sys
import threading

LOG = os.environ["SPACES_STUB_LOG"]
with open(LOG, "a") as f:
    f.write(f"imported; torch loaded before: {'torch' in sys.modules}\\n")


def GPU(fn=None, **kwargs):
    def wrap(f):
        def run(*args, **kw):
            with open(LOG, "a") as log:
                log.write(f"gpu call on {threading.current_thread().name}\\n")
            return f(*args, **kw)

        return run

    return wrap(fn) if fn is not None else wrap
'''


def test_on_a_zero_gpu_space_the_app_imports_spaces_first_and_runs_each_request_inside_spaces_gpu(tmp_path):
    (tmp_path / "stub").mkdir()
    (tmp_path / "stub" / "spaces.py").write_text(SPACES_STUB)
    log = tmp_path / "spaces.log"
    folder = make_tiny_diffusion(tmp_path / "model")
    env = {"SPACES_ZERO_GPU": "true", "SPACES_STUB_LOG": str(log), "PYTHONPATH": str(tmp_path / "stub")}
    with running_app(str(folder), env=env) as url:
        form = ["a red circle", "diffusion", 2, 3.0, 0, False, 2, "none", 1.0, False, True, True]
        outputs, files = call_http_api(url, "text_to_image", form)
        assert len(files) == 2 and outputs[-1] == 0
    lines = log.read_text().splitlines()
    assert lines[0] == "imported; torch loaded before: False"  # before torch initialises CUDA
    calls = [line for line in lines if line.startswith("gpu call on")]
    assert len(calls) == 1 and "MainThread" not in calls[0]  # in the request's own thread, not the app's runner
