"""The one training loop. Every model Wordbrush trains (the embedded diffusion model, the GAN, LoRA
adapters) is a `Task` run by `run_training`: same checkpoints, resume, EMA, progress bar and log.

Runs under `accelerate launch` unchanged (several GPUs or hosts, mixed precision): each process draws its own
shard of every global batch (`Shard`), gradients are averaged by the accelerator, and only the main process
writes. On one machine it is plain Python. A run folder holds:

    checkpoint/   trainable.safetensors and ema.safetensors (the trained parameters only: an adapter's size
                  for a LoRA), state.pt (optimizer, step; no weights); replaced atomically (`save_atomically`)
    model/        the exported EMA model, what the pipeline loads
    log.jsonl     one line per log interval: step, loss, images/s; eval scores when measured
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Shard:
    """This process's part of the data: process `index` of `count` draws its own examples of every step, so
    `count` processes of `batch_size` train on one global batch of `count * batch_size`."""

    index: int = 0
    count: int = 1

    def seed(self, seed: int | str) -> int | str:
        """A data seed for this process: `seed` itself when it is alone, so one process draws as always."""
        return seed if self.count == 1 else f"{seed}/{self.index}-of-{self.count}"


ALONE = Shard()  # a single process: all of the data


@dataclass(frozen=True)
class TrainConfig:
    out: str  # run folder (checkpoint/, model/, log.jsonl)
    steps: int  # total optimizer steps; a resumed run continues up to this
    batch_size: int = 64  # examples per step and process
    lr: float = 3e-4  # AdamW peak learning rate
    warmup: int = 200  # linear warm-up steps, then constant
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW; GANs use (0.0, 0.99)
    grad_clip: float = 1.0  # max gradient norm
    ema_decay: float = 0.999  # 0 disables EMA
    mixed_precision: str = "auto"  # "auto" (bf16 on CUDA, none on CPU), "no", "bf16", "fp16"
    checkpoint_every: int = 250  # steps between checkpoints: at most this much work is lost to a kill
    eval_every: int = 2000  # steps between evaluator runs (0: only at the end)
    log_every: int = 25
    seed: int = 0
    max_minutes: float = 0  # stop (checkpoint, export) after this much wall time in this run; 0: no limit


class Task(Protocol):
    """What the loop needs from a model family."""

    def trainable(self) -> torch.nn.Module: ...  # the module whose parameters (requires_grad) train

    def batches(self, start_step: int, batch_size: int, device: torch.device, shard: Shard) -> Iterator[Any]: ...

    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor: ...

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]: ...

    def export(self, model: torch.nn.Module, folder: Path, *, step: int, images_seen: int, seconds: float) -> None: ...

    # Optional: state of the task's own (e.g. a GAN discriminator and its optimizer), kept in the checkpoint,
    # and a hook that receives the accelerator once the trainable module is prepared.
    # def state_dict(self) -> dict: ...
    # def load_state_dict(self, state: dict) -> None: ...
    # def prepare(self, accel: Accelerator) -> None: ...


def run_training(task: Task, cfg: TrainConfig, *, on_log=None, should_stop=None) -> dict[str, float]:
    """Train `task` to cfg.steps, resuming from cfg.out/checkpoint when it exists. Returns the last eval.

    on_log(record) sees every log record; should_stop() is asked after every step: when it says yes,
    the loop checkpoints, exports and returns early (a cancelled run keeps its work)."""
    run = _Run(task, cfg, on_log)
    started = time.time()
    bar = tqdm(
        total=cfg.steps, initial=run.step, desc="training", disable=not run.accel.is_main_process, dynamic_ncols=True
    )
    batches = task.batches(run.step, cfg.batch_size, run.accel.device, run.shard)
    window_loss, window_images, t_window = 0.0, 0, time.time()
    while run.step < cfg.steps:
        loss = run.train_step(next(batches))
        n = cfg.batch_size * run.accel.num_processes
        run.images_seen += n
        window_loss, window_images = window_loss + loss, window_images + n
        bar.update(1)
        if run.step % cfg.log_every == 0:
            dt = time.time() - t_window
            run.seconds += dt
            bar.set_postfix(loss=f"{window_loss / cfg.log_every:.4f}", img_s=f"{window_images / dt:.0f}")
            run.log(
                {
                    "step": run.step,
                    "loss": window_loss / cfg.log_every,
                    "images_per_s": window_images / dt,
                    "images_seen": run.images_seen,
                }
            )
            window_loss, window_images, t_window = 0.0, 0, time.time()
        if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps:
            run.save_checkpoint()
        if cfg.eval_every and run.step % cfg.eval_every == 0 and run.step != cfg.steps:
            run.evaluate_and_export()
            t_window = time.time()  # evaluation time is not training time
        if should_stop is not None and should_stop():
            tqdm.write(f"stopped at step {run.step}; the checkpoint keeps the work done")
            break
        if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60:
            tqdm.write(f"--max-minutes {cfg.max_minutes:g} reached at step {run.step}")
            break
    bar.close()
    run.save_checkpoint()
    return run.evaluate_and_export()


class _Run:
    """One training run's state: the accelerator, the trained module, its optimizer, schedule and EMA, and the
    counters a checkpoint keeps."""

    def __init__(self, task: Task, cfg: TrainConfig, on_log=None):
        self.task, self.cfg, self.out, self.on_log = task, cfg, Path(cfg.out), on_log
        precision = cfg.mixed_precision
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_available() else "no"
        # cpu=True where there is no GPU: several processes then share the work over gloo (MULTI_CPU)
        self.accel = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available())
        self.shard = Shard(self.accel.process_index, self.accel.num_processes)
        torch.manual_seed(cfg.seed + self.accel.process_index)
        model = task.trainable()
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.ema = EMAModel(self.params, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None  # trained params only
        opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
        self.warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
        self.step, self.images_seen, self.seconds = 0, 0, 0.0
        self._resume(model, opt)
        self.model, self.opt = self.accel.prepare(model, opt)
        if hasattr(task, "prepare"):
            task.prepare(self.accel)
        if self.ema is not None:
            self.ema.to(self.accel.device)
        self.out.mkdir(parents=True, exist_ok=True)
        if self.accel.is_main_process:
            (self.out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))

    def _resume(self, model, opt) -> None:
        """Weights from safetensors, optimizer and counters from state.pt (tensors and numbers only)."""
        ckpt = find_checkpoint(self.out)
        if ckpt is None:
            return
        load_trained(model, load_file(ckpt / "trainable.safetensors"))
        state = torch.load(ckpt / "state.pt", weights_only=True)
        if self.ema is not None and (ckpt / "ema.safetensors").exists():
            shadow = load_file(ckpt / "ema.safetensors")
            self.ema.shadow_params = [shadow[n].to(p.dtype) for n, p in zip(self.names, self.params)]
            self.ema.optimization_step = state.get("ema_step", state["step"])
        opt.load_state_dict(state["optimizer"])
        self.warm.load_state_dict(state["lr_schedule"])
        self.step, self.images_seen, self.seconds = state["step"], state["images_seen"], state["seconds"]
        if "task" in state:  # e.g. the GAN discriminator and its optimizer
            self.task.load_state_dict(state["task"])
        self.accel.print(
            f"resumed from {ckpt} at step {self.step} ({self.images_seen:,} images, {self.seconds / 60:.1f} min)"
        )

    def train_step(self, batch) -> float:
        """One optimizer step on `batch`; returns its loss."""
        self.model.train()
        with self.accel.autocast():
            loss = self.task.loss(self.model, batch)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.step}; lower --lr or check the data")
        self.accel.backward(loss)
        if self.cfg.grad_clip:
            self.accel.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.opt.step()
        self.warm.step()
        self.opt.zero_grad(set_to_none=True)
        if self.ema is not None:  # decay min(ema_decay, (1 + step) / (10 + step)): diffusers' EMAModel warm-up
            self.ema.step(self.params)
        self.step += 1
        return loss.item()

    def save_checkpoint(self) -> None:
        if not self.accel.is_main_process:
            return

        def write(folder: Path) -> None:
            save_file(trained_state(self.accel.unwrap_model(self.model)), folder / "trainable.safetensors")
            state = {
                "optimizer": self.opt.state_dict(),
                "lr_schedule": self.warm.state_dict(),
                "step": self.step,
                "images_seen": self.images_seen,
                "seconds": self.seconds,
            }
            if self.ema is not None:
                shadow = {n: t.detach().contiguous() for n, t in zip(self.names, self.ema.shadow_params)}
                save_file(shadow, folder / "ema.safetensors")
                state["ema_step"] = self.ema.optimization_step
            if hasattr(self.task, "state_dict"):
                state["task"] = self.task.state_dict()
            torch.save(state, folder / "state.pt")  # written last: a folder with state.pt is complete

        save_atomically(self.out / "checkpoint", write)

    def log(self, record: dict) -> None:
        if self.accel.is_main_process:
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if self.on_log is not None:
                self.on_log(record)

    def evaluate_and_export(self) -> dict[str, float]:
        if not self.accel.is_main_process:
            return {}
        final = self.accel.unwrap_model(self.model).eval()
        if self.ema is not None:  # export and evaluate the EMA weights, then train on with the live ones
            self.ema.store(self.params)
            self.ema.copy_to(self.params)
        try:
            self.task.export(
                final, self.out / "model", step=self.step, images_seen=self.images_seen, seconds=self.seconds
            )
            scores = self.task.evaluate(final)
        finally:
            if self.ema is not None:
                self.ema.restore(self.params)
        self.log({"step": self.step, "images_seen": self.images_seen, "eval": scores})
        tqdm.write(f"step {self.step}: eval " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        return scores


def trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (requires_grad) and the buffers: what a checkpoint must keep."""
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    return {n: t.detach().contiguous() for n, t in model.state_dict().items() if n not in frozen}


def load_trained(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    unexpected = model.load_state_dict(state, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"the checkpoint does not fit this model: unknown tensor {unexpected[0]}")


def save_atomically(folder: Path, write) -> None:
    """write(tmp) fills a fresh folder, which then replaces `folder`. A kill at any point leaves a complete
    checkpoint for `find_checkpoint`: the old folder until the new one is in place, then the new one."""
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(out: Path) -> Path | None:
    """The run's newest complete checkpoint: checkpoint/, or checkpoint.old/ when a save was cut short between
    its two renames."""
    for name in ("checkpoint", "checkpoint.old"):
        if (out / name / "state.pt").exists():
            return out / name
    return None
