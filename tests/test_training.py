import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import Wordbrush, diffusion
from pipeline.encoders import load_encoder
from train.diffusion import DiffusionTask, build_pool
from train.loop import TrainConfig, run_training

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("minilm")


def _task(encoder, seed=0):
    torch.manual_seed(seed)
    cfg = diffusion.SIZES["tiny"]
    pool = build_pool(encoder, size=40, seed=seed)
    return DiffusionTask(diffusion.build_unet(cfg), cfg, encoder, pool, eval_per_category=1, eval_steps=2)


def test_training_lowers_the_loss_and_exports_a_loadable_model(encoder, tmp_path):
    cfg = TrainConfig(
        out=str(tmp_path / "run"),
        steps=40,
        batch_size=8,
        lr=1e-3,
        warmup=5,
        checkpoint_every=20,
        eval_every=0,
        log_every=10,
    )
    scores = run_training(_task(encoder), cfg)
    assert set(scores) >= {"single_object", "position", "style", "overall"}
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < losses[0]  # v-prediction loss starts near 1 and falls fast on flat backgrounds
    wb = Wordbrush.load(str(tmp_path / "run" / "model"))
    assert wb.text_to_image("a red circle", seed=0, steps=2).images[0].size == (32, 32)
    meta = diffusion.read_meta(tmp_path / "run" / "model")
    assert meta["card"]["images_seen"] == 40 * 8
    shards = list((tmp_path / "run" / "model" / "unet").glob("*.safetensors"))
    assert shards and all(p.stat().st_size < 10 * 2**20 for p in shards)


def test_resume_continues_from_the_checkpoint(encoder, tmp_path):
    out = str(tmp_path / "run")
    base = dict(out=out, batch_size=4, warmup=2, checkpoint_every=3, eval_every=0, log_every=3)
    run_training(_task(encoder), TrainConfig(steps=6, **base))
    first = torch.load(tmp_path / "run" / "checkpoint" / "state.pt", weights_only=True)
    assert first["step"] == 6 and first["images_seen"] == 24
    run_training(_task(encoder, seed=1), TrainConfig(steps=9, **base))  # a fresh process would do the same
    state = torch.load(tmp_path / "run" / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] == 9 and state["images_seen"] == 36


@pytest.mark.slow
def test_killed_cli_run_restarts_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "train",
        "diffusion",
        "--out",
        str(out),
        "--size",
        "tiny",
        "--batch-size",
        "4",
        "--pool-size",
        "32",
        "--checkpoint-every",
        "5",
        "--eval-every",
        "0",
        "--eval-per-category",
        "1",
    ]
    proc = subprocess.Popen(
        [*cmd, "--steps", "400"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    state = out / "checkpoint" / "state.pt"
    deadline = time.time() + 240
    while not state.exists() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(float(np.random.default_rng().uniform(0.5, 3.0)))  # kill at a random point past a checkpoint
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(state, weights_only=True)["step"]
    assert killed_at >= 5
    done = subprocess.run([*cmd, "--steps", str(killed_at + 5)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed from {out / 'checkpoint'} at step {killed_at}" in done.stdout + done.stderr
    assert torch.load(state, weights_only=True)["step"] == killed_at + 5


def test_gan_training_exports_and_resumes_with_its_discriminator(encoder, tmp_path):
    from pipeline import gan
    from train.gan import GANTask

    def task():
        torch.manual_seed(0)
        return GANTask(
            gan.build_gan(gan.GAN_SIZES["tiny"]), encoder, build_pool(encoder, size=20, seed=0), eval_per_category=1
        )

    base = dict(
        out=str(tmp_path / "gan"),
        batch_size=4,
        warmup=0,
        betas=(0.0, 0.99),
        checkpoint_every=2,
        eval_every=0,
        log_every=2,
        mixed_precision="no",
    )
    scores = run_training(task(), TrainConfig(steps=4, **base))
    assert "overall" in scores
    wb = Wordbrush.load(str(tmp_path / "gan" / "model"))
    assert wb.generator.kind == "gan" and wb.text_to_image("a red circle", seed=0).images[0].size == (32, 32)
    resumed = task()
    run_training(resumed, TrainConfig(steps=6, **base))
    assert resumed._step == 6  # the discriminator's counter and optimizer came back from the checkpoint
    assert len(resumed.d_opt.state) > 0


def test_gan_cli_starts_from_shipped_generator_weights_on_a_fresh_machine(tmp_path):
    from pipeline import gan
    from tests.tiny import make_tiny_gan

    shipped = make_tiny_gan(tmp_path / "shipped", seed=3)
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "train",
        "gan",
        "--out",
        str(out),
        "--size",
        "tiny",
        "--batch-size",
        "4",
        "--pool-size",
        "32",
        "--steps",
        "1",
        "--checkpoint-every",
        "1",
        "--eval-every",
        "0",
        "--eval-per-category",
        "1",
        "--lr",
        "0",
        "--init",
        str(shipped),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"generator initialised from {shipped}" in done.stdout + done.stderr
    start, after = gan.load(shipped), gan.load(out / "model")
    for (name, a), (_, b) in zip(start.state_dict().items(), after.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-2), name  # lr 0: the export is the shipped generator


class _Killed(BaseException):
    pass


@pytest.mark.parametrize("kill_at", range(1, 9))
def test_a_kill_at_any_point_of_a_checkpoint_save_leaves_a_complete_checkpoint(tmp_path, monkeypatch, kill_at):
    """Each file-system step of a save (clear, create, write each file, move the old one aside, move the new
    one in, delete the old one) is a point where the process may die: after each, a checkpoint is found."""
    import shutil

    from train import loop

    ckpt = tmp_path / "run" / "checkpoint"

    def write(step):
        def fill(folder):
            tick()
            (folder / "trainable.safetensors").write_bytes(b"weights %d" % step)
            tick()
            torch.save({"step": step}, folder / "state.pt")

        return fill

    ops = [-1000]  # not counting yet

    def tick():
        ops[0] += 1
        if ops[0] == kill_at:
            raise _Killed

    loop.save_atomically(ckpt, write(1))
    ops[0] = 0

    real_rmtree, real_rename = shutil.rmtree, Path.rename
    monkeypatch.setattr(loop.shutil, "rmtree", lambda *a, **k: (tick(), real_rmtree(*a, **k)))
    monkeypatch.setattr(Path, "rename", lambda self, target: (tick(), real_rename(self, target))[1])
    with pytest.raises(_Killed) if kill_at <= 7 else _no_error():
        loop.save_atomically(ckpt, write(2))
    found = loop.find_checkpoint(tmp_path / "run")
    assert found is not None
    step = torch.load(found / "state.pt", weights_only=True)["step"]
    assert step in (1, 2) and (found / "trainable.safetensors").read_bytes() == b"weights %d" % step
    if kill_at >= 7:  # the new checkpoint was in place
        assert step == 2
    monkeypatch.undo()
    ops[0] = -1000
    loop.save_atomically(ckpt, write(3))  # the next save cleans up whatever the kill left
    assert torch.load(loop.find_checkpoint(tmp_path / "run") / "state.pt", weights_only=True)["step"] == 3
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint"]


def _no_error():
    import contextlib

    return contextlib.nullcontext()


def _launch(*args, processes: int, timeout: int = 600) -> None:
    """tests/two_process_training.py under `accelerate launch` (several processes, gloo) or plain Python."""
    script = [str(ROOT / "tests" / "two_process_training.py"), *map(str, args)]
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    cmd = [*launcher, *script] if processes > 1 else [sys.executable, *script]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_draw_their_own_shards_and_train_as_one_process_on_the_global_batch(tmp_path):
    from safetensors.torch import load_file

    _launch(tmp_path / "two", 4, processes=2)
    _launch(tmp_path / "one", 8, processes=1)
    first, second = (json.loads((tmp_path / "two" / f"seen-{r}.json").read_text()) for r in (0, 1))
    alone = json.loads((tmp_path / "one" / "seen-0.json").read_text())
    assert all(a != b for a, b in zip(first, second))  # each process its own examples, every step
    assert [a + b for a, b in zip(first, second)] == alone  # together: the single process's global batches
    two, one = (load_file(tmp_path / run / "model" / "weights.safetensors") for run in ("two", "one"))
    for name in one:
        assert torch.allclose(two[name], one[name], atol=1e-5), name


def test_each_process_steps_the_same_gan_discriminator(tmp_path):
    from safetensors.torch import load_file

    _launch(tmp_path, 2, "gan", processes=2)
    first, second = (load_file(tmp_path / f"discriminator-{r}.safetensors") for r in (0, 1))
    for name in first:  # the discriminator's gradients are averaged over the processes before each step
        assert torch.equal(first[name], second[name]), name


def test_every_task_draws_different_data_in_each_process_and_the_usual_data_alone(encoder):
    from train.loop import ALONE, Shard

    task, cpu = _task(encoder), torch.device("cpu")

    def first(shard):
        return next(task.batches(0, 4, cpu, shard))[0].tolist()

    assert first(ALONE) == first(Shard(0, 1)) == next(task.batches(0, 4, cpu))[0].tolist()
    assert first(Shard(0, 2)) != first(Shard(1, 2))
