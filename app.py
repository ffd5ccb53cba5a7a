"""Wordbrush web app: the page and its handlers. Each handler checks its inputs and calls a typed pipeline method;
serving (batching, the main-thread runner, loading models, the LoRA library) lives in pipeline/serve.py.

    python app.py [--model shapes] [--device auto] [--port 7860] [--share [--auth user:password]]

Environment equivalents for hosting: WORDBRUSH_MODEL, WORDBRUSH_DEVICE, WORDBRUSH_PORT, WORDBRUSH_HOST,
WORDBRUSH_SHARE=1, WORDBRUSH_AUTH=user:password, WORDBRUSH_DATA (where trained LoRAs are kept),
WORDBRUSH_ALLOW_MODEL_LOAD=1 (show the Model box: whoever opens the page may then switch the model for everyone).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shutil
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from pipeline.batcher import Batcher, MainThreadRunner, T2IRequest
from pipeline.core import MAX_IMAGES
from pipeline.diffusion import MAX_STEPS
from pipeline.images import open_image
from pipeline.memory import release_memory
from pipeline.presets import DEFAULT_MODEL, PRESETS, style_presets
from pipeline.recipe import read_recipe, with_recipe
from pipeline.serve import (
    LIMITS,
    LoraLibrary,
    default_data_dir,
    editing_batcher,
    open_models,
    real,
    seed_of,
    whole,
)  # fmt: skip
from pipeline.understand import Understood
from train.job import LoraJob
from train.lora import write_star_demo

log = logging.getLogger("wordbrush.app")
NO_LORA = "none"
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


def reports_errors(handler):
    """Every failure reaches the page (and the API) as a message, and the server serves on: a ValueError says
    what to change; anything else is logged with its traceback and reported without the server's internals."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except ValueError as err:
            raise gr.Error(str(err)) from None
        except Exception as err:
            log.exception("a request failed")
            raise gr.Error(f"the server could not finish this request ({type(err).__name__}); try again") from None

    return wrapper


def _progress_callback(progress):
    def on_step(step, total, _preview):
        progress((step, total), desc="denoising")

    return on_step


def reads_free_phrasing(wb) -> bool:
    """Does this model ship a prompt reader (pipeline/understand.py)? Diffusers checkpoints read any prompt."""
    stage = getattr(wb, "understanding", None)
    return stage is not None and stage.available


def read_as(recipe) -> str:
    """How the pipeline read a request's prompt, in a line for the page."""
    how = recipe.understood or "off"
    line = Understood(recipe.prompt, recipe.encoded_prompt, how).describe()
    return f"{line}\nexpanded to: {recipe.encoded_prompt}" if recipe.expanded else line


# ----------------------------------------------------------------------------------------------------
# Handlers: what each button does. Results are PIL images carrying their recipe, written once, as PNGs, by
# gradio into its cache (which `delete_cache` empties on a schedule).


def text_to_image_handler(batchers: dict[str, Batcher], library: LoraLibrary | None = None):
    library = library or LoraLibrary()

    @reports_errors
    def text_to_image(
        prompt, generator, steps, guidance, seed, randomize, num_images, lora=NO_LORA, lora_scale=1.0, expand=None,
        layout=True, understand=True, progress=gr.Progress(),  # noqa: B008
    ):  # fmt: skip
        if generator not in batchers:
            raise ValueError(f"no {generator!r} generator is loaded; choose one of {', '.join(batchers)}")
        request = T2IRequest(
            prompt or "", seed_of(seed, randomize), whole(steps, "steps", 1, MAX_STEPS),
            real(guidance, "guidance", 0, 30), whole(num_images, "number of images", 1, MAX_IMAGES),
            lora=library.spec(lora, lora_scale), expand=None if expand is None else bool(expand),
            layout=None if layout else False,  # checked: wherever the generator can follow a layout
            understand=None if understand else False,  # checked: wherever a prompt reader is shipped
        )  # fmt: skip
        result = batchers[generator].text_to_image(request, callback=_progress_callback(progress))
        gallery = [(with_recipe(im, r), f"seed {r.seed}") for im, r in zip(result.images, result.recipes)]
        first = result.recipes[0]
        return gallery, read_as(first), first.to_a1111(), first.seed

    return text_to_image


def live_preview_handler(batchers: dict[str, Batcher]):
    """With the GAN selected, the image follows the prompt as it is typed (one step costs milliseconds)."""
    t2i = text_to_image_handler(batchers)

    def live_preview(prompt, generator, seed, num_images):
        if generator != "gan" or not (prompt or "").strip():
            return gr.skip()
        return t2i(prompt, generator, 1, 0.0, seed, False, num_images, expand=False, progress=lambda *a, **k: None)

    return live_preview


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


def _run_edit(batcher: Batcher, fn, *args, **kwargs) -> tuple[Image.Image, str]:
    """Run an editing call between text-to-image batches; (result carrying its recipe, recipe text)."""
    result = batcher.run_alone(fn, *args, **kwargs)
    recipe = result.recipes[0]
    return with_recipe(result.images[0], recipe), recipe.to_a1111()


def style_transfer_handler(batchers: dict[str, Batcher]):
    @reports_errors
    def style_transfer(image, preset, free_text, strength, seed, randomize, understand=True, progress=gr.Progress()):  # noqa: B008
        batcher = editing_batcher(batchers)
        presets = style_presets(batcher.wb.model, batcher.wb.generator.kind)
        if image is None:
            raise ValueError("upload an image first (or send one from the Text to image gallery)")
        style_prompt = " ".join(t for t in [(free_text or "").strip(), presets.get(preset, "")] if t)
        if not style_prompt:
            raise ValueError("pick a style preset or describe a style")
        return _run_edit(
            batcher, batcher.wb.style_transfer, open_image(image), style_prompt=style_prompt,
            strength=real(strength, "strength", 0, 1), seed=seed_of(seed, randomize),
            callback=_progress_callback(progress), understand=None if understand else False,
        )  # fmt: skip

    return style_transfer


def editor_mask(value: dict | None) -> tuple[Image.Image, Image.Image]:
    """(image, mask) from an ImageEditor value (paths or PIL images): the mask is everything painted on any layer."""
    if not value or value.get("background") is None:
        raise ValueError("upload an image to paint on first")
    background = open_image(value["background"])
    painted = np.zeros(background.size[::-1], bool)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        layer = layer if isinstance(layer, Image.Image) else Image.open(layer)
        if layer.size != background.size:
            raise ValueError(f"the painted layer is {layer.size[0]}x{layer.size[1]} but the image is "
                             f"{background.size[0]}x{background.size[1]}; paint on the image itself")  # fmt: skip
        painted |= np.asarray(open_layer_alpha(layer)) >= 128
    return background, Image.fromarray(painted.astype(np.uint8) * 255)


def open_layer_alpha(layer: Image.Image) -> Image.Image:
    try:
        return layer.convert("RGBA").getchannel("A")
    except OSError as err:
        raise ValueError(f"the painted layer is not a readable image ({type(err).__name__})") from None


def inpaint_handler(batchers: dict[str, Batcher]):
    @reports_errors
    def inpaint(editor_value, prompt, seed, randomize, zoom=True, understand=True, progress=gr.Progress()):  # noqa: B008
        batcher = editing_batcher(batchers)
        image, mask = editor_mask(editor_value)
        if not np.asarray(mask).any():
            gr.Warning("nothing is painted: paint over the part to regenerate (the image is returned unchanged)")
        return _run_edit(
            batcher, batcher.wb.inpaint, image, mask, prompt=prompt or "", seed=seed_of(seed, randomize),
            zoom=bool(zoom), callback=_progress_callback(progress), understand=None if understand else False,
        )  # fmt: skip

    return inpaint


def load_model_handler(batchers: dict[str, Batcher], open_model):
    """The Load button (only where the host allows it): open another model (preset, folder or hub id) and swap
    it in for every tab. A model that cannot load leaves the current one serving; the reason goes to the log."""

    @reports_errors
    def load_model(name):
        name = (name or "").strip()
        if not name:
            raise ValueError("name a model: a preset, a model folder or a hub id")
        current = next(iter(batchers.values())).wb.model
        if name == current:
            return [gr.update()] * 5 + [f"`{name}` is already loaded"]
        try:
            fresh = open_model(name)
        except Exception as err:  # unknown id, offline, not a model, out of memory...
            log.warning("could not load %r: %s", name, err)
            raise ValueError(f"could not load {name!r}: it is not a preset, a model folder or a reachable hub id "
                             "that this server can open (the server log says why)") from None  # fmt: skip
        old = list(batchers.values())
        batchers.clear()
        batchers.update(fresh)
        for b in old:
            b.close()  # its worker ends once its queued requests are served; the old weights are freed
        release_memory()
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

    return load_model


def restore_recipe_handler(path):
    """A dropped Wordbrush PNG fills the Text to image form with its recipe."""
    unchanged = [gr.update()] * 7
    if path is None:
        return unchanged
    try:
        recipe = read_recipe(Image.open(path))
    except Exception:  # not an image, or a recipe that does not parse
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
    the content."""

    def handler(path, text):
        if path is None or (text or "").strip():
            return gr.update()
        try:
            recipe = read_recipe(Image.open(path))
        except Exception:
            recipe = None
        if recipe is None:
            return gr.update()
        wb = editing_batcher(batchers).wb
        content = recipe.prompt
        for phrase in style_presets(wb.model, wb.generator.kind).values():
            content = content.replace(phrase, "")
        return " ".join(content.split())

    return handler


def start_training_handler(job: LoraJob, uploads: Path, library: LoraLibrary | None = None):
    """The Train button: gather the uploaded images and captions (or the demo set) and start a fresh run."""

    @reports_errors
    def train_lora(files, use_demo, name, rank, steps, lr, batch_size, prompts, request: gr.Request = None):
        name = "".join(c for c in (name or "").strip() if c.isalnum() or c in "-_")[:40] or "my-lora"
        knobs = {"rank": whole(rank, "rank", 1, 64), "steps": whole(steps, "steps", 1, 5000),
                 "lr": real(lr, "learning rate", 1e-6, 1.0),
                 "batch_size": whole(batch_size, "batch size", 1, 64)}  # fmt: skip
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
        if job.running:
            raise ValueError("a training is already running on this server; try again when it ends")
        folder = uploads / uuid.uuid4().hex
        if use_demo:
            write_star_demo(folder)
        else:
            folder.mkdir(parents=True)
            for f in files:
                shutil.copy(f, folder / Path(f).name)
        if library is not None:
            library.prune()
        validation = [p.strip() for p in (prompts or "").split(";") if p.strip()]
        owner = request.session_hash if request is not None else None
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
        job.cancel(owner=request.session_hash if request is not None else None)
        return "cancelling at the next step..."

    return cancel


def training_status(job: LoraJob, library: LoraLibrary):
    """Polled every second: status, loss curve, validation sheet, and the LoRA list (every finished LoRA)."""

    def handler(current_lora):
        st = job.state
        curve = pd.DataFrame(st.losses or [], columns=["step", "loss"])
        sheet = job.latest_validation()
        status = f"**{st.status}** {st.message}" if st.status != "idle" else "no training yet"
        return status, curve, (str(sheet) if sheet else None), gr.update(choices=[NO_LORA, *library.names()])

    return handler


# ----------------------------------------------------------------------------------------------------
# Layout


def seed_row() -> tuple[gr.Number, gr.Checkbox]:
    """A seed box with its "random seed" toggle, as every tab has one (read by `seed_of`)."""
    with gr.Row():
        return gr.Number(value=0, minimum=0, label="Seed"), gr.Checkbox(value=False, label="Random seed")


def build_demo(
    batchers: dict[str, Batcher], *, job: LoraJob | None = None, library: LoraLibrary | None = None,
    uploads: Path | None = None, open_model=None,
) -> gr.Blocks:  # fmt: skip
    """The app around one loaded Wordbrush per generator kind ("diffusion", "gan"); the editing tabs use the
    diffusion generator. open_model(name) -> {kind: Batcher}, given only where the host allows it, adds the
    Model box that switches the model for everyone."""
    kinds = list(batchers)
    batcher = editing_batcher(batchers)
    wb = batcher.wb
    gen = wb.generator
    library = library or LoraLibrary()
    presets = style_presets(wb.model, gen.kind)
    real_model = gen.kind == "diffusers"
    understands = reads_free_phrasing(wb)
    delete_cache = (LIMITS.cache_every_s, LIMITS.cache_age_s)
    with gr.Blocks(title="Wordbrush", delete_cache=delete_cache) as demo:
        gr.Markdown(
            "# Wordbrush\nA language-model prompt encoder chained into "
            f"{' and '.join(kinds)} generators. Model `{wb.model}`, prompts read by `{wb.encoder_name}`, "
            f"{gen.resolution} px images (shown enlarged; downloads are the native PNGs with their recipe)."
        )
        if open_model is not None:
            with gr.Row():
                model_box = gr.Dropdown(
                    list(PRESETS), value=wb.model, allow_custom_value=True, label="Model",
                    info="a preset, a model folder or a diffusers hub id (switches the model for every visitor)",
                    scale=3,
                )  # fmt: skip
                model_load = gr.Button("Load model", scale=1)
                model_status = gr.Markdown(f"serving **{wb.model}**", elem_id="model-status")
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
                                    [NO_LORA, *library.names()], value=NO_LORA, label="LoRA", allow_custom_value=True
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
                        gr.Examples(REAL_EXAMPLES if real_model else EXAMPLES, inputs=[prompt])
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
                            label="Paint over what to regenerate", type="filepath", sources=["upload", "clipboard"],
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
        t2i_outputs = [gallery, seen, recipe, seed]
        t2i = text_to_image_handler(batchers, library)
        prompt.change(
            live_preview_handler(batchers), [prompt, generator, seed, num_images], t2i_outputs,
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
        demo.load(lambda: gr.update(choices=[NO_LORA, *library.names()]), None, lora, api_name=False)

        def remember(evt: gr.SelectData):
            return evt.index

        gallery.select(remember, None, selected, api_name=False)

        def pick(items, index):
            if not items:
                raise gr.Error("generate an image first")
            item = items[min(index or 0, len(items) - 1)]
            return item[0] if isinstance(item, (tuple, list)) else item

        def send_to(tab: str):
            def send(value):
                if value is None:
                    raise gr.Error("there is no image to send yet")
                return value, gr.Tabs(selected=tab)

            return send

        to_style.click(pick, [gallery, selected], style_in, api_name=False).then(
            lambda: gr.Tabs(selected="style"), None, tabs, api_name=False
        )
        to_inpaint.click(pick, [gallery, selected], editor, api_name=False).then(
            lambda: gr.Tabs(selected="inpaint"), None, tabs, api_name=False
        )
        style_run.click(
            style_transfer_handler(batchers),
            [style_in, preset, style_text, strength, style_seed, style_random, understand],
            [style_out, style_recipe],
            api_name="style_transfer",
        )
        style_in.change(describe_input_handler(batchers), [style_in, style_text], style_text, api_name=False)
        style_to_inpaint.click(send_to("inpaint"), style_out, [editor, tabs], api_name=False)
        inpaint_run.click(
            inpaint_handler(batchers),
            [editor, inpaint_prompt, inpaint_seed, inpaint_random, inpaint_zoom, understand],
            [inpaint_out, inpaint_recipe],
            api_name="inpaint",
        )
        inpaint_to_style.click(send_to("style"), inpaint_out, [style_in, tabs], api_name=False)
        if open_model is not None:
            model_load.click(
                load_model_handler(batchers, open_model), model_box,
                [generator, steps, guidance, expand, preset, model_status], api_name="load_model",
            )  # fmt: skip
        if job is not None:
            train_start.click(
                start_training_handler(job, uploads or default_data_dir() / "uploads", library),
                [train_files, use_demo, train_name, rank, train_steps, lr, batch_size, val_prompts],
                train_status, api_name="train_lora",
            )  # fmt: skip
            train_cancel.click(cancel_training_handler(job), None, train_status, api_name="cancel_training")
            gr.Timer(1.0).tick(
                training_status(job, library), lora, [train_status, loss_plot, validation, lora], api_name=False
            )
    return demo


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
    parser.add_argument("--data-dir", default=str(default_data_dir()), help="where trained LoRAs are kept")
    parser.add_argument(
        "--allow-model-load", action="store_true", default=env("WORDBRUSH_ALLOW_MODEL_LOAD") == "1",
        help="show the Model box: anyone who can open the page may then switch the model for everyone",
    )  # fmt: skip
    parser.add_argument("--offload", action="store_true", help="diffusers models: model CPU offload (small GPUs)")
    parser.add_argument("--compile", action="store_true", help="diffusers models: torch.compile the denoiser")
    parser.add_argument("--precision", default=env("WORDBRUSH_PRECISION", "auto"), help="auto, bf16 or fp32")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    if args.share and not auth:
        log.warning("a share link is public; add --auth user:password to keep strangers out")
    runner = MainThreadRunner()  # pipeline calls run on this (main) thread: 1.6x faster on CPU than on a worker
    knobs = {"device": args.device, "offload": args.offload, "compile": args.compile, "precision": args.precision}
    batchers = open_models(args.model, runner, **knobs)
    wb = editing_batcher(batchers).wb
    if reads_free_phrasing(wb):
        wb.understanding.load_in_background()  # the page serves at once; the reader is ready a second later
    data = Path(args.data_dir)
    library = LoraLibrary(data / "loras", Path(args.lora_dir) if args.lora_dir else None)
    # LoRA training runs on the embedded model; diffusers checkpoints load LoRAs trained elsewhere (--lora-dir).
    job = None if wb.generator.kind == "diffusers" else LoraJob(model=args.model, runs_dir=data / "loras")
    # Model loads run on the main thread too, between pipeline calls (from a handler's thread, 20 loads left
    # +108 MB resident; from the main thread, +11 MB)
    open_model = functools.partial(runner.call, open_models, runner=runner, **knobs) if args.allow_model_load else None
    demo = build_demo(batchers, job=job, library=library, uploads=data / "uploads", open_model=open_model)
    demo.queue(max_size=256).launch(
        server_name=args.host, server_port=args.port, share=args.share, auth=auth,
        max_file_size=f"{LIMITS.upload_mb}mb", css=CSS, prevent_thread_lock=True, show_error=True,
        state_session_capacity=LIMITS.sessions,
    )  # fmt: skip
    try:
        runner.serve_forever()
    except KeyboardInterrupt:
        demo.close()


if __name__ == "__main__":
    main()
