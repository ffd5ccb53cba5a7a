"""Wordbrush web app: the page and its handlers. Each handler calls a typed method of `pipeline.serve.Server`, which
checks the form's values and runs the pipeline (batching, model loads, options: pipeline/serve.py; train/tab.py).

    python app.py [--model icons] [--device auto] [--port 7860] [--share [--auth user:password]]
"""

from __future__ import annotations

import os

if os.environ.get("SPACES_ZERO_GPU"):  # a ZeroGPU Space: `spaces` goes first, before torch initialises CUDA
    import spaces  # noqa: F401

import functools
import logging
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
from starlette.middleware import Middleware

from pipeline.batcher import MainThreadRunner
from pipeline.gate import RequestGate, events_of, gradio_folder
from pipeline.images import refuse_image_bombs
from pipeline.memory import limit_arenas
from pipeline.presets import PRESETS
from pipeline.protocol import MAX_IMAGES
from pipeline.recipe import with_recipe
from pipeline.requests import InpaintRequest, StyleTransferRequest, TextToImageRequest
from pipeline.serve import (
    LIMITS,
    LoraLibrary,
    Server,
    app_arguments,
    default_data_dir,
    editor_mask,
    flag,
    lora_scale,
    open_models,
    read_as,
    recipe_in_file,
    seed_of,
    text,
)
from pipeline.ui import pick_image, progress_bar, reports_errors, seed_row, selected_index, show_tab
from train.job import LoraJob
from train.tab import NO_LORA, train_tab

log = logging.getLogger("wordbrush.app")
LAYOUT_LABEL = "Plan where two named objects go (layout stage, diffusion)"
UNDERSTAND = "Understand free phrasing (language model)"
PIXEL_ART_CSS = "#t2i-gallery img, #style-out img, #inpaint-out img { image-rendering: pixelated; }"


# Handlers. Results are PIL images carrying their recipe, written once by gradio into its (scheduled) cache


def text_to_image_handler(server: Server):
    @reports_errors
    def text_to_image(
        prompt,
        generator,
        steps,
        guidance,
        seed,
        randomize,
        num_images,
        lora=NO_LORA,
        lora_scale=1.0,
        expand=None,
        layout=True,
        understand=True,
        progress=gr.Progress(),
    ):
        request = TextToImageRequest(
            prompt=prompt,
            generator=generator,
            steps=steps,
            guidance=guidance,
            seed=seed_of(seed, randomize),
            num_images=num_images,
            lora=lora_choice(lora, lora_scale),
            expand=expand,
            layout=default_or_off(layout, "layout"),  # on wherever the generator can follow a layout
            understand=default_or_off(understand, "understand"),  # on wherever a prompt reader is shipped
        )
        result = server.text_to_image(request, callback=progress_bar(progress))
        gallery = [(with_recipe(im, r), f"seed {r.seed}") for im, r in zip(result.images, result.recipes)]
        first = result.recipes[0]
        return gallery, read_as(first), first.to_a1111(), first.seed

    return text_to_image


def default_or_off(value, name: str) -> bool | None:
    """A checkbox that turns a feature off: unticked is False; ticked (or not sent) is None, the feature wherever
    the model has it. Anything but true or false is refused (`serve.flag`)."""
    return False if flag(value, name) is False else None


def lora_choice(name: str | None, scale) -> str | None:
    """The LoRA a form picked, as a request names it: "name:scale" (None for none)."""
    name = text(name, "the LoRA", 200)
    return None if not name or name == NO_LORA else f"{name}:{lora_scale(scale)}"


def live_preview_handler(server: Server):
    """With a one-step generator selected, the image follows the prompt as it is typed."""
    t2i = text_to_image_handler(server)

    def live_preview(prompt, generator, seed, num_images):
        live = generator in server.batchers and server.pipe(generator).capabilities.live_preview
        if not live or not (prompt or "").strip():
            return gr.skip()
        return t2i(
            prompt, generator, 1, 0.0, seed, False, num_images, NO_LORA, 1.0, False, progress=lambda *a, **k: None
        )

    return live_preview


def generator_settings(server: Server):
    """Steps and guidance mean nothing to a one-step generator: show its values, locked."""

    def handler(generator: str):
        pipe = server.pipe(generator)
        tunable, steps = pipe.capabilities.tunable_steps, pipe.default_steps
        return gr.update(value=steps, interactive=tunable), gr.update(value=pipe.default_guidance, interactive=tunable)

    return handler


def style_transfer_handler(server: Server):
    @reports_errors
    def style_transfer(
        image,
        preset,
        text,
        strength,
        seed,
        randomize,
        understand=True,
        lora=NO_LORA,
        lora_scale=1.0,
        progress=gr.Progress(),
    ):
        request = StyleTransferRequest(
            image=image,
            style_prompt=(text or "").strip(),
            preset=preset,
            strength=strength,
            seed=seed_of(seed, randomize),
            lora=lora_choice(lora, lora_scale),
            understand=default_or_off(understand, "understand"),
        )
        result = server.style_transfer(request, callback=progress_bar(progress))
        return with_recipe(result.images[0], result.recipes[0]), result.recipes[0].to_a1111()

    return style_transfer


def inpaint_handler(server: Server):
    @reports_errors
    def inpaint(
        editor,
        prompt,
        seed,
        randomize,
        zoom=True,
        understand=True,
        lora=NO_LORA,
        lora_scale=1.0,
        progress=gr.Progress(),
    ):
        image, mask = editor_mask(editor)
        if not np.asarray(mask).any():
            gr.Warning("nothing is painted: paint over the part to regenerate (the image is returned unchanged)")
        request = InpaintRequest(
            image=image,
            mask=mask,
            prompt=prompt,
            seed=seed_of(seed, randomize),
            zoom=zoom,
            lora=lora_choice(lora, lora_scale),
            understand=default_or_off(understand, "understand"),
        )
        result = server.inpaint(request, callback=progress_bar(progress))
        return with_recipe(result.images[0], result.recipes[0]), result.recipes[0].to_a1111()

    return inpaint


def load_model_handler(server: Server):
    @reports_errors
    def load_model(name):
        message, pipe, kinds = server.load_model(name), server.pipe(), list(server.batchers)
        presets = list(pipe.style_presets)
        settings = [gr.update(value=v) for v in (pipe.default_steps, pipe.default_guidance, pipe.expansion.default)]
        style = gr.update(choices=presets, value=presets[min(1, len(presets) - 1)])
        return gr.update(choices=kinds, value=kinds[0]), *settings, style, message

    return load_model


def restore_recipe_handler(path) -> dict:
    """A dropped Wordbrush PNG fills the Text to image form with its recipe, by the form's field names (layout on
    only if it had a plan); nothing changes for a file without one."""
    recipe = recipe_in_file(path)
    if recipe is None:
        if path is not None:
            gr.Warning("that file holds no Wordbrush recipe")
        return {}
    gr.Info(f"restored the recipe of seed {recipe.seed}")
    return {
        "prompt": recipe.prompt,
        "generator": recipe.generator,
        "steps": recipe.steps,
        "guidance": recipe.guidance,
        "seed": recipe.seed,
        "randomize": False,
        "layout": bool(recipe.layout),
    }


def describe_input_handler(server: Server):
    """An image's recipe fills an empty "Describe the content" box (restyling keeps the content it names)."""

    def handler(path, text):
        content = None if (text or "").strip() else server.content_of(path)
        return gr.update() if content is None else content

    return handler


# Layout: one function per tab, each wiring its own events


def text_to_image_tab(server: Server) -> SimpleNamespace:
    pipe = server.pipe()
    caps, kinds, t = pipe.capabilities, list(server.batchers), SimpleNamespace()
    with gr.Tab("Text to image", id="t2i"), gr.Row():
        with gr.Column(scale=2):
            t.prompt = gr.Textbox(label="Prompt", placeholder=pipe.example_prompts[0], lines=2)
            with gr.Row():
                run, stop = gr.Button("Generate", variant="primary"), gr.Button("Stop")
            t.generator = gr.Radio(kinds, value=kinds[0], label="Generator", info="gan: one step, follows your typing")
            t.steps = gr.Slider(1, 50, value=pipe.default_steps, step=1, label="Steps")
            t.guidance = gr.Slider(0, 10, value=pipe.default_guidance, step=0.5, label="Guidance")
            seed, randomize = seed_row()
            num_images = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images")
            with gr.Row():
                t.lora = gr.Dropdown([NO_LORA], value=NO_LORA, label="LoRA (every tab)", allow_custom_value=True)
                t.lora_scale = gr.Slider(0, 1.5, value=1.0, step=0.05, label="LoRA scale")
            t.expand = gr.Checkbox(value=pipe.expansion.default, label="Expand the prompt with the language model")
            t.understand = gr.Checkbox(
                caps.understanding,
                interactive=caps.understanding,
                label=UNDERSTAND,
                info=pipe.world.free_phrasing if pipe.world else "",
            )
            layout = gr.Checkbox(caps.layout, label=LAYOUT_LABEL, info="each object's words steer only its own box")
            gr.Examples([[p] for p in pipe.example_prompts], inputs=[t.prompt])
            recipe_file = gr.File(label="Drop a Wordbrush PNG to restore its settings", file_types=[".png"])
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Images", columns=2, height=560, format="png", elem_id="t2i-gallery")
            seen = gr.Textbox(label="How the prompt was understood", interactive=False, elem_id="t2i-understood")
            recipe = gr.Textbox(label="Recipe", interactive=False, lines=2, elem_id="t2i-recipe")
            with gr.Row():
                t.to_style, t.to_inpaint = gr.Button("Send to Style transfer"), gr.Button("Send to Inpainting")
            selected = gr.State(0)  # the gallery item clicked last (inside the tab: a Tabs' children are its tabs)
    form = [t.prompt, t.generator, t.steps, t.guidance, seed, randomize, num_images, t.lora, t.lora_scale]
    form += [t.expand, layout, t.understand]
    out, handler = [gallery, seen, recipe, seed], text_to_image_handler(server)
    event = run.click(handler, form, out, api_name="text_to_image", concurrency_limit=32)
    submit = t.prompt.submit(handler, form, out, api_visibility="private", concurrency_limit=32)
    stop.click(None, None, None, cancels=[event, submit])
    live = dict(trigger_mode="always_last", show_progress="hidden", concurrency_limit=4, api_visibility="private")
    t.prompt.change(live_preview_handler(server), [t.prompt, t.generator, seed, num_images], out, **live)
    t.generator.change(generator_settings(server), t.generator, [t.steps, t.guidance], api_visibility="private")
    restored = dict(prompt=t.prompt, generator=t.generator, steps=t.steps, guidance=t.guidance, seed=seed)
    restored.update(randomize=randomize, layout=layout)

    def restore(path):  # the recipe's fields onto the widgets of the same name
        return {restored[name]: value for name, value in restore_recipe_handler(path).items()}

    recipe_file.upload(restore, recipe_file, list(restored.values()), api_visibility="private")
    gallery.select(selected_index, None, selected, api_visibility="private")
    t.picked = [gallery, selected]
    return t


def style_transfer_tab(server: Server, t2i: SimpleNamespace) -> SimpleNamespace:
    pipe, s = server.pipe(), SimpleNamespace()
    with gr.Tab("Style transfer", id="style"), gr.Row():
        with gr.Column():
            s.image = gr.Image(  # image_mode None: gradio hands the file over undecoded, open_image checks its size
                label="Input image",
                type="filepath",
                image_mode=None,
                sources=["upload", "clipboard"],
                elem_id="style-in",
            )
            presets = list(pipe.style_presets)
            s.preset = gr.Radio(presets, value=presets[min(1, len(presets) - 1)], label="Style preset")
            text = gr.Textbox(label="Describe the content or a style (optional)", placeholder=pipe.example_prompts[0])
            strength = gr.Slider(0, 1, value=pipe.default_strength, step=0.05, label="Strength (0 keeps the input)")
            seed, randomize = seed_row()
            run = gr.Button("Apply style", variant="primary")
        with gr.Column():
            s.out = gr.Image(label="Result", type="filepath", format="png", interactive=False, elem_id="style-out")
            recipe = gr.Textbox(label="Recipe", interactive=False, lines=2, elem_id="style-recipe")
            s.to_inpaint = gr.Button("Send result to Inpainting")
    form = [s.image, s.preset, text, strength, seed, randomize, t2i.understand, t2i.lora, t2i.lora_scale]
    run.click(style_transfer_handler(server), form, [s.out, recipe], api_name="style_transfer")
    s.image.change(describe_input_handler(server), [s.image, text], text, api_visibility="private")
    return s


def inpainting_tab(server: Server, t2i: SimpleNamespace) -> SimpleNamespace:
    i = SimpleNamespace()
    with gr.Tab("Inpainting", id="inpaint"), gr.Row():
        with gr.Column():
            brush, sources = gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=12), ["upload", "clipboard"]
            i.editor = gr.ImageEditor(
                type="filepath", sources=sources, brush=brush, layers=False, elem_id="inpaint-editor"
            )
            i.editor.label = "Paint over what to regenerate"
            prompt = gr.Textbox(label="What goes there", placeholder="a yellow triangle")
            seed, randomize = seed_row()
            zoom = gr.Checkbox(True, label="Zoom into the mask", info="redraw a small mask's area at full size")
            run = gr.Button("Inpaint", variant="primary")
        with gr.Column():
            i.out = gr.Image(label="Result", type="filepath", format="png", interactive=False, elem_id="inpaint-out")
            recipe = gr.Textbox(label="Recipe", interactive=False, lines=2, elem_id="inpaint-recipe")
            i.to_style = gr.Button("Send result to Style transfer")
    form = [i.editor, prompt, seed, randomize, zoom, t2i.understand, t2i.lora, t2i.lora_scale]
    run.click(inpaint_handler(server), form, [i.out, recipe], api_name="inpaint")
    return i


def build_demo(server: Server, *, job: LoraJob | None = None, uploads: Path | None = None) -> gr.Blocks:
    """The page around the server's pipelines. The Model box exists only where the host allows model loads
    (`server.open_model`); the Train tab only where the model takes LoRA training and a job is given."""
    pipe, library = server.pipe(), server.library
    with gr.Blocks(title="Wordbrush", delete_cache=(LIMITS.cache_every_s, LIMITS.cache_age_s)) as demo:
        gr.Markdown(f"# Wordbrush\nA language model (`{pipe.encoder_name}`) reads the prompt; `{pipe.model}` draws.")
        if server.open_model is not None:
            with gr.Row():
                info = "a preset, a model folder or a diffusers hub id (switches the model for every visitor)"
                model_box = gr.Dropdown(
                    list(PRESETS), value=pipe.model, allow_custom_value=True, label="Model", info=info
                )
                model_load, model_status = gr.Button("Load model"), gr.Markdown(f"serving **{pipe.model}**")
        with gr.Tabs() as tabs:
            t2i = text_to_image_tab(server)
            style = style_transfer_tab(server, t2i)
            paint = inpainting_tab(server, t2i)
            if job is not None and pipe.capabilities.lora_training:
                uploads, batch = uploads or default_data_dir() / "uploads", pipe.capabilities.lora_batch
                train_tab(job, library, uploads, t2i.lora, batch=batch, world=pipe.world)
        demo.load(lambda: gr.update(choices=[NO_LORA, *library.names()]), None, t2i.lora, api_visibility="private")
        for button, source, target, tab in (
            (t2i.to_style, t2i.picked, style.image, "style"),
            (t2i.to_inpaint, t2i.picked, paint.editor, "inpaint"),
            (style.to_inpaint, [style.out], paint.editor, "inpaint"),
            (paint.to_style, [paint.out], style.image, "style"),
        ):
            button.click(pick_image, source, target, api_visibility="private").then(
                show_tab(tab), None, tabs, api_visibility="private"
            )
        if server.open_model is not None:
            outputs = [t2i.generator, t2i.steps, t2i.guidance, t2i.expand, style.preset, model_status]
            model_load.click(load_model_handler(server), model_box, outputs, api_name="load_model")
    return demo


def main() -> None:
    limit_arenas()  # before any thread: memory freed by a finished training or handler thread goes back
    refuse_image_bombs()
    args = app_arguments().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    if args.share and not auth:
        log.warning("a share link is public; add --auth user:password to keep strangers out")
    runner = MainThreadRunner()  # pipeline calls run on this (main) thread: faster on the CPU (docs/speed.md)
    knobs = {"device": args.device, "offload": args.offload, "compile": args.compile, "precision": args.precision}
    # Model loads run on the main thread too, between pipeline calls: loaded from a handler's thread, each
    # load left memory behind (docs/share-link.md)
    open_model = functools.partial(runner.call, open_models, runner=runner, **knobs) if args.allow_model_load else None
    data = Path(args.data_dir)
    library = LoraLibrary(data / "loras", Path(args.lora_dir) if args.lora_dir else None)
    server = Server(open_models(args.model, runner, **knobs), library, open_model)
    caps = server.pipe().capabilities  # not the pipeline itself: main() lives as long as the server, and a held
    # pipeline would stay in memory after the host loads another model
    job = LoraJob(model=args.model, runs_dir=data / "loras") if caps.lora_training else None
    if job is not None and job.resume_interrupted(data / "uploads"):  # a training the last run of the app lost
        log.info("resumed the training %s", job.state.out.name)
    demo = build_demo(server, job=job, uploads=data / "uploads")
    limits = dict(max_file_size=f"{LIMITS.upload_mb}mb", state_session_capacity=LIMITS.sessions)
    where = dict(server_name=args.host, server_port=args.port, share=args.share, auth=auth)
    css = PIXEL_ART_CSS if caps.pixel_art else None
    # api_open=False: the REST routes (/gradio_api/run/...), which skipped the queue, are closed
    gate = Middleware(RequestGate, events=events_of(demo), folders=[gradio_folder()])  # pipeline/gate.py
    demo.queue(max_size=256, api_open=False).launch(
        **where, **limits, css=css, prevent_thread_lock=True, show_error=True, app_kwargs={"middleware": [gate]}
    )
    try:
        runner.serve_forever()
    except KeyboardInterrupt:
        demo.close()


if __name__ == "__main__":
    main()
