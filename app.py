"""Wordbrush web app. UI only: every handler calls a typed pipeline function.

python app.py [--port 7860] [--share]
"""

from __future__ import annotations

import argparse
import os

import gradio as gr


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Wordbrush") as demo:
        gr.Markdown(
            "# Wordbrush\n"
            "Prompt-to-image, style transfer and inpainting through a language-model prompt encoder.\n\n"
            "The generators are being trained; the tabs arrive with them."
        )
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the Wordbrush web app.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("WORDBRUSH_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="also serve a public share link")
    args = parser.parse_args()
    build_demo().queue().launch(server_name="127.0.0.1", server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
