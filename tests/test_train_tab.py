"""The app's Train tab: one background LoRA training at a time, progress, cancel, and the LoRA list."""

import time

import pytest
from PIL import Image

import app
from pipeline import Wordbrush
from pipeline.batcher import Batcher
from pipeline.recipe import read_recipe
from pipeline.serve import LIMITS, LoraLibrary, Server
from pipeline.worlds import WORLDS
from tests.tiny import make_tiny_diffusion
from train import tab
from train.job import LoraJob


class _Request:
    """What gradio passes as `request: gr.Request`: here, just the visitor's session."""

    def __init__(self, session_hash):
        self.session_hash = session_hash


VISITOR = _Request("visitor")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_diffusion(tmp_path_factory.mktemp("tiny") / "model")


def _wait(job, until, timeout=240):
    deadline = time.time() + timeout
    while not until(job.state) and time.time() < deadline:
        time.sleep(0.2)
    assert until(job.state), job.state


@pytest.mark.slow
def test_training_runs_in_the_background_and_generation_keeps_working(tiny, tmp_path):
    job = LoraJob(model=str(tiny), runs_dir=tmp_path / "runs")
    library = LoraLibrary(tmp_path / "runs")
    batchers = {"diffusion": Batcher(Wordbrush.load(str(tiny)), window_s=0.01)}
    start = tab.start_training_handler(job, tmp_path / "uploads", library)
    started = start(None, True, "stars", 4, 30, 1e-2, 4, "a red star", request=VISITOR)
    run = started.split("**")[1]
    assert run.startswith("stars-") and run != "stars"  # a fresh folder: nobody else's "stars" is resumed
    with pytest.raises(Exception, match="already running"):
        start(None, True, "again", 4, 30, 1e-2, 4, "", request=VISITOR)
    t2i = app.text_to_image_handler(Server(batchers, library))
    gallery, *_ = t2i("a red circle", "diffusion", 2, 3.0, 0, False, 1, progress=lambda *a, **k: None)
    assert len(gallery) == 1  # served while training
    _wait(job, lambda s: s.status in ("done", "failed"))
    assert job.state.status == "done" and job.state.lora.exists() and job.state.losses
    assert not list((tmp_path / "uploads").iterdir())  # the training data went with the training
    status, curve, sheet, dropdown = tab.training_status(job, library)(tab.NO_LORA)
    assert "done" in status and len(curve) == len(job.state.losses) and sheet is not None
    assert run in dropdown["choices"]
    # Another session, an API client, a restarted server: all read the same library from disk
    again = app.text_to_image_handler(Server(batchers, LoraLibrary(tmp_path / "runs")))
    gallery, *_ = again("a red star", "diffusion", 2, 3.0, 0, False, 1, run, 0.8, progress=lambda *a, **k: None)
    assert read_recipe(gallery[0][0]).lora == f"{run}:0.8"  # its name, not the server's path
    with pytest.raises(Exception, match="no LoRA named 'stars'"):
        again("a red star", "diffusion", 2, 3.0, 0, False, 1, "stars", 0.8, progress=lambda *a, **k: None)
    with pytest.raises(Exception, match="LoRA scale must be"):
        again("a red star", "diffusion", 2, 3.0, 0, False, 1, run, float("nan"), progress=lambda *a, **k: None)


@pytest.mark.slow
def test_cancel_keeps_the_work_done(tiny, tmp_path):
    import torch

    job = LoraJob(model=str(tiny), runs_dir=tmp_path / "runs")
    owner, stranger = _Request("owner"), _Request("stranger")
    tab.start_training_handler(job, tmp_path / "uploads")(None, True, "long", 4, 2000, 1e-3, 4, "", request=owner)
    _wait(job, lambda s: s.step >= 20)
    cancel = tab.cancel_training_handler(job)
    with pytest.raises(Exception, match="only the visitor who started"):
        cancel(request=stranger)
    assert job.running
    cancel(request=owner)
    _wait(job, lambda s: s.status != "running")
    assert job.state.status == "cancelled" and job.state.lora.exists()
    reached = torch.load(job.state.out / "checkpoint" / "state.pt", weights_only=True)["step"]
    assert f"at step {reached} " in job.state.message  # the step the run reached, not one it never did


def test_training_without_data_is_a_clear_error(tiny, tmp_path):
    job = LoraJob(model=str(tiny), runs_dir=tmp_path / "runs")
    start = tab.start_training_handler(job, tmp_path / "uploads")
    with pytest.raises(Exception, match="upload images with captions"):
        start(None, False, "x", 4, 30, 1e-3, 4, "", request=VISITOR)
    with pytest.raises(Exception, match="learning rate must be a number"):
        start(None, True, "x", 4, 30, float("nan"), 4, "", request=VISITOR)
    with pytest.raises(Exception, match="steps must be a whole number"):
        start(None, True, "x", 4, 30.5, 1e-3, 4, "", request=VISITOR)
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (LIMITS.train_upload_mb * 2**20 // 2 + 1))
    with pytest.raises(Exception, match="MB uploaded; at most"):
        start([str(big), str(big)], False, "x", 4, 30, 1e-3, 4, "", request=VISITOR)
    assert not job.running


def test_a_failing_training_reports_and_the_next_can_start(tiny, tmp_path):
    job = LoraJob(model=str(tiny), runs_dir=tmp_path / "runs")
    bad = tmp_path / "bad.png"
    Image.new("RGB", (8, 8)).save(bad)  # no caption anywhere
    tab.start_training_handler(job, tmp_path / "uploads")([str(bad)], False, "bad", 4, 30, 1e-3, 4, "", request=VISITOR)
    _wait(job, lambda s: s.status != "running")
    assert job.state.status == "failed" and "no caption" in job.state.message


def test_the_demo_set_is_the_worlds_own(tmp_path):
    icons = tab.gather_upload(None, True, tmp_path, WORLDS["icons"])
    shapes = tab.gather_upload(None, True, tmp_path, WORLDS["shapes"])
    assert "kite" in (icons / "metadata.jsonl").read_text() and "star" in (shapes / "metadata.jsonl").read_text()
    assert len(list(icons.glob("*.png"))) == 40 and tab.demo_set(WORLDS["icons"]).name == "kite"
    assert tab.demo_set(None) is tab.demo_set(WORLDS["shapes"])  # a diffusers checkpoint: the stars
