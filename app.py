"""Wordbrush web app. UI only: every handler calls a typed pipeline function.

    python app.py [--model shapes] [--device auto] [--port 7860] [--share [--auth user:password]]

Environment equivalents for hosting: WORDBRUSH_MODEL, WORDBRUSH_DEVICE, WORDBRUSH_PORT, WORDBRUSH_HOST,
WORDBRUSH_SHARE=1, WORDBRUSH_AUTH=user:password.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import shutil
import tempfile
import types
import uuid
from collections.abc import MutableMapping
from pathlib import Path

import gradio as gr
import gradio.blocks
import gradio.state_holder
import numpy as np
import pandas as pd
from PIL import Image

from pipeline import Wordbrush
from pipeline.batcher import Batcher, MainThreadRunner, T2IRequest
from pipeline.core import MAX_IMAGES
from pipeline.presets import DEFAULT_MODEL, PRESETS, available_generators, style_presets
from pipeline.recipe import read_recipe, save_png
from pipeline.understand import Understood
from train.job import LoraJob
from train.lora import write_star_demo

MAX_UPLOAD = "10mb"  # larger uploads are refused by the server before any handler runs
NO_LORA = "none"
QUEUE_POLL_IDLE_S = 0.001  # how often gradio's queue looks for new requests while nothing computes (its default)
QUEUE_POLL_BUSY_S = 0.01  # ... and while the pipeline computes (each wake-up slows it on a 2-core CPU)
MAX_TRAIN_FILES = 200  # images (+ captions) per training upload
EXAMPLES = [
    ["a red circle above a blue square"],
    ["three green triangles"],
    ["a striped yellow square to the left of a purple circle"],
    ["an outlined white triangle"],
]
REAL_EXAMPLES = [  # for diffusers checkpoints
    ["a lighthouse on a cliff at dusk"],
    ["a red fox in fresh snow, photograph"],
    ["a bowl of ramen, studio lighting"],
]
CSS = """
#t2i-gallery img, #style-out img, #inpaint-out img { image-rendering: pixelated; }
"""


class Outputs:
    """Where result PNGs (with their recipes) are written for the browser to fetch."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder or Path(tempfile.mkdtemp(prefix="wordbrush-"))

    def save(self, image: Image.Image, recipe) -> str:
        path = self.folder / f"{uuid.uuid4().hex[:12]}.png"
        save_png(image, recipe, path)
        return str(path)


def _progress_callback(progress):
    def on_step(step, total, _preview):
        progress((step, total), desc="denoising")

    return on_step


def _seed(seed, randomize) -> int:
    return -1 if randomize else int(seed if seed is not None else 0)


# ----------------------------------------------------------------------------------------------------
# Handlers: each one is what a button does; errors become gr.Error messages and the server serves on.


def lora_spec(loras: dict[str, Path], name: str | None, scale: float) -> str | None:
    """The LoRA a request asks for, as "path:scale", or None."""
    if not name or name == NO_LORA:
        return None
    if name not in loras:
        raise gr.Error(f"no LoRA named {name!r}; train one in the Train tab")
    return f"{loras[name]}:{float(scale):g}"


def reads_free_phrasing(wb) -> bool:
    """Does this model ship a prompt reader (pipeline/understand.py)? Diffusers checkpoints read any prompt."""
    stage = getattr(wb, "understanding", None)
    return stage is not None and stage.available


def read_as(recipe) -> str:
    """How the pipeline read a request's prompt, in a line for the page."""
    how = recipe.understood or "off"
    line = Understood(recipe.prompt, recipe.encoded_prompt, how).describe()
    return f"{line}\nexpanded to: {recipe.encoded_prompt}" if recipe.expanded else line


def text_to_image_handler(batchers: dict[str, Batcher], outputs: Outputs, loras: dict[str, Path] | None = None):
    loras = {} if loras is None else loras

    def handler(
        prompt, generator, steps, guidance, seed, randomize, num_images, lora=NO_LORA, lora_scale=1.0, expand=None,
        layout=True, understand=True, progress=gr.Progress(),  # noqa: B008
    ):  # fmt: skip
        if generator not in batchers:
            raise gr.Error(f"no {generator!r} generator is loaded; choose one of {', '.join(batchers)}")
        request = T2IRequest(
            prompt or "", _seed(seed, randomize), int(steps), float(guidance), int(num_images),
            lora=lora_spec(loras, lora, lora_scale), expand=None if expand is None else bool(expand),
            layout=None if layout else False,  # checked: wherever the generator can follow a layout
            understand=None if understand else False,  # checked: wherever a prompt reader is shipped
        )  # fmt: skip
        try:
            result = batchers[generator].text_to_image(request, callback=_progress_callback(progress))
        except ValueError as err:
            raise gr.Error(str(err)) from err
        paths = [outputs.save(im, r) for im, r in zip(result.images, result.recipes)]
        gallery = [(p, f"seed {r.seed}") for p, r in zip(paths, result.recipes)]
        first = result.recipes[0]
        return gallery, read_as(first), first.to_a1111(), first.seed, paths

    return handler


def live_preview_handler(batchers: dict[str, Batcher], outputs: Outputs):
    """With the GAN selected, the image follows the prompt as it is typed (one step costs milliseconds)."""
    t2i = text_to_image_handler(batchers, outputs)

    def handler(prompt, generator, seed, num_images):
        if generator != "gan" or not (prompt or "").strip():
            return gr.skip()
        return t2i(prompt, generator, 1, 0.0, seed, False, num_images, expand=False, progress=lambda *a, **k: None)

    return handler


def generator_settings(batchers: dict[str, Batcher]):
    """Steps and guidance mean nothing to the one-step GAN: show its values, locked."""

    def handler(generator: str):
        gen = batchers[generator].wb.generator
        editable = gen.kind != "gan"
        return (
            gr.update(value=gen.default_steps, interactive=editable),
            gr.update(value=gen.default_guidance, interactive=editable),
        )

    return handler


def _run_edit(batcher: Batcher, outputs: Outputs, fn, *args, **kwargs) -> tuple[str, str]:
    """Run an editing call between text-to-image batches; (result PNG path, recipe text)."""
    try:
        result = batcher.run_alone(fn, *args, **kwargs)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    recipe = result.recipes[0]
    return outputs.save(result.images[0], recipe), recipe.to_a1111()


def editing_batcher(batchers: dict[str, Batcher]) -> Batcher:
    """The generator the editing tabs use: the diffusion one (the GAN draws from text alone)."""
    return batchers.get("diffusion") or batchers.get("diffusers") or next(iter(batchers.values()))


def style_transfer_handler(batchers: dict[str, Batcher], outputs: Outputs):
    def handler(image, preset, free_text, strength, seed, randomize, understand=True, progress=gr.Progress()):  # noqa: B008
        batcher = editing_batcher(batchers)
        presets = style_presets(batcher.wb.model, batcher.wb.generator.kind)
        if image is None:
            raise gr.Error("upload an image first (or send one from the Text to image gallery)")
        style_prompt = " ".join(t for t in [(free_text or "").strip(), presets.get(preset, "")] if t)
        if not style_prompt:
            raise gr.Error("pick a style preset or describe a style")
        return _run_edit(
            batcher, outputs, batcher.wb.style_transfer, image, style_prompt=style_prompt,
            strength=float(strength), seed=_seed(seed, randomize), callback=_progress_callback(progress),
            understand=None if understand else False,
        )  # fmt: skip

    return handler


def editor_mask(value: dict) -> tuple[Image.Image, Image.Image]:
    """(image, mask) from an ImageEditor value: the mask is everything painted on any layer."""
    background = value.get("background") if value else None
    if background is None:
        raise gr.Error("upload an image to paint on first")
    painted = np.zeros(background.size[::-1], bool)
    for layer in value.get("layers") or []:
        if layer is not None:
            painted |= np.asarray(layer.convert("RGBA").getchannel("A")) >= 128
    return background, Image.fromarray(painted.astype(np.uint8) * 255)


def inpaint_handler(batchers: dict[str, Batcher], outputs: Outputs):
    def handler(editor_value, prompt, seed, randomize, zoom=True, understand=True, progress=gr.Progress()):  # noqa: B008
        batcher = editing_batcher(batchers)
        image, mask = editor_mask(editor_value)
        if not np.asarray(mask).any():
            gr.Warning("nothing is painted: paint over the part to regenerate (the image is returned unchanged)")
        return _run_edit(
            batcher, outputs, batcher.wb.inpaint, image, mask, prompt=prompt or "", seed=_seed(seed, randomize),
            zoom=bool(zoom), callback=_progress_callback(progress), understand=None if understand else False,
        )  # fmt: skip

    return handler


def load_model_handler(batchers: dict[str, Batcher], open_model):
    """The Load button: open another model (preset, folder or hub id) and swap it in for every tab.
    A model that cannot load leaves the current one serving and says why."""

    def handler(name):
        name = (name or "").strip()
        if not name:
            raise gr.Error("name a model: a preset, a model folder or a hub id")
        current = next(iter(batchers.values())).wb.model
        if name == current:
            return [gr.update()] * 5 + [f"`{name}` is already loaded"]
        try:
            fresh = open_model(name)
        except (ValueError, OSError, RuntimeError) as err:  # unknown id, offline, out of memory...
            raise gr.Error(f"could not load {name!r}: {err}") from err
        old = list(batchers.values())
        batchers.clear()
        batchers.update(fresh)
        for b in old:
            b.close()  # its worker ends once its queued requests are served; the old weights are freed
        wb = editing_batcher(batchers).wb
        gen = wb.generator
        presets = list(style_presets(name, gen.kind))
        return (
            gr.update(choices=list(batchers), value=gen.kind),
            gr.update(value=gen.default_steps),
            gr.update(value=gen.default_guidance),
            gr.update(value=wb.expansion.default),
            gr.update(choices=presets, value=presets[min(1, len(presets) - 1)]),
            f"loaded **{name}** ({', '.join(batchers)}; prompts read by `{wb.encoder_name}`)",
        )

    return handler


def restore_recipe_handler(path):
    """A dropped Wordbrush PNG fills the Text to image form with its recipe."""
    unchanged = [gr.update()] * 7
    if path is None:
        return unchanged
    try:
        recipe = read_recipe(Image.open(path))
    except (OSError, ValueError):
        recipe = None
    if recipe is None:
        gr.Warning("that file holds no Wordbrush recipe")
        return unchanged
    gr.Info(f"restored the recipe of seed {recipe.seed}")
    # An image made without a plan (layout off, or before the layout stage) is remade with layout off
    return recipe.prompt, recipe.generator, recipe.steps, recipe.guidance, recipe.seed, False, bool(recipe.layout)


def describe_input_handler(batchers: dict[str, Batcher]):
    """An image arriving in Style transfer that carries a recipe (sent from the gallery, or a Wordbrush PNG)
    fills an empty "Describe the content" box with its prompt, less any style phrase: restyling then keeps
    the content (measured: content kept 0.86 with the content described, 0.09 with a preset alone)."""

    def handler(path, text):
        if path is None or (text or "").strip():
            return gr.update()
        try:
            recipe = read_recipe(Image.open(path))
        except (OSError, ValueError):
            recipe = None
        if recipe is None:
            return gr.update()
        wb = editing_batcher(batchers).wb
        content = recipe.prompt
        for phrase in style_presets(wb.model, wb.generator.kind).values():
            content = content.replace(phrase, "")
        return " ".join(content.split())

    return handler


def start_training_handler(job: LoraJob, data_root: Path):
    """The Train button: gather the uploaded images and captions (or the demo set) and start the job."""

    def handler(files, use_demo, name, rank, steps, lr, batch_size, prompts):
        if job is None:
            raise gr.Error("training is not enabled on this server")
        name = "".join(c for c in (name or "").strip() if c.isalnum() or c in "-_") or "my-lora"
        folder = data_root / f"{name}-{uuid.uuid4().hex[:6]}"
        if use_demo:
            write_star_demo(folder)
        else:
            if not files:
                raise gr.Error(
                    "upload images with captions (.txt beside each, or a metadata.jsonl), or tick the demo set"
                )
            if len(files) > MAX_TRAIN_FILES:
                raise gr.Error(f"{len(files)} files; at most {MAX_TRAIN_FILES} per training")
            folder.mkdir(parents=True)
            for f in files:
                shutil.copy(f, folder / Path(f).name)
        validation = [p.strip() for p in (prompts or "").split(";") if p.strip()]
        knobs = {"rank": int(rank), "steps": int(steps), "lr": float(lr), "batch_size": int(batch_size)}
        try:
            job.start(name=name, data=folder, prompts=validation, **knobs)
        except ValueError as err:
            raise gr.Error(str(err)) from err
        return f"started **{name}**"

    return handler


def training_status(job: LoraJob, loras: dict[str, Path]):
    """Polled every second: status, loss curve, validation sheet, and the LoRA list once one is ready."""

    def handler(current_lora):
        st = job.state
        if st.lora is not None and st.out is not None:
            loras[st.out.name] = st.lora  # appears in the Text to image list at once
        curve = (
            pd.DataFrame(st.losses, columns=["step", "loss"]) if st.losses else pd.DataFrame({"step": [], "loss": []})
        )
        sheet = job.latest_validation()
        status = f"**{st.status}** {st.message}" if st.status != "idle" else "no training yet"
        choices = [NO_LORA, *loras]
        return status, curve, (str(sheet) if sheet else None), gr.update(choices=choices, value=current_lora)

    return handler


# ----------------------------------------------------------------------------------------------------
# Layout


def seed_row() -> tuple[gr.Number, gr.Checkbox]:
    """A seed box with its "random seed" toggle, as every tab has one (read by `_seed`)."""
    with gr.Row():
        return gr.Number(value=0, precision=0, minimum=0, label="Seed"), gr.Checkbox(value=False, label="Random seed")


def build_demo(
    batchers: dict[str, Batcher],
    *,
    outputs: Outputs | None = None,
    job: LoraJob | None = None,
    loras: dict[str, Path] | None = None,
    open_model=None,
) -> gr.Blocks:
    """The app around one loaded Wordbrush per generator kind ("diffusion", "gan"); the editing tabs
    use the diffusion generator. open_model(name) -> {kind: Batcher} lets the page switch models."""
    kinds = list(batchers)
    batcher = editing_batcher(batchers)
    wb = batcher.wb
    gen = wb.generator
    outputs = outputs or Outputs()
    loras = {} if loras is None else loras  # name -> LoRA file: given at start, and filled as trainings finish
    presets = style_presets(wb.model, gen.kind)
    real = gen.kind == "diffusers"
    understands = reads_free_phrasing(wb)
    with gr.Blocks(title="Wordbrush") as demo:
        gr.Markdown(
            "# Wordbrush\nA language-model prompt encoder chained into "
            f"{' and '.join(kinds)} generators. Model `{wb.model}`, prompts read by `{wb.encoder_name}`, "
            f"{gen.resolution} px images (shown enlarged; downloads are the native PNGs with their recipe)."
        )
        with gr.Row(visible=open_model is not None):
            model_box = gr.Dropdown(
                list(PRESETS), value=wb.model, allow_custom_value=True, label="Model",
                info="a preset, a model folder or a diffusers hub id", scale=3,
            )  # fmt: skip
            model_load = gr.Button("Load model", scale=1)
            model_status = gr.Markdown(f"serving **{wb.model}**", elem_id="model-status")
        results = gr.State([])  # paths of the last Text to image results
        selected = gr.State(0)

        with gr.Tabs() as tabs:
            with gr.Tab("Text to image", id="t2i"):
                with gr.Row():
                    with gr.Column(scale=2):
                        prompt = gr.Textbox(label="Prompt", placeholder="a red circle above a blue square", lines=2)
                        with gr.Row():
                            run = gr.Button("Generate", variant="primary")
                            stop = gr.Button("Stop", variant="stop")
                        with gr.Accordion("Settings", open=True):
                            generator = gr.Dropdown(
                                kinds, value=gen.kind, label="Generator", info="gan: one step, follows your typing"
                            )
                            steps = gr.Slider(1, 50, value=gen.default_steps, step=1, label="Steps")
                            guidance = gr.Slider(0, 10, value=gen.default_guidance, step=0.5, label="Guidance")
                            seed, randomize = seed_row()
                            num_images = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images")
                            with gr.Row():
                                lora = gr.Dropdown(
                                    [NO_LORA, *loras], value=NO_LORA, label="LoRA", allow_custom_value=False
                                )
                                lora_scale = gr.Slider(0, 1.5, value=1.0, step=0.05, label="LoRA scale")
                            expand = gr.Checkbox(
                                value=batcher.wb.expansion.default,
                                label="Expand the prompt with the language model (SmolLM2) first",
                            )
                            understand = gr.Checkbox(
                                value=understands,
                                interactive=understands,
                                label="Understand free phrasing (language model)",
                                info="reads 'a crimson disc over a navy cube' as the model's own words; "
                                "off: the prompt as written",
                            )
                            layout = gr.Checkbox(
                                value=True,
                                label="Plan where two named objects go (layout stage, diffusion)",
                                info="each object's words steer only its own box, so 'above' and 'left of' hold",
                            )
                        gr.Examples(REAL_EXAMPLES if real else EXAMPLES, inputs=[prompt])
                        recipe_file = gr.File(label="Drop a Wordbrush PNG to restore its settings", file_types=[".png"])
                    with gr.Column(scale=3):
                        gallery = gr.Gallery(label="Images", columns=2, height=560, elem_id="t2i-gallery", format="png")
                        seen = gr.Textbox(
                            label="How the prompt was understood", interactive=False, elem_id="t2i-understood"
                        )
                        recipe = gr.Textbox(label="Recipe", interactive=False, lines=2, elem_id="t2i-recipe")
                        with gr.Row():
                            to_style = gr.Button("Send selected to Style transfer")
                            to_inpaint = gr.Button("Send selected to Inpainting")

            with gr.Tab("Style transfer", id="style"):
                with gr.Row():
                    with gr.Column():
                        style_in = gr.Image(
                            label="Input image", type="filepath", sources=["upload", "clipboard"], elem_id="style-in"
                        )
                        preset = gr.Radio(
                            list(presets), value=list(presets)[min(1, len(presets) - 1)], label="Style preset"
                        )
                        style_text = gr.Textbox(
                            label="Describe the content or a style (optional)", placeholder="a red circle"
                        )
                        strength = gr.Slider(0, 1, value=0.6, step=0.05, label="Strength (0 keeps the input)")
                        style_seed, style_random = seed_row()
                        style_run = gr.Button("Apply style", variant="primary")
                    with gr.Column():
                        style_out = gr.Image(
                            label="Result", type="filepath", format="png", elem_id="style-out", interactive=False
                        )
                        style_recipe = gr.Textbox(label="Recipe", interactive=False, lines=2, elem_id="style-recipe")
                        style_to_inpaint = gr.Button("Send result to Inpainting")

            with gr.Tab("Inpainting", id="inpaint"):
                with gr.Row():
                    with gr.Column():
                        editor = gr.ImageEditor(
                            label="Paint over what to regenerate", type="pil", sources=["upload", "clipboard"],
                            brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=12), layers=False,
                            elem_id="inpaint-editor",
                        )  # fmt: skip
                        inpaint_prompt = gr.Textbox(label="What goes there", placeholder="a yellow triangle")
                        inpaint_seed, inpaint_random = seed_row()
                        inpaint_zoom = gr.Checkbox(
                            value=True, label="Zoom into the mask",
                            info="redraw a small mask's area on the model's whole canvas, then fit it back",
                        )  # fmt: skip
                        inpaint_run = gr.Button("Inpaint", variant="primary")
                    with gr.Column():
                        inpaint_out = gr.Image(
                            label="Result", type="filepath", format="png", elem_id="inpaint-out", interactive=False
                        )
                        inpaint_recipe = gr.Textbox(
                            label="Recipe", interactive=False, lines=2, elem_id="inpaint-recipe"
                        )
                        inpaint_to_style = gr.Button("Send result to Style transfer")

            with gr.Tab("Train", id="train"):
                gr.Markdown(
                    "Teach the diffusion generator something new from a few captioned images (LoRA). "
                    "One training at a time; generating keeps working meanwhile; the result appears in the "
                    "Text to image tab's LoRA list."
                )
                with gr.Row():
                    with gr.Column():
                        train_files = gr.File(
                            label="Images with captions: a .txt beside each image, or a metadata.jsonl",
                            file_count="multiple", file_types=["image", ".txt", ".jsonl"],
                        )  # fmt: skip
                        use_demo = gr.Checkbox(
                            value=False, label="Use the demo set instead: 40 stars, a shape the model never saw"
                        )
                        train_name = gr.Textbox(value="stars", label="Name")
                        with gr.Row():
                            rank = gr.Slider(2, 32, value=8, step=2, label="Rank")
                            train_steps = gr.Slider(20, 2000, value=300, step=10, label="Steps")
                        with gr.Row():
                            lr = gr.Number(value=1e-3, label="Learning rate")
                            batch_size = gr.Slider(2, 32, value=16, step=2, label="Batch size")
                        val_prompts = gr.Textbox(
                            value="a red star; a blue star; two green stars", label="Validation prompts (;-separated)"
                        )
                        with gr.Row():
                            train_start = gr.Button("Train", variant="primary")
                            train_cancel = gr.Button("Cancel (keeps the last checkpoint)", variant="stop")
                    with gr.Column():
                        train_status = gr.Markdown("no training yet", elem_id="train-status")
                        loss_plot = gr.LinePlot(x="step", y="loss", title="Loss", height=260)
                        validation = gr.Image(label="Validation images", type="filepath", interactive=False)

        # Events
        t2i_inputs = [
            prompt, generator, steps, guidance, seed, randomize, num_images, lora, lora_scale, expand, layout,
            understand,
        ]  # fmt: skip
        t2i_outputs = [gallery, seen, recipe, seed, results]
        t2i = text_to_image_handler(batchers, outputs, loras)
        prompt.change(
            live_preview_handler(batchers, outputs), [prompt, generator, seed, num_images], t2i_outputs,
            api_name=False, trigger_mode="always_last", show_progress="hidden", concurrency_limit=4,
        )  # fmt: skip
        generator.change(generator_settings(batchers), generator, [steps, guidance], api_name=False)
        event = run.click(t2i, t2i_inputs, t2i_outputs, api_name="text_to_image", concurrency_limit=32)
        submit = prompt.submit(t2i, t2i_inputs, t2i_outputs, api_name=False, concurrency_limit=32)
        stop.click(None, None, None, cancels=[event, submit])
        recipe_file.upload(
            restore_recipe_handler, recipe_file, [prompt, generator, steps, guidance, seed, randomize, layout],
            api_name=False,
        )  # fmt: skip

        def remember(evt: gr.SelectData):
            return evt.index

        gallery.select(remember, None, selected, api_name=False)

        def pick(paths, index):
            if not paths:
                raise gr.Error("generate an image first")
            return paths[min(index or 0, len(paths) - 1)]

        def send_to(tab: str):
            def send(value):
                if value is None:
                    raise gr.Error("there is no image to send yet")
                return value, gr.Tabs(selected=tab)

            return send

        to_style.click(pick, [results, selected], style_in, api_name=False).then(
            lambda: gr.Tabs(selected="style"), None, tabs, api_name=False
        )
        to_inpaint.click(pick, [results, selected], editor, api_name=False).then(
            lambda: gr.Tabs(selected="inpaint"), None, tabs, api_name=False
        )
        style_run.click(
            style_transfer_handler(batchers, outputs),
            [style_in, preset, style_text, strength, style_seed, style_random, understand],
            [style_out, style_recipe],
            api_name="style_transfer",
        )
        style_in.change(describe_input_handler(batchers), [style_in, style_text], style_text, api_name=False)
        style_to_inpaint.click(send_to("inpaint"), style_out, [editor, tabs], api_name=False)
        inpaint_run.click(
            inpaint_handler(batchers, outputs),
            [editor, inpaint_prompt, inpaint_seed, inpaint_random, inpaint_zoom, understand],
            [inpaint_out, inpaint_recipe],
            api_name="inpaint",
        )
        inpaint_to_style.click(send_to("style"), inpaint_out, [style_in, tabs], api_name=False)
        if open_model is not None:
            model_load.click(
                load_model_handler(batchers, open_model), model_box,
                [generator, steps, guidance, expand, preset, model_status], api_name=False,
            )  # fmt: skip
        if job is not None:
            data_root = Path(tempfile.mkdtemp(prefix="wordbrush-train-"))
            train_start.click(
                start_training_handler(job, data_root),
                [train_files, use_demo, train_name, rank, train_steps, lr, batch_size, val_prompts],
                train_status, api_name="train_lora",
            )  # fmt: skip
            train_cancel.click(lambda: job.cancel() or "cancelling...", None, train_status, api_name=False)
            gr.Timer(1.0).tick(
                training_status(job, loras), lora, [train_status, loss_plot, validation, lora], api_name=False
            )
    return demo


def load_models(model: str, **knobs) -> dict[str, Wordbrush]:
    """A model with each of its generators (they share the loaded prompt encoder), by generator kind."""
    wb = Wordbrush.load(model, **knobs)
    models = {wb.generator.kind: wb}
    for kind in available_generators(model):
        if kind not in models:
            models[kind] = wb.with_generator(kind)
    if on_zero_gpu():
        import spaces  # only present on Hugging Face Spaces

        for m in models.values():
            m.generator.generate = spaces.GPU(m.generator.generate)
    return models


def on_zero_gpu() -> bool:
    """True on a Hugging Face ZeroGPU Space, where GPU work must run inside @spaces.GPU."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


# ----------------------------------------------------------------------------------------------------
# Gradio tuning: two measured costs of gradio's internals on a 2-core CPU. Each checks that what it tunes
# is there; with a gradio version that lacks it, nothing changes (tests/test_app.py fails to say so).


def pace_queue(demo: gr.Blocks, runner: MainThreadRunner) -> None:
    """Gradio's queue looks for new requests every 1 ms. Each wake-up of the server's event loop interrupts
    the pipeline's two OpenMP threads: measured here, an asyncio loop polling at 1 ms beside the diffusion
    call made it 0.363 s instead of 0.316 (+15%); at 10 ms, 0.315. So the queue polls every 10 ms while the
    runner computes and every 1 ms while it waits (a lone request is picked up within 1 ms, not 10)."""
    queue = getattr(demo, "_queue", None)
    if queue is None or not hasattr(queue, "sleep_when_free"):
        return

    def on_busy(busy: bool) -> None:
        queue.sleep_when_free = QUEUE_POLL_BUSY_S if busy else QUEUE_POLL_IDLE_S

    on_busy(False)
    runner.on_busy = on_busy


@functools.lru_cache(maxsize=4096)
def _signature(fn) -> inspect.Signature:
    return inspect.signature(fn)


class _RememberedSignatures:
    """The `inspect` module, but `signature` remembers its answer for each callable."""

    def __getattr__(self, name):
        return getattr(inspect, name)

    @staticmethod
    def signature(fn) -> inspect.Signature:
        try:
            return _signature(fn)
        except TypeError:  # an unhashable callable
            return inspect.signature(fn)


class _SessionConfigs(MutableMapping):
    """A session's copy of each component's config, which gradio reads only to write a deep link: each one is
    built when first read (or updated), from the component as it was when the session began."""

    def __init__(self, blocks_config, ids):
        self._blocks_config = blocks_config
        self._components = {k: v for k, v in blocks_config.blocks.items() if k in ids}  # gradio's order
        self._built: dict[int, dict] = {}
        self._values: dict[int, object] = {}  # values of a call's inputs and outputs, for configs not built yet

    def __getitem__(self, key: int) -> dict:
        if key not in self._built:
            config = self._built[key] = self._blocks_config.config_for_block(key, [], self._components[key])
            if key in self._values and "props" in config:
                config["props"]["value"] = self._values.pop(key)
        return self._built[key]

    def __setitem__(self, key: int, config: dict) -> None:
        self._components.setdefault(key, None)
        self._values.pop(key, None)
        self._built[key] = config

    def set_value(self, key: int, value) -> None:
        """Gradio's `SessionState._update_value_in_config`, deferred to the config's build."""
        if key not in self._components:
            self._components[key] = self._blocks_config.blocks[key]
        if key not in self._built:
            self._values[key] = value
        elif "props" in self._built[key]:
            self._built[key]["props"]["value"] = value

    def __delitem__(self, key: int) -> None:
        del self._components[key]
        self._built.pop(key, None)

    def __iter__(self):
        return iter(self._components)

    def __len__(self) -> int:
        return len(self._components)


class _QuickSessionState(gradio.state_holder.SessionState):
    """Gradio's session, whose per-component configs are built when read rather than all up front."""

    def __init__(self, blocks):
        super().__init__(types.SimpleNamespace(default_config=blocks.default_config, blocks={}))
        self.config_values = _SessionConfigs(self.blocks_config, blocks.blocks)

    def _update_value_in_config(self, key: int, value) -> None:
        self.config_values.set_value(key, value)


def quicker_sessions() -> None:
    """Gradio copies every component's config for each new session, and each call over plain HTTP (curl,
    scripts) is a new session: 4-5 ms a call with this app's 106 components. Half of it was `inspect.signature`
    of the same few component classes, asked again for every component: remembered. The rest builds configs
    that gradio reads only when someone asks for a deep link: built then, one by one (1.7 -> 0.01 ms)."""
    if getattr(gradio.blocks, "inspect", None) is inspect:
        gradio.blocks.inspect = _RememberedSignatures()
    gradio.state_holder.SessionState = _QuickSessionState


def main() -> None:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Serve the Wordbrush web app.")
    parser.add_argument("--model", default=env("WORDBRUSH_MODEL", DEFAULT_MODEL), help="preset, folder or hub id")
    parser.add_argument("--device", default=env("WORDBRUSH_DEVICE", "auto"), help="auto, cpu or cuda")
    parser.add_argument("--host", default=env("WORDBRUSH_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("WORDBRUSH_PORT", "7860")))
    parser.add_argument("--share", action="store_true", default=env("WORDBRUSH_SHARE") == "1", help="public link")
    parser.add_argument("--auth", default=env("WORDBRUSH_AUTH"), help="user:password required to open the app")
    parser.add_argument("--lora-dir", default=env("WORDBRUSH_LORA_DIR"), help="list this folder's .safetensors LoRAs")
    parser.add_argument("--offload", action="store_true", help="diffusers models: model CPU offload (small GPUs)")
    parser.add_argument("--compile", action="store_true", help="diffusers models: torch.compile the denoiser")
    parser.add_argument("--precision", default=env("WORDBRUSH_PRECISION", "auto"), help="auto, bf16 or fp32")
    args = parser.parse_args()
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    if args.share and not auth:
        print("note: a share link is public; add --auth user:password to keep strangers out")
    runner = MainThreadRunner()  # pipeline calls run on this (main) thread: 1.6x faster on CPU than on a worker
    quicker_sessions()
    knobs = {"device": args.device, "offload": args.offload, "compile": args.compile, "precision": args.precision}

    def open_model(name: str) -> dict[str, Batcher]:
        return {kind: Batcher(m, runner=runner) for kind, m in load_models(name, **knobs).items()}

    batchers = open_model(args.model)  # once per process (and again when the page loads another model)
    wb = editing_batcher(batchers).wb
    if reads_free_phrasing(wb):
        wb.understanding.load_in_background()  # the page serves at once; the reader is ready a second later
    # LoRA training runs on the embedded model; diffusers checkpoints load LoRAs trained elsewhere (--lora-dir).
    job = (
        None
        if wb.generator.kind == "diffusers"
        else LoraJob(model=args.model, runs_dir=Path(tempfile.gettempdir()) / "wordbrush-loras")
    )
    loras = {p.stem: p for p in sorted(Path(args.lora_dir).glob("*.safetensors"))} if args.lora_dir else {}
    demo = build_demo(batchers, job=job, loras=loras, open_model=open_model)
    demo.queue(max_size=256).launch(
        server_name=args.host, server_port=args.port, share=args.share, auth=auth,
        max_file_size=MAX_UPLOAD, css=CSS, prevent_thread_lock=True,
    )  # fmt: skip
    pace_queue(demo, runner)
    try:
        runner.serve_forever()
    except KeyboardInterrupt:
        demo.close()


if __name__ == "__main__":
    main()
