"""The one training loop. Every model Wordbrush trains (the embedded diffusion model, the GAN, LoRA
adapters) is a `Task` run by `run_training`: same checkpoints, resume, EMA, progress bar and log.

Runs under `accelerate launch` unchanged (multi-GPU, mixed precision); on one machine it is plain Python.
A run folder holds:

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
class TrainConfig:
    out: str  # run folder (checkpoint/, model/, log.jsonl)
    steps: int  # total optimizer steps; a resumed run continues up to this
    batch_size: int = 64  # images per step (per process)
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

    def batches(self, start_step: int, batch_size: int, device: torch.device) -> Iterator[Any]: ...

    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor: ...

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]: ...

    def export(self, model: torch.nn.Module, folder: Path, *, step: int, images_seen: int, seconds: float) -> None: ...

    # Optional: state of the task's own (e.g. a GAN discriminator's optimizer), kept in the checkpoint.
    # def state_dict(self) -> dict: ...
    # def load_state_dict(self, state: dict) -> None: ...


def run_training(task: Task, cfg: TrainConfig, *, on_log=None, should_stop=None) -> dict[str, float]:
    """Train `task` to cfg.steps, resuming from cfg.out/checkpoint when it exists. Returns the last eval.

    on_log(record) sees every log record; should_stop() is asked after every step: when it says yes,
    the loop checkpoints, exports and returns early (a cancelled run keeps its work)."""
    out = Path(cfg.out)
    started = time.time()
    precision = cfg.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "no"
    accel = Accelerator(mixed_precision=precision)
    torch.manual_seed(cfg.seed + accel.process_index)
    model = task.trainable()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    ema = EMAModel(params, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None  # the trained parameters only
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
    warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))

    # Resume: weights from safetensors, optimizer and counters from state.pt (tensors and numbers only).
    step, images_seen, seconds = 0, 0, 0.0
    ckpt = find_checkpoint(out)
    if ckpt is not None:
        load_trained(model, load_file(ckpt / "trainable.safetensors"))
        state = torch.load(ckpt / "state.pt", weights_only=True)
        if ema is not None and (ckpt / "ema.safetensors").exists():
            shadow = load_file(ckpt / "ema.safetensors")
            ema.shadow_params = [shadow[n].to(p.dtype) for n, p in zip(names, params)]
            ema.optimization_step = state.get("ema_step", state["step"])
        opt.load_state_dict(state["optimizer"])
        warm.load_state_dict(state["lr_schedule"])
        step, images_seen, seconds = state["step"], state["images_seen"], state["seconds"]
        if "task" in state:  # e.g. the GAN discriminator's optimizer
            task.load_state_dict(state["task"])
        accel.print(f"resumed from {ckpt} at step {step} ({images_seen:,} images, {seconds / 60:.1f} min)")
    model, opt = accel.prepare(model, opt)
    if ema is not None:
        ema.to(accel.device)

    def save_checkpoint() -> None:
        if not accel.is_main_process:
            return

        def write(folder: Path) -> None:
            save_file(trained_state(accel.unwrap_model(model)), folder / "trainable.safetensors")
            state = {"optimizer": opt.state_dict(), "lr_schedule": warm.state_dict(), "step": step,
                     "images_seen": images_seen, "seconds": seconds}  # fmt: skip
            if ema is not None:
                save_file({n: t.detach().contiguous() for n, t in zip(names, ema.shadow_params)},
                          folder / "ema.safetensors")  # fmt: skip
                state["ema_step"] = ema.optimization_step
            if hasattr(task, "state_dict"):
                state["task"] = task.state_dict()
            torch.save(state, folder / "state.pt")  # written last: a folder with state.pt is complete

        save_atomically(out / "checkpoint", write)

    def log(record: dict) -> None:
        if accel.is_main_process:
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if on_log is not None:
                on_log(record)

    def evaluate_and_export() -> dict[str, float]:
        if not accel.is_main_process:
            return {}
        final = accel.unwrap_model(model).eval()
        if ema is not None:  # export and evaluate the EMA weights, then train on with the live ones
            ema.store(params)
            ema.copy_to(params)
        try:
            task.export(final, out / "model", step=step, images_seen=images_seen, seconds=seconds)
            scores = task.evaluate(final)
        finally:
            if ema is not None:
                ema.restore(params)
        log({"step": step, "images_seen": images_seen, "eval": scores})
        tqdm.write(f"step {step}: eval " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        return scores

    out.mkdir(parents=True, exist_ok=True)
    if accel.is_main_process:
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    bar = tqdm(total=cfg.steps, initial=step, desc="training", disable=not accel.is_main_process, dynamic_ncols=True)
    batches = task.batches(step, cfg.batch_size, accel.device)
    window_loss, window_images, t_window = 0.0, 0, time.time()
    while step < cfg.steps:
        # Accumulate gradients.
        model.train()
        batch = next(batches)
        with accel.autocast():
            loss = task.loss(model, batch)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower --lr or check the data")
        accel.backward(loss)
        # Update weights.
        if cfg.grad_clip:
            accel.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        warm.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:  # decay min(ema_decay, (1 + step) / (10 + step)): diffusers' EMAModel warm-up
            ema.step(params)
        step += 1
        n = cfg.batch_size * accel.num_processes
        images_seen += n
        window_loss += loss.item()
        window_images += n
        bar.update(1)
        if step % cfg.log_every == 0:
            dt = time.time() - t_window
            seconds += dt
            rate = window_images / dt
            bar.set_postfix(loss=f"{window_loss / cfg.log_every:.4f}", img_s=f"{rate:.0f}")
            log({"step": step, "loss": window_loss / cfg.log_every, "images_per_s": rate, "images_seen": images_seen})
            window_loss, window_images, t_window = 0.0, 0, time.time()
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_checkpoint()
        if cfg.eval_every and step % cfg.eval_every == 0 and step != cfg.steps:
            evaluate_and_export()
            t_window = time.time()  # evaluation time is not training time
        if should_stop is not None and should_stop():
            tqdm.write(f"stopped at step {step}; the checkpoint keeps the work done")
            break
        if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60:
            tqdm.write(f"--max-minutes {cfg.max_minutes:g} reached at step {step}")
            break
    bar.close()
    save_checkpoint()
    return evaluate_and_export()


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
