"""One LoRA training at a time, in a background thread, for a server (the app's Train tab).

Each training gets a fresh run folder (`runs_dir/NAME-xxxxxx`), so two visitors who both call theirs "stars"
never share or resume each other's work. The job records what the UI shows: status, a loss curve, the latest
validation sheet, the finished LoRA file, and who started it (only that session may cancel it: no route
without the owner's session can). `cancel()` stops it at the next step; the checkpoint and an exported LoRA
keep the work done. The uploaded data is deleted when the training ends.

A training the server lost (killed, restarted) is resumed by `resume_interrupted()` at the next start, from
its last checkpoint, with the settings its run folder records (`job.json`); upload folders no training uses
are deleted then.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.memory import release_memory
from train.adapters import LORA_FILE
from train.loop import find_checkpoint
from train.lora import train_lora

log = logging.getLogger(__name__)
JOB_FILE = "job.json"  # a run folder's training settings, for resuming it after a restart
SHOWN_DIR = Path(tempfile.gettempdir()) / "wordbrush-validation"


@dataclass
class JobState:
    status: str = "idle"  # idle, running, done, cancelled, failed
    message: str = ""
    step: int = 0
    steps: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    lora: Path | None = None  # the LoRA file, once exported
    out: Path | None = None
    owner: str | None = None  # who started it (the app's session id); None: nobody may cancel it
    started: float = 0.0
    shown: Path | None = None  # the latest validation sheet's copy where the page may serve it


class LoraJob:
    def __init__(self, *, model: str, runs_dir: Path):
        self.model, self.runs_dir = model, Path(runs_dir)
        self.state = JobState()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(
        self,
        *,
        name: str,
        data: Path,
        rank: int,
        steps: int,
        lr: float,
        batch_size: int,
        prompts: list[str],
        owner: str | None = None,
        delete_data: bool = False,
        out: Path | None = None,
    ) -> Path:
        """Start a training in a fresh run folder (returned; `out`: resume that one); raises ValueError while
        another one runs."""
        with self._lock:
            if self.running:
                raise ValueError("a training is already running on this server; try again when it ends")
            out = out or self.runs_dir / f"{name}-{uuid.uuid4().hex[:6]}"
            self.state = JobState(
                status="running", message="loading the model", steps=steps, out=out, owner=owner, started=time.time()
            )
            self._cancel.clear()
            settings = dict(data=str(data), rank=rank, steps=steps, lr=lr, batch_size=batch_size, prompts=prompts)
            out.mkdir(parents=True, exist_ok=True)
            (out / JOB_FILE).write_text(json.dumps({**settings, "delete_data": delete_data}))
            kwargs = dict(
                model=self.model,
                data=data,
                out=out,
                rank=rank,
                steps=steps,
                lr=lr,
                batch_size=batch_size,
                validation_prompts=prompts,
                checkpoint_every=max(10, steps // 10),
            )
            self._thread = threading.Thread(
                target=self._run, args=(kwargs, delete_data), name="wordbrush-lora", daemon=True
            )
            self._thread.start()
            return out

    def cancel(self, owner: str | None) -> None:
        """Stop at the next step; ValueError unless `owner` is the session that started this training."""
        if owner is None or owner != self.state.owner:
            raise ValueError("only the visitor who started this training can cancel it, from the same page")
        self._cancel.set()

    def stop(self) -> None:
        """Stop at the next step (the host, shutting down)."""
        self._cancel.set()

    def interrupted(self) -> list[Path]:
        """Run folders of trainings that neither finished nor failed (the server stopped under them), newest
        first: a job.json, a checkpoint and no exported LoRA."""
        if not self.runs_dir.is_dir():
            return []
        runs = [
            p
            for p in self.runs_dir.iterdir()
            if (p / JOB_FILE).is_file() and find_checkpoint(p) is not None and not (p / "model" / LORA_FILE).exists()
        ]
        return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)

    def resume_interrupted(self, uploads: Path | None = None) -> Path | None:
        """Resume the newest interrupted training whose data is still on disk (it runs to its end; nobody can
        cancel it, its session is gone) and delete the upload folders no training uses. Returns its run folder."""
        resumed, in_use = None, None
        for run in self.interrupted():
            settings = json.loads((run / JOB_FILE).read_text())
            if not Path(settings["data"]).is_dir():
                continue
            self.start(
                name=run.name,
                data=Path(settings["data"]),
                rank=settings["rank"],
                steps=settings["steps"],
                lr=settings["lr"],
                batch_size=settings["batch_size"],
                prompts=settings["prompts"],
                delete_data=settings.get("delete_data", False),
                out=run,
            )
            self.state.message = "resuming after a restart"
            log.info("resuming the interrupted training %s", run.name)
            resumed, in_use = run, Path(settings["data"]).resolve()
            break
        if uploads is not None and Path(uploads).is_dir():
            for folder in Path(uploads).iterdir():
                if folder.is_dir() and folder.resolve() != in_use:
                    shutil.rmtree(folder, ignore_errors=True)
        return resumed

    def latest_validation(self) -> Path | None:
        out = self.state.out
        sheets = sorted((out / "model").glob("validation-*.png")) if out else []
        return sheets[-1] if sheets else None

    def shown_validation(self) -> Path | None:
        """The latest validation sheet, copied once into the system's temporary folder (which gradio serves
        from; the run folder it does not), the previous copy deleted."""
        sheet = self.latest_validation()
        if sheet is None:
            return None
        shown = SHOWN_DIR / f"{sheet.parent.parent.name}-{sheet.name}"
        if self.state.shown != shown:
            SHOWN_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copy(sheet, shown)
            if self.state.shown is not None:
                self.state.shown.unlink(missing_ok=True)
            self.state.shown = shown
        return shown

    def _on_log(self, record: dict) -> None:
        if "loss" in record:
            self.state.step = record["step"]
            self.state.losses.append((record["step"], record["loss"]))
            self.state.message = f"step {record['step']}/{self.state.steps}, loss {record['loss']:.4f}"

    def _run(self, kwargs: dict, delete_data: bool) -> None:
        try:
            lora = train_lora(**kwargs, on_log=self._on_log, should_stop=self._cancel.is_set)
            ckpt = find_checkpoint(kwargs["out"])  # the step the run reached, not the last one logged
            if ckpt is not None:
                self.state.step = torch.load(ckpt / "state.pt", weights_only=True)["step"]
            self.state.lora = lora
            cancelled = self._cancel.is_set()
            self.state.status = "cancelled" if cancelled else "done"
            minutes = (time.time() - self.state.started) / 60
            verb = "cancelled; kept the work so far" if cancelled else "done"
            self.state.message = f"{verb} at step {self.state.step} after {minutes:.1f} min: {lora.parent.parent.name}"
        except Exception as err:  # reported in the UI; the server serves on
            log.exception("LoRA training failed")
            self.state.status = "failed"
            self.state.message = f"training failed: {err}"
        finally:
            if delete_data:
                shutil.rmtree(kwargs["data"], ignore_errors=True)
            release_memory()
