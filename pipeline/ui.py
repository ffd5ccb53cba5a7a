"""Gradio pieces every tab of the app shares (app.py, and the Train tab in train/tab.py)."""

from __future__ import annotations

import functools
import logging

import gradio as gr

log = logging.getLogger("wordbrush.app")


def reports_errors(handler):
    """Every failure reaches the page (and the API) as a message, and the server serves on: a ValueError says
    what to change and is logged as one line; anything else is logged with its traceback (a real fault) and
    reported without the server's internals. gradio prints neither again (`print_exception=False`)."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error as err:
            log.info("refused %s: %s", handler.__name__, err)
            raise gr.Error(str(err), print_exception=False) from None
        except ValueError as err:
            log.info("refused %s: %s", handler.__name__, err)
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:
            log.exception("a request failed")
            message = f"the server could not finish this request ({type(err).__name__}); try again"
            raise gr.Error(message, print_exception=False) from None

    return wrapper


def progress_bar(progress):
    """A pipeline step callback that moves the page's progress bar."""

    def on_step(step, total, _preview):
        progress((step, total), desc="denoising")

    return on_step


def seed_row() -> tuple[gr.Number, gr.Checkbox]:
    """A seed box with its "random seed" toggle, as every tab has one (read by `serve.seed_of`)."""
    with gr.Row():
        return gr.Number(value=0, minimum=0, label="Seed"), gr.Checkbox(value=False, label="Random seed")


def selected_index(evt: gr.SelectData) -> int:
    """The index of the gallery item a visitor clicked."""
    return evt.index


def pick_image(value, index: int | None = None):
    """The image to send to another tab: a gallery's selected item (the first when none is), or an image."""
    if isinstance(value, list):
        if not value:
            raise gr.Error("generate an image first", print_exception=False)
        value = value[min(index or 0, len(value) - 1)]
        value = value[0] if isinstance(value, (tuple, list)) else value
    if value is None:
        raise gr.Error("there is no image to send yet", print_exception=False)
    return value


def show_tab(tab: str):
    """An event step that switches the page to tab `tab`."""
    return lambda: gr.Tabs(selected=tab)
