import threading
import time

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app
from pipeline import Wordbrush
from pipeline.batcher import Batcher
from pipeline.recipe import read_recipe, save_png
from pipeline.serve import Server, editor_mask
from tests.tiny import make_tiny_diffusion, make_tiny_gan


def no_progress(*args, **kwargs):
    return None


@pytest.fixture(scope="module")
def batcher(tmp_path_factory):
    wb = Wordbrush.load(str(make_tiny_diffusion(tmp_path_factory.mktemp("tiny") / "model")))
    return Batcher(wb, window_s=0.01)


@pytest.fixture(scope="module")
def batchers(batcher, tmp_path_factory):
    gan_wb = Wordbrush.load(str(make_tiny_gan(tmp_path_factory.mktemp("tiny") / "gan")))
    return Server({"diffusion": batcher, "gan": Batcher(gan_wb, window_s=0.01)})


def test_build_demo_builds_blocks_with_named_endpoints(batchers):
    demo = app.build_demo(batchers)
    names = {d["api_name"] for d in demo.config["dependencies"] if d.get("api_name")}
    assert {"text_to_image", "style_transfer", "inpaint"} <= names


def test_text_to_image_handler_writes_native_pngs_with_recipes(batchers):
    handler = app.text_to_image_handler(batchers)
    gallery, seen, recipe, seed = handler("a red circle", "diffusion", 2, 3.0, 7, False, 2, progress=no_progress)
    images = [image for image, _ in gallery]
    assert len(images) == 2 and images[0].size == (32, 32)  # native pixels; the page enlarges them with CSS
    assert read_recipe(images[0]).seed == 7 and read_recipe(images[1]).seed == 8  # gradio writes these into the PNG
    assert seen.endswith("drawn as written") and "Seed: 7" in recipe and seed == 7


def test_random_seed_is_reported_back(batchers):
    handler = app.text_to_image_handler(batchers)
    gallery, *_, seed = handler("a red circle", "diffusion", 1, 3.0, 0, True, 1, progress=no_progress)
    assert read_recipe(gallery[0][0]).seed == seed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "diffusion", 2, 3.0, 0, False, 1), "prompt is empty"),
        (("x " * 400, "diffusion", 0, 3.0, 0, False, 1), "steps must be from 1 to"),
        (("x " * 5000, "diffusion", 2, 3.0, 0, False, 1), "at most 1,000 are accepted"),
        (("a red circle", "diffusion", 2, 3.0, 0, "yes", 1), "random seed must be true or false"),
        ((["a red circle"], "diffusion", 2, 3.0, 0, False, 1), "the prompt must be text"),
        (("a red circle", "diffusion", 2, float("nan"), 0, False, 1), "guidance must be a number"),
        (("a red circle", "diffusion", 2, 3.0, float("nan"), False, 1), "seed must be a whole number"),
        (("a red circle", "diffusion", 2, 3.0, 0, False, 2.5), "number of images must be a whole number"),
        (("a red circle", "vae", 2, 3.0, 0, False, 1), "no 'vae' generator"),
    ],
)
def test_bad_input_becomes_a_gradio_error(batchers, args, message):

    with pytest.raises(gr.Error, match=message):
        app.text_to_image_handler(batchers)(*args, progress=no_progress)


def test_style_transfer_handler(batcher, tmp_path):
    src = tmp_path / "in.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(src)
    out, recipe = app.style_transfer_handler(Server({"diffusion": batcher}))(
        str(src), "outline", "a red square", 0.6, 1, False, progress=no_progress
    )
    assert out.size == (64, 48) and read_recipe(out).prompt == "a red square in outline style"

    with pytest.raises(gr.Error, match="upload an image"):
        app.style_transfer_handler(Server({"diffusion": batcher}))(
            None, "outline", "", 0.6, 1, False, progress=no_progress
        )
    bogus = tmp_path / "bogus.png"
    bogus.write_text("not an image")
    with pytest.raises(gr.Error, match="not an image"):
        app.style_transfer_handler(Server({"diffusion": batcher}))(
            str(bogus), "outline", "", 0.6, 1, False, progress=no_progress
        )


def _editor(size=(48, 48), box=(10, 10, 30, 30)):
    background = Image.new("RGB", size, (128, 128, 128))
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    if box:
        layer.paste((255, 255, 255, 255), box)
    return {"background": background, "layers": [layer], "composite": background}


def test_inpaint_handler_regenerates_only_the_painted_part(batcher):
    value = _editor()
    out, recipe = app.inpaint_handler(Server({"diffusion": batcher}))(
        value, "a yellow triangle", 0, False, progress=no_progress
    )
    out = np.asarray(out)
    _, mask = editor_mask(value)
    keep = np.asarray(mask) == 0
    assert np.array_equal(out[keep], np.asarray(value["background"])[keep])
    assert "a yellow triangle" in recipe


def test_inpaint_handler_errors(batcher):

    with pytest.raises(gr.Error, match="upload an image"):
        app.inpaint_handler(Server({"diffusion": batcher}))(
            {"background": None, "layers": []}, "x", 0, False, progress=no_progress
        )
    with pytest.raises(gr.Error, match="prompt is empty"):
        app.inpaint_handler(Server({"diffusion": batcher}))(_editor(), "", 0, False, progress=no_progress)


def _png(gallery, folder) -> str:
    """The first gallery image as the PNG gradio serves (its recipe in the PNG's text)."""
    path = folder / f"{len(list(folder.iterdir()))}.png"
    image = gallery[0][0]
    save_png(image, read_recipe(image), path)
    return str(path)


def test_restore_recipe_from_png(batchers, tmp_path):
    gallery, *_ = app.text_to_image_handler(batchers)(
        "three green triangles", "diffusion", 3, 2.5, 42, False, 1, progress=no_progress
    )
    restored = app.restore_recipe_handler(_png(gallery, tmp_path))
    assert tuple(restored.values()) == ("three green triangles", "diffusion", 3, 2.5, 42, False, False)  # no plan
    assert list(restored) == ["prompt", "generator", "steps", "guidance", "seed", "randomize", "layout"]
    gallery, *_ = app.text_to_image_handler(batchers)(
        "a red circle above a blue square", "diffusion", 3, 2.5, 42, False, 1, progress=no_progress
    )
    assert app.restore_recipe_handler(_png(gallery, tmp_path))["layout"] is True  # planned: restored with layout on
    broken = tmp_path / "broken.png"
    Image.new("RGB", (4, 4)).save(broken, pnginfo=_text_chunk("wordbrush", "{not json"))
    assert app.restore_recipe_handler(str(broken)) == {}  # a warning, not a failure: the form is left as it is


def test_batcher_runs_concurrent_requests_as_one_batch(batcher):
    import threading

    from pipeline.requests import TextToImageRequest

    exact = Wordbrush.load(batcher.wb.model, precision="fp32")  # batch-invariant to float rounding
    slow = Batcher(exact, window_s=0.3)  # a wide window, so all six threads make one batch
    results = {}

    def ask(i):
        results[i] = slow.text_to_image(TextToImageRequest(f"prompt {i}", seed=100 + i, steps=2, guidance=3.0))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(slow.batch_sizes) > 1  # arrived together, ran together
    for i in range(6):  # and everyone got their own images
        assert results[i].recipes[0].prompt == f"prompt {i}" and results[i].recipes[0].seed == 100 + i
        alone = exact.text_to_image(f"prompt {i}", seed=100 + i, steps=2).images[0]
        assert np.abs(np.asarray(alone, np.int16) - np.asarray(results[i].images[0], np.int16)).max() <= 2


def test_a_batch_starts_over_to_take_in_requests_that_arrive_in_its_first_steps(batcher):
    import threading

    from pipeline.requests import TextToImageRequest

    exact = Wordbrush.load(batcher.wb.model, precision="fp32")  # batch-invariant to float rounding
    b = Batcher(exact, window_s=0.001)  # a window too short to catch the second request
    results = {}
    second = threading.Thread(
        target=lambda: results.update(
            late=b.text_to_image(TextToImageRequest("a blue square", seed=7, steps=4, guidance=3.0))
        )
    )

    def on_step(step, total, _preview):
        if step == 1 and not second.is_alive() and "late" not in results:  # after the first step: send another
            second.start()
            while not b._waiting:
                time.sleep(0.001)

    results["early"] = b.text_to_image(
        TextToImageRequest("a red circle", seed=3, steps=4, guidance=3.0), callback=on_step
    )
    second.join()
    assert b.regroups == 1 and b.batch_sizes == [2]  # started over once, then ran both together
    for key, prompt, seed in [("early", "a red circle", 3), ("late", "a blue square", 7)]:
        assert results[key].recipes[0].prompt == prompt and results[key].recipes[0].seed == seed
        alone = exact.text_to_image(prompt, seed=seed, steps=4).images[0]
        assert np.abs(np.asarray(alone, np.int16) - np.asarray(results[key].images[0], np.int16)).max() <= 2


def test_a_closed_batcher_serves_what_was_queued_then_refuses_clearly(batcher):
    from pipeline.requests import TextToImageRequest

    b = Batcher(batcher.wb)
    assert b.text_to_image(TextToImageRequest("a red circle", seed=0, steps=2, guidance=3.0)).images
    b.close()
    b._thread.join(timeout=10)
    assert not b._thread.is_alive()
    with pytest.raises(ValueError, match="replaced by another; send the request again"):
        b.text_to_image(TextToImageRequest("a red circle", seed=0, steps=2, guidance=3.0), timeout=5)


def test_a_bad_request_fails_alone_in_its_batch(batcher):
    import threading

    from pipeline.requests import TextToImageRequest

    slow = Batcher(batcher.wb, window_s=0.3)
    out = {}

    def ask(key, prompt):
        try:
            out[key] = slow.text_to_image(TextToImageRequest(prompt, seed=0, steps=2, guidance=3.0))
        except ValueError as err:
            out[key] = err

    threads = [threading.Thread(target=ask, args=(k, p)) for k, p in [("good", "a red circle"), ("bad", "")]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(out["bad"], ValueError) and out["good"].images


def test_live_preview_follows_the_prompt_with_the_gan_only(batchers):

    preview = app.live_preview_handler(batchers)
    gallery, seen, recipe, seed = preview("a red cir", "gan", 3, 2)
    assert len(gallery) == 2 and read_recipe(gallery[0][0]).generator == "gan"
    skipped = preview("a red cir", "diffusion", 3, 2)
    assert not isinstance(skipped, tuple)  # diffusion waits for the Generate button
    assert preview("", "gan", 3, 1) == gr.skip()


def test_choosing_the_gan_locks_steps_and_guidance(batchers):
    steps, guidance = app.generator_settings(batchers)("gan")
    assert steps["value"] == 1 and steps["interactive"] is False and guidance["value"] == 0.0
    steps, _ = app.generator_settings(batchers)("diffusion")
    assert steps["interactive"] is True


def test_an_image_with_a_recipe_fills_the_style_tabs_content_box(batchers, tmp_path):
    gallery, *_ = app.text_to_image_handler(batchers)(
        "two red circles in striped style", "diffusion", 2, 3.0, 5, False, 1, progress=no_progress
    )
    describe = app.describe_input_handler(batchers)
    path = _png(gallery, tmp_path)
    assert describe(path, "") == "two red circles"  # the content, less the style phrase
    assert isinstance(describe(path, "my own words"), dict)  # a typed description is never overwritten
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert isinstance(describe(str(plain), ""), dict)  # no recipe: nothing to fill in


class _FailsOnPoison:
    """A pipeline whose call fails for a whole batch when one prompt in it says "poison" (as a tokenizer
    that rejects one prompt's text would)."""

    def __init__(self, wb):
        self._wb = wb
        self.calls: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self._wb, name)

    def text_to_image(self, request, **kwargs):
        self.calls.append(list(request.prompt))
        if any("poison" in p for p in request.prompt):
            raise RuntimeError("the tokenizer rejected a prompt")
        return self._wb.text_to_image(request, **kwargs)


def test_a_request_that_fails_inside_the_pipeline_fails_alone_and_its_batch_mates_get_their_images(batcher):
    from pipeline.requests import TextToImageRequest

    exact = Wordbrush.load(batcher.wb.model, precision="fp32")
    slow = Batcher(_FailsOnPoison(exact), window_s=0.3)  # a wide window: all five make one batch
    prompts = ["a red circle", "two blue squares", "poison", "a green triangle", "a white star"]
    out = {}

    def ask(i):
        try:
            out[i] = slow.text_to_image(TextToImageRequest(prompts[i], seed=40 + i, steps=2, guidance=3.0))
        except RuntimeError as err:
            out[i] = err

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert any(len(c) > 1 and "poison" in c for c in slow.wb.calls)  # it was batched with good ones
    assert isinstance(out[2], RuntimeError) and "rejected" in str(out[2])
    for i in (0, 1, 3, 4):
        alone = exact.text_to_image(prompts[i], seed=40 + i, steps=2).images[0]
        assert np.abs(np.asarray(alone, np.int16) - np.asarray(out[i].images[0], np.int16)).max() <= 2


def _text_chunk(key, value):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(key, value)
    return info
