"""The app's Train tab: one background LoRA training at a time, progress, cancel, and the LoRA list."""

import time

import pytest
from PIL import Image

import app
from pipeline import Wordbrush
from pipeline.batcher import Batcher
from pipeline.recipe import read_recipe
from tests.tiny import make_tiny_diffusion
from train.job import LoraJob


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_diffusion(tmp_path_factory.mktemp("tiny") / "model")


def _wait(job, until, timeout=240):
    deadline = time.time() + timeout
    while not until(job.state) and time.time() < deadline:
        time.sleep(0.2)
    assert until(job.state), job.state


def test_training_runs_in_the_background_and_generation_keeps_working(tiny, tmp_path):
    job = LoraJob(model=str(tiny), runs_dir=tmp_path / "runs")
    batchers = {"diffusion": Batcher(Wordbrush.load(str(tiny)), window_s=0.01)}
    outputs = app.Outputs(tmp_path)
    loras = {}
    start = app.start_training_handler(job, tmp_path / "data")
    assert "started" in start(None, True, "stars", 4, 30, 1e-2, 4, "a red star")
    with pytest.raises(Exception, match="already running"):
        start(None, True, "again", 4, 30, 1e-2, 4, "")
    t2i = app.text_to_image_handler(batchers, outputs, loras)
    gallery, *_ = t2i("a red circle", "diffusion", 2, 3.0, 0, False, 1, progress=lambda *a, **k: None)
    assert len(gallery) == 1  # served while training
    _wait(job, lambda s: s.status in ("done", "failed"))
    assert job.state.status == "done" and job.state.lora.exists() and job.state.losses
    status, curve, sheet, dropdown = app.training_status(job, loras)(app.NO_LORA)
    assert "done" in status and len(curve) == len(job.state.losses) and sheet is not None
    assert "stars" in dropdown["choices"]
    *_, paths = t2i("a red star", "diffusion", 2, 3.0, 0, False, 1, "stars", 0.8, progress=lambda *a, **k: None)
    assert read_recipe(Image.open(paths[0])).lora.endswith("lora.safetensors:0.8")


def test_cancel_keeps_the_work_done(tiny, tmp_path):
    job = LoraJob(model=str(tiny), runs_dir=tmp_path / "runs")
    app.start_training_handler(job, tmp_path / "data")(None, True, "long", 4, 2000, 1e-3, 4, "")
    _wait(job, lambda s: s.step >= 20)
    job.cancel()
    _wait(job, lambda s: s.status != "running")
    assert job.state.status == "cancelled" and job.state.lora.exists()
    assert (job.state.out / "checkpoint" / "state.pt").exists()


def test_training_without_data_is_a_clear_error(tiny, tmp_path):
    job = LoraJob(model=str(tiny), runs_dir=tmp_path / "runs")
    with pytest.raises(Exception, match="upload images with captions"):
        app.start_training_handler(job, tmp_path / "data")(None, False, "x", 4, 30, 1e-3, 4, "")


def test_a_failing_training_reports_and_the_next_can_start(tiny, tmp_path):
    job = LoraJob(model=str(tiny), runs_dir=tmp_path / "runs")
    bad = tmp_path / "bad.png"
    Image.new("RGB", (8, 8)).save(bad)  # no caption anywhere
    app.start_training_handler(job, tmp_path / "data")([str(bad)], False, "bad", 4, 30, 1e-3, 4, "")
    _wait(job, lambda s: s.status != "running")
    assert job.state.status == "failed" and "no caption" in job.state.message
