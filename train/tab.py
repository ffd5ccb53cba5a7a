"""The app's Train tab: teach the diffusion generator something new from a few captioned images (a LoRA),
in the background, while the other tabs keep serving. The training itself is `train/job.py`."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import gradio as gr
import pandas as pd

from pipeline.serve import LIMITS, LoraLibrary, real, whole
from pipeline.ui import reports_errors
from pipeline.worlds import WORLDS
from pipeline.worlds.base import LoraDemo, World
from train.job import LoraJob

NO_LORA = "none"


def demo_set(world: World | None) -> LoraDemo:
    """The demo set the tab offers: the model's world's own (a diffusers checkpoint: the shapes world's stars)."""
    return (world or WORLDS["shapes"]).lora_demo


def gather_upload(files, use_demo: bool, uploads: Path, world: World | None = None) -> Path:
    """A fresh folder under `uploads` with the uploaded images and captions (or the world's demo set), within
    limits."""
    if not use_demo:
        if not files:
            raise ValueError(
                "upload images with captions (.txt beside each, or a metadata.jsonl), or tick the demo set"
            )
        if len(files) > LIMITS.train_files:
            raise ValueError(f"{len(files)} files; at most {LIMITS.train_files} per training")
        total = sum(Path(f).stat().st_size for f in files)
        if total > LIMITS.train_upload_mb * 2**20:
            raise ValueError(f"{total / 2**20:.0f} MB uploaded; at most {LIMITS.train_upload_mb} MB per training")
    folder = Path(uploads) / uuid.uuid4().hex
    if use_demo:
        demo_set(world).write(folder)
    else:
        folder.mkdir(parents=True)
        for f in files:
            shutil.copy(f, folder / Path(f).name)
    return folder


def start_training_handler(job: LoraJob, uploads: Path, library: LoraLibrary | None = None, world: World | None = None):
    """The Train button: gather the uploaded images and captions (or the demo set) and start a fresh run."""

    @reports_errors
    def train_lora(files, use_demo, name, rank, steps, lr, batch_size, prompts, request: gr.Request = None):
        name = "".join(c for c in (name or "").strip() if c.isalnum() or c in "-_")[:40] or "my-lora"
        knobs = {
            "rank": whole(rank, "rank", 1, 64),
            "steps": whole(steps, "steps", 1, 5000),
            "lr": real(lr, "learning rate", 1e-6, 1.0),
            "batch_size": whole(batch_size, "batch size", 1, 64),
        }
        owner = getattr(request, "session_hash", None)
        if owner is None:  # a /run/ call carries no session: nobody could cancel the training it starts
            raise ValueError("start a training from the page, or from a client that keeps a session (gradio_client)")
        if job.running:
            raise ValueError("a training is already running on this server; try again when it ends")
        folder = gather_upload(files, use_demo, uploads, world)
        if library is not None:
            library.prune()
        validation = [p.strip() for p in (prompts or "").split(";") if p.strip()]
        try:
            out = job.start(name=name, data=folder, prompts=validation, owner=owner, delete_data=True, **knobs)
        except ValueError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return f"started **{out.name}**"

    return train_lora


def cancel_training_handler(job: LoraJob):
    @reports_errors
    def cancel(request: gr.Request = None):
        if not job.running:
            return "no training is running"
        job.cancel(owner=getattr(request, "session_hash", None))
        return "cancelling at the next step..."

    return cancel


def training_status(job: LoraJob, library: LoraLibrary):
    """Polled every second: status, loss curve, validation sheet, and the LoRA list (every finished LoRA)."""

    def handler(current_lora):
        st = job.state
        curve = pd.DataFrame(st.losses or [], columns=["step", "loss"])
        sheet = job.shown_validation()
        status = f"**{st.status}** {st.message}" if st.status != "idle" else "no training yet"
        return status, curve, (str(sheet) if sheet else None), gr.update(choices=[NO_LORA, *library.names()])

    return handler


def train_tab(
    job: LoraJob, library: LoraLibrary, uploads: Path, lora: gr.Dropdown, *, batch: int = 16, world: World | None = None
) -> None:
    """The tab's layout and events, inside the app's gr.Tabs; `lora` is the Text to image tab's LoRA list,
    `batch` the model's default images per step, `world` the embedded world it draws (its demo set)."""
    demo = demo_set(world)
    with gr.Tab("Train", id="train"):
        gr.Markdown(
            "Teach the diffusion generator something new from a few captioned images (LoRA). One training "
            "at a time; generating keeps working meanwhile; the result appears in the LoRA list."
        )
        with gr.Row():
            with gr.Column():
                files = gr.File(
                    label="Images with captions: a .txt beside each image, or a metadata.jsonl",
                    file_count="multiple",
                    file_types=["image", ".txt", ".jsonl"],
                )
                use_demo = gr.Checkbox(value=False, label=demo.label)
                name = gr.Textbox(value=demo.name, label="Name")
                with gr.Row():
                    rank = gr.Slider(2, 32, value=8, step=2, label="Rank")
                    steps = gr.Slider(20, 2000, value=300, step=10, label="Steps")
                with gr.Row():
                    lr = gr.Number(value=1e-3, label="Learning rate")
                    batch_size = gr.Slider(1, 32, value=batch, step=1, label="Batch size")
                prompts = gr.Textbox(value=demo.prompts, label="Validation prompts (;-separated)")
                with gr.Row():
                    start = gr.Button("Train", variant="primary")
                    cancel = gr.Button("Cancel (keeps the last checkpoint)", variant="stop")
            with gr.Column():
                status = gr.Markdown("no training yet", elem_id="train-status")
                loss_plot = gr.LinePlot(x="step", y="loss", title="Loss", height=260)
                validation = gr.Image(label="Validation images", type="filepath", interactive=False)
        timer = gr.Timer(1.0)  # created inside the tab: a Tabs' children are its tabs
    form = [files, use_demo, name, rank, steps, lr, batch_size, prompts]
    start.click(start_training_handler(job, uploads, library, world), form, status, api_name="train_lora")
    cancel.click(cancel_training_handler(job), None, status, api_name="cancel_training")
    timer.tick(training_status(job, library), lora, [status, loss_plot, validation, lora], api_visibility="private")
