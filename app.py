"""Wordbrush web app. UI only: every handler calls a typed pipeline function.

python app.py [--model shapes] [--device auto] [--port 7860] [--share]
"""

from __future__ import annotations

import argparse
import os

import gradio as gr
from PIL import Image

from pipeline import Wordbrush
from pipeline.core import MAX_IMAGES
from pipeline.presets import DEFAULT_MODEL

DISPLAY_SIZE = 256  # native 32 px images are shown enlarged with crisp (nearest-neighbour) pixels
EXAMPLES = [
    ["a red circle above a blue square"],
    ["three green triangles"],
    ["a striped yellow square to the left of a purple circle"],
    ["an outlined white triangle"],
]


def enlarge(image: Image.Image) -> Image.Image:
    return image.resize((DISPLAY_SIZE, DISPLAY_SIZE), Image.NEAREST)


def text_to_image_handler(wb: Wordbrush):
    """The Generate button: prompt and knobs in, gallery and recipe out."""

    def handler(prompt, steps, guidance, seed, randomize, num_images, progress=gr.Progress()):  # noqa: B008
        def on_step(step, total, _preview):
            progress((step, total), desc="denoising")

        try:
            result = wb.text_to_image(
                prompt,
                seed=-1 if randomize else int(seed),
                steps=int(steps),
                guidance=float(guidance),
                num_images=int(num_images),
                callback=on_step,
            )
        except ValueError as err:
            raise gr.Error(str(err)) from err
        gallery = [(enlarge(im), f"seed {r.seed}") for im, r in zip(result.images, result.recipes)]
        first = result.recipes[0]
        seen = first.encoded_prompt if first.encoded_prompt != first.prompt else first.prompt
        return gallery, seen, first.to_a1111(), first.seed

    return handler


def build_demo(wb: Wordbrush) -> gr.Blocks:
    gen = wb.generator
    with gr.Blocks(title="Wordbrush") as demo:
        gr.Markdown(
            "# Wordbrush\nA language-model prompt encoder chained into a diffusion generator. "
            f"Model: `{wb.model}`, prompt read by `{wb.encoder.name}`."
        )
        with gr.Tab("Text to image"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(label="Prompt", placeholder="a red circle above a blue square", lines=2)
                    run = gr.Button("Generate", variant="primary")
                    with gr.Accordion("Settings", open=True):
                        steps = gr.Slider(1, 50, value=gen.default_steps, step=1, label="Steps")
                        guidance = gr.Slider(0, 10, value=gen.default_guidance, step=0.5, label="Guidance")
                        with gr.Row():
                            seed = gr.Number(value=0, precision=0, label="Seed", minimum=0)
                            randomize = gr.Checkbox(value=False, label="Random seed")
                        num_images = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images")
                    gr.Examples(EXAMPLES, inputs=[prompt])
                with gr.Column():
                    gallery = gr.Gallery(label="Images", columns=2, height="auto", format="png")
                    seen = gr.Textbox(label="Prompt as the language model saw it", interactive=False)
                    recipe = gr.Textbox(label="Recipe", interactive=False, lines=2)
            inputs = [prompt, steps, guidance, seed, randomize, num_images]
            outputs = [gallery, seen, recipe, seed]
            run.click(text_to_image_handler(wb), inputs, outputs, api_name="text_to_image")
            prompt.submit(text_to_image_handler(wb), inputs, outputs, api_name=False)
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the Wordbrush web app.")
    parser.add_argument("--model", default=os.environ.get("WORDBRUSH_MODEL", DEFAULT_MODEL))
    parser.add_argument("--device", default=os.environ.get("WORDBRUSH_DEVICE", "auto"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("WORDBRUSH_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="also serve a public share link")
    args = parser.parse_args()
    wb = Wordbrush.load(args.model, device=args.device)
    build_demo(wb).queue().launch(server_name="127.0.0.1", server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
