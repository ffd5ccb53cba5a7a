import gradio as gr
import pytest

import app
from pipeline import Wordbrush
from tests.tiny import make_tiny_diffusion


@pytest.fixture(scope="module")
def wb(tmp_path_factory):
    return Wordbrush.load(str(make_tiny_diffusion(tmp_path_factory.mktemp("tiny") / "model")))


def test_build_demo_builds_blocks(wb):
    assert isinstance(app.build_demo(wb), gr.Blocks)


def test_text_to_image_handler_returns_enlarged_images_and_recipe(wb):
    handler = app.text_to_image_handler(wb)
    gallery, seen, recipe, seed = handler("a red circle", 2, 3.0, 7, False, 2, progress=lambda *a, **k: None)
    assert len(gallery) == 2 and gallery[0][0].size == (app.DISPLAY_SIZE, app.DISPLAY_SIZE)
    assert seen == "a red circle" and "Seed: 7" in recipe and seed == 7


def test_handler_turns_bad_input_into_a_gradio_error(wb):
    handler = app.text_to_image_handler(wb)
    with pytest.raises(gr.Error, match="prompt is empty"):
        handler("", 2, 3.0, 0, False, 1, progress=lambda *a, **k: None)
