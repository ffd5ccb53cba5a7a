import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from pipeline.worlds.shapes import judge as evaluate
from pipeline.worlds.shapes import scenes as world
from pipeline.worlds.shapes.judge import EvalItem
from pipeline.worlds.shapes.scenes import Obj, Scene


@pytest.fixture(scope="module")
def items():
    return evaluate.eval_set("combos", per_category=25) + evaluate.eval_set("templates", per_category=15)


def test_clean_renders_score_at_least_099(items):
    scores = evaluate.score(items, evaluate.clean_images(items))
    assert scores["overall"] >= 0.99, scores
    assert min(scores.values()) >= 0.95, scores


def _noisy(image: Image.Image, rng: np.random.Generator, std: float) -> Image.Image:
    arr = np.asarray(image, np.float32) + rng.normal(0, std, (*image.size[::-1], 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def test_robust_to_mild_noise_and_blur(items):
    rng = np.random.default_rng(0)
    clean = evaluate.clean_images(items)
    noisy = [_noisy(im, rng, 6.0) for im in clean]
    blurred = [im.filter(ImageFilter.GaussianBlur(0.5)) for im in clean]
    both = [_noisy(im.filter(ImageFilter.GaussianBlur(0.4)), rng, 4.0) for im in clean]
    for name, images in [("noise", noisy), ("blur", blurred), ("both", both)]:
        scores = evaluate.score(items, images)
        assert scores["overall"] >= 0.95, (name, scores)


def test_upscaled_images_are_judged_like_native_ones(items):
    clean = evaluate.clean_images(items[:60])
    big = [im.resize((128, 128), Image.BICUBIC) for im in clean]
    assert evaluate.score(items[:60], big)["overall"] >= 0.97


def _item(category, scene):
    return EvalItem(category, scene, "", 5)


def _render(scene, seed=5):
    return world.render_scene(scene, seed)[0]


def test_fails_wrong_colour_shape_count_relation_and_style():
    red_circle = Scene("single", (Obj("red", "circle"),))
    blue_circle = Scene("single", (Obj("blue", "circle"),))
    red_square = Scene("single", (Obj("red", "square"),))
    assert evaluate.judge(_item("single_object", red_circle), _render(red_circle))
    assert not evaluate.judge(_item("single_object", red_circle), _render(blue_circle))
    assert not evaluate.judge(_item("single_object", red_circle), _render(red_square))
    assert not evaluate.judge(_item("colors", red_circle), _render(blue_circle))

    three = Scene("count", (Obj("green", "triangle"),) * 3)
    four = Scene("count", (Obj("green", "triangle"),) * 4)
    assert evaluate.judge(_item("counting", three), _render(three))
    assert not evaluate.judge(_item("counting", three), _render(four))

    above = Scene("relation", (Obj("red", "circle"), Obj("blue", "square")), "flat", "above")
    image = _render(above)
    assert evaluate.judge(_item("position", above), image)
    assert not evaluate.judge(_item("position", above), ImageOps.flip(image))  # now below

    pair = Scene("pair", (Obj("red", "circle"), Obj("blue", "square")))
    swapped = Scene("pair", (Obj("blue", "circle"), Obj("red", "square")))
    assert evaluate.judge(_item("color_attribution", pair), _render(pair))
    assert evaluate.judge(_item("two_objects", pair), _render(swapped))  # shapes right...
    assert not evaluate.judge(_item("color_attribution", pair), _render(swapped))  # ...colours bound wrong

    for style in world.STYLES:
        scene = Scene("single", (Obj("purple", "square"),), style)
        wrong = world.STYLES[(world.STYLES.index(style) + 1) % len(world.STYLES)]
        assert evaluate.judge(_item("style", scene), _render(scene))
        assert not evaluate.judge(_item("style", scene), _render(Scene("single", scene.objects, wrong)))


def test_blank_and_noise_images_pass_nothing(items):
    blank = Image.new("RGB", (32, 32), (128, 128, 128))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    for image in (blank, noise):
        scores = evaluate.score(items, [image] * len(items))
        object_scores = [v for k, v in scores.items() if k not in ("style", "overall")]
        assert max(object_scores) == 0.0, scores


def test_find_objects_positions_and_sizes():
    scene = Scene("relation", (Obj("yellow", "triangle"), Obj("black", "circle")), "outline", "left of")
    image, layout = world.render_scene(scene, 11)
    found = evaluate.find_objects(image)
    assert len(found) == 2
    for placed in layout.placed:
        match = next(f for f in found if (f.color, f.shape) == (placed.obj.color, placed.obj.shape))
        assert np.hypot(match.center[0] - placed.center[0], match.center[1] - placed.center[1]) < 2.0


def test_manifest_round_trip(tmp_path, items):
    evaluate.write_manifest(items, tmp_path / "m.jsonl")
    assert evaluate.read_manifest(tmp_path / "m.jsonl") == items


def test_eval_sets_are_fixed_and_cover_every_category():
    a = evaluate.eval_set("combos", per_category=10)
    b = evaluate.eval_set("combos", per_category=10)
    assert a == b
    assert {it.category for it in a} == set(evaluate.CATEGORIES)
    assert all(world.is_heldout_combo(it.scene) for it in a)
    assert not any(world.is_heldout_combo(it.scene) for it in evaluate.eval_set("templates", per_category=10))


def test_score_rejects_mismatched_lengths(items):
    with pytest.raises(ValueError, match="must match"):
        evaluate.score(items, [])


def test_touching_objects_of_different_colours_are_told_apart():
    """A square drawn against a triangle (as inpainting can) is one foreground component; it is split by
    colour into both objects. Touching objects of one colour stay one object."""
    from PIL import ImageDraw

    image = Image.new("RGB", (32, 32), world.BACKGROUNDS["grey"])
    draw = ImageDraw.Draw(image)
    draw.polygon([(4, 26), (18, 26), (11, 12)], fill=world.COLORS["green"])
    draw.rectangle([19, 14, 28, 23], fill=world.COLORS["white"])  # touches the triangle's base corner
    draw.rectangle([18, 24, 19, 26], fill=world.COLORS["white"])  # and bridges to it
    found = sorted((f.color, f.shape) for f in evaluate.find_objects(image))
    assert found == [("green", "triangle"), ("white", "square")]

    same = Image.new("RGB", (32, 32), world.BACKGROUNDS["grey"])
    ImageDraw.Draw(same).rectangle([4, 10, 13, 19], fill=world.COLORS["red"])
    ImageDraw.Draw(same).rectangle([14, 10, 23, 19], fill=world.COLORS["red"])
    assert len(evaluate.find_objects(same)) == 1


def test_sample_sheet_shows_each_picture_with_its_prompt_beneath():
    pictures = [Image.new("RGB", (32, 32), c) for c in ("red", "green", "blue")]
    sheet = evaluate.sample_sheet(["a red one", "a green one", ""], pictures, columns=2, tile=64)
    assert sheet.size == (128, 2 * (64 + 48))
    px = np.asarray(sheet)
    assert (
        (px[10, 10] == (255, 0, 0)).all()
        and (px[10, 74] == (0, 128, 0)).all()
        and (px[74 + 48, 10] == (0, 0, 255)).all()
    )
    label = px[64:112, :64]  # under the first picture: its prompt in black
    assert (label.sum(-1) < 200).any()
    assert (px[64 + 112 : 224, :64] == 255).all()  # the third, with no prompt, has a blank label
