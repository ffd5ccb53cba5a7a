"""One LoRA training at a time, in a background thread, for a server (the app's Train tab).

Each training gets a fresh run folder (`runs_dir/NAME-xxxxxx`), so two visitors who both call theirs "stars"
never share or resume each other's work. The job records what the UI shows: status, a loss curve, the latest
validation sheet, the finished LoRA file, and who started it (only they may cancel it). `cancel()` stops it at
the next step; the checkpoint and an exported LoRA keep the work done. The uploaded data is deleted when the
training ends.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.memory import release_memory
from train.loop import find_checkpoint
from train.lora import train_lora

log = logging.getLogger(__name__)


@dataclass
class JobState:
    status: str = "idle"  # idle, running, done, cancelled, failed
    message: str = ""
    step: int = 0
    steps: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    lora: Path | None = None  # the LoRA file, once exported
    out: Path | None = None
    owner: str | None = None  # who started it (the app's session id)
    started: float = 0.0


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
    ) -> Path:
        """Start a training in a fresh run folder (returned); raises ValueError while another one runs."""
        with self._lock:
            if self.running:
                raise ValueError("a training is already running on this server; try again when it ends")
            out = self.runs_dir / f"{name}-{uuid.uuid4().hex[:6]}"
            self.state = JobState(
                status="running", message="loading the model", steps=steps, out=out, owner=owner, started=time.time()
            )
            self._cancel.clear()
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

    def cancel(self, owner: str | None = None) -> None:
        """Stop at the next step; ValueError when `owner` is given and did not start this training."""
        if owner is not None and self.state.owner not in (None, owner):
            raise ValueError("only the visitor who started this training can cancel it")
        self._cancel.set()

    def latest_validation(self) -> Path | None:
        out = self.state.out
        sheets = sorted((out / "model").glob("validation-*.png")) if out else []
        return sheets[-1] if sheets else None

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
