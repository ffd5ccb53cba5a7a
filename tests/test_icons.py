"""The icons world (pipeline/worlds/icons/scenes.py) and its evaluator (pipeline/worlds/icons/judge.py)."""

import json
import random
import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from pipeline.worlds.icons import judge as icons_eval
from pipeline.worlds.icons import scenes as icons_world
from pipeline.worlds.icons.scenes import Scene


def test_the_atlas_holds_over_a_hundred_distinct_icons_in_six_categories():
    icons = icons_world.icons()
    assert len(icons) >= 100
    assert {i.category for i in icons.values()} == {"animal", "food", "vehicle", "plant", "weather", "household"}
    sprites = np.stack([np.asarray(i.sprite.resize((16, 16), Image.BOX), np.float32) for i in icons.values()])
    assert (sprites[..., 3] > 128).mean(axis=(1, 2)).min() > 0.2  # every sprite draws something
    flat = sprites.reshape(len(sprites), -1)
    distances = np.linalg.norm(flat[:, None] - flat[None], axis=-1) + np.eye(len(flat)) * 1e9
    assert distances.min() > 100  # no two icons are the same picture


def test_held_out_names_never_appear_in_a_training_caption():
    held = {word for icon in icons_world.icons().values() for word in icon.heldout}
    assert {"puppy", "kitten", "automobile"} <= held and len(held) >= 50
    assert not held & icons_world.caption_words()
    rng = random.Random(0)
    for _ in range(3000):
        words = set(icons_world.sample_example(rng).caption.replace(",", " ").split())
        assert not words & held


def test_same_seed_same_image_and_layouts_honour_relations_and_spacing():
    scene = Scene("relation", ("frog", "pizza"), "dark blue", "above")
    a, layout = icons_world.render_scene(scene, 7)
    b, _ = icons_world.render_scene(scene, 7)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and a.size == (64, 64)
    (ax, ay), (bx, by) = layout.centers()
    assert ay < by  # the frog is above the pizza
    rng = random.Random(1)
    for _ in range(300):
        scene = icons_world.sample_scene(rng)
        layout = icons_world.sample_layout(scene, rng)
        boxes = layout.boxes
        assert all(0 < v < 64 for box in boxes for v in box)
        assert all(icons_world.apart(p, q, 7) for i, p in enumerate(boxes) for q in boxes[i + 1 :])
        assert all(icons_world.visible_on(n, scene.background) for n in scene.icons)


def test_heldout_combinations_never_reach_training_and_exist_for_every_kind():
    rng = random.Random(2)
    for kind in icons_world.KINDS:
        train = [icons_world.sample_split_scene(rng, split="train", kind=kind) for _ in range(200)]
        held = [icons_world.sample_split_scene(rng, split="heldout", kind=kind) for _ in range(50)]
        assert not any(icons_world.is_heldout_combo(s) for s in train)
        assert all(icons_world.is_heldout_combo(s) for s in held)


def test_captions_name_the_icons_the_count_the_relation_and_the_background():
    rng = random.Random(3)
    scene = Scene("count", ("red apple",) * 3, "pink")
    texts = {icons_world.caption(scene, rng) for _ in range(40)}
    assert all("red apples" in t and ("three" in t or "3" in t) for t in texts)
    assert any("pink" in t for t in texts)
    relation = Scene("relation", ("rocket", "moon"), "dark blue", "above")
    for _ in range(20):
        text = icons_world.caption(relation, rng)
        assert ("above" in text) != ("below" in text)
        if "below" in text:  # the inverted template names the second icon first
            assert text.index("moon") < text.index("rocket") or "crescent" in text


@pytest.fixture(scope="module")
def items():
    return icons_eval.eval_set("combos", per_category=100)


def test_evaluator_scores_clean_held_out_renders_at_least_099_per_category(items):
    scores = icons_eval.score(items, icons_eval.clean_images(items))
    assert set(scores) == {*icons_eval.CATEGORIES, "overall"}
    assert min(scores.values()) >= 0.99, scores


def test_evaluator_is_robust_to_mild_blur_and_noise(items):
    rng = np.random.default_rng(0)
    noisy = []
    for image in icons_eval.clean_images(items[::4]):
        px = np.asarray(image.filter(ImageFilter.GaussianBlur(0.5)), np.float32) + rng.normal(0, 5, (64, 64, 3))
        noisy.append(Image.fromarray(px.clip(0, 255).astype(np.uint8)))
    assert icons_eval.score(items[::4], noisy)["overall"] >= 0.95


def test_evaluator_fails_the_wrong_icon_relation_count_and_background():
    scene = Scene("relation", ("frog", "pizza"), "dark blue", "left of")
    image, _ = icons_world.render_scene(scene, 5)
    assert icons_eval.judge(scene, image) == {"icons": True, "background": True}
    assert not icons_eval.judge(Scene("relation", ("frog", "pizza"), "dark blue", "right of"), image)["icons"]
    assert not icons_eval.judge(Scene("relation", ("frog", "rocket"), "dark blue", "left of"), image)["icons"]
    assert not icons_eval.judge(Scene("relation", ("frog", "pizza"), "pink", "left of"), image)["background"]
    three, _ = icons_world.render_scene(Scene("count", ("cat",) * 3, "beige"), 5)
    assert icons_eval.judge(Scene("count", ("cat",) * 3, "beige"), three)["icons"]
    assert not icons_eval.judge(Scene("count", ("cat",) * 2, "beige"), three)["icons"]
    blank = Image.new("RGB", (64, 64), icons_world.BACKGROUNDS["grey"])
    assert icons_eval.find_icons(blank) == ("grey", [])


def test_inpainting_cases_pass_the_right_replacement_and_fail_the_untouched_scene():
    cases = icons_eval.inpaint_cases(40, seed=5)
    replaced = [
        np.where(c.mask[..., None], np.asarray(icons_world.render(c.expected, c.layout)), np.asarray(c.image))
        for c in cases
    ]
    assert all(icons_eval.icon_in_mask(c, Image.fromarray(r)) for c, r in zip(cases, replaced))
    assert not any(icons_eval.icon_in_mask(c, c.image) for c in cases)
    # the mask covers the replaced icon only: every other icon of the scene lies wholly outside it
    for c in cases:
        others = [b for i, b in enumerate(c.layout.boxes) if i != c.index]
        assert all(not c.mask[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1].any() for x0, y0, x1, y1 in others)


def test_synonym_items_use_held_out_names_only():
    items = icons_eval.eval_set("combos", per_category=20)
    synonyms = [it for it in items if it.category == "synonym"]
    assert len(synonyms) == 20
    for it in synonyms:
        icon = icons_world.icons()[it.scene.icons[0]]
        assert any(word in it.prompt for word in icon.heldout)
        assert not re.search(rf"\b{re.escape(icon.name)}\b", it.prompt)  # "duckling" is not "duck"


def test_an_icons_model_trains_resumes_and_draws_through_the_pipeline(tmp_path):
    from pipeline import load_pipeline
    from train.__main__ import main as train_main

    out = tmp_path / "run"
    common = [
        "diffusion",
        "--size",
        "icons-tiny",
        "--out",
        str(out),
        "--pool-size",
        "64",
        "--batch-size",
        "4",
        "--eval-per-category",
        "2",
        "--checkpoint-every",
        "2",
        "--eval-every",
        "0",
        "--sketch-steps",
        "2",
    ]
    assert train_main([*common, "--steps", "2"]) == 0
    assert train_main([*common, "--steps", "3"]) == 0  # resumes at step 2
    log = (out / "log.jsonl").read_text()
    assert '"step": 3' in log and "synonym" in log  # the icons evaluator scored it, per category
    pipe = load_pipeline(str(out / "model"))
    caps = pipe.capabilities
    assert not caps.layout  # the shapes world's layout planner stays off
    assert caps.understanding  # the icons reader (pipeline/worlds/icons/catalogue.py)
    assert pipe.example_prompts == icons_world_examples()
    result = pipe.text_to_image(["a frog next to a pizza", "a puppy"], seed=0, steps=2)
    assert result.images[0].size == (64, 64)
    assert [r.encoded_prompt for r in result.recipes] == ["a frog next to a pizza", "a dog"]
    assert result.recipes[0].layout.startswith("frog at (") and "; pizza at (" in result.recipes[0].layout
    assert result.recipes[1].layout.startswith("dog at (")  # the layout stage reads the reader's words


def test_the_sketch_painter_learns_sprites_from_names():
    from pipeline.worlds.icons.catalogue import names
    from pipeline.worlds.icons.layout import SKETCH_SIDE, LayoutEncoder
    from train.icons_diffusion import fit_sketches, sketch_loss, sketch_targets

    targets = sketch_targets()
    assert targets.shape == (len(names()), 4, SKETCH_SIDE, SKETCH_SIDE)
    assert (targets[:, :3] <= targets[:, 3:] + 1e-6).all() and targets[:, 3].mean() > 0.3  # premultiplied, opaque
    torch.manual_seed(0)
    layout, states = LayoutEncoder(16), torch.randn(4, 16)
    before = sketch_loss(layout, states, targets[:4]).item()
    after = fit_sketches(layout, states, targets[:4], steps=40)
    assert after < before / 2


def icons_world_examples():
    from pipeline.worlds import WORLDS

    return WORLDS["icons"].examples


def test_style_transfer_and_inpainting_run_on_an_icons_model(tmp_path):
    from pipeline import load_pipeline
    from tests.tiny import make_tiny_icons

    pipe = load_pipeline(str(make_tiny_icons(tmp_path)))
    picture = pipe.text_to_image("a frog", seed=0, steps=2).images[0]
    styled = pipe.style_transfer(picture, style_prompt=pipe.style_presets["pink"], seed=0, steps=2)
    assert styled.images[0].size == (64, 64) and styled.recipes[0].encoded_prompt.endswith("on a pink background")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (10, 10, 40, 40))
    painted = pipe.inpaint(picture, mask, prompt="a puppy", seed=0, steps=2)
    keep = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(painted.images[0])[keep], np.asarray(picture)[keep])  # outside: untouched
    assert painted.recipes[0].encoded_prompt == "a dog"  # the icons reader read the inpainting prompt


def test_an_icons_request_gets_the_same_bits_alone_as_in_a_batch(tmp_path):
    from pipeline import Wordbrush
    from tests.tiny import make_tiny_icons

    wb = Wordbrush.load(str(make_tiny_icons(tmp_path)), precision="fp32")
    prompts = ["a frog next to a pizza on pink", "three red apples", "a puppy", "a rocket above a moon"]
    batched = wb.text_to_image(prompts, seed=[3, 4, 5, 6], steps=3).images
    for i, prompt in enumerate(prompts):
        alone = wb.text_to_image(prompt, seed=3 + i, steps=3).images[0]
        assert np.array_equal(np.asarray(alone), np.asarray(batched[i])), prompt


def test_the_shipped_icons_preset_loads_and_draws_the_asked_background():
    from pipeline import diffusion, load_pipeline
    from pipeline.presets import PRESETS

    pipe = load_pipeline("icons")
    defaults = diffusion.read_meta(PRESETS["icons"].generators["diffusion"])["defaults"]
    assert pipe.generator.layout_encoder is not None and pipe.generator.default_steps == defaults["steps"]
    result = pipe.text_to_image(["a frog on a pink background"], seed=3)
    scene = Scene("single", ("frog",), "pink")
    assert icons_eval.judge(scene, result.images[0])["background"]
    assert result.recipes[0].layout.startswith("frog at (") and result.recipes[0].layout.endswith("background pink")


def test_an_icons_lora_teaches_a_new_thing_its_sketch_and_its_name(tmp_path, monkeypatch):
    from pipeline import Wordbrush
    from pipeline.worlds.icons.layout import read_lora_painter
    from tests.tiny import make_tiny_icons
    from train import icons_lora
    from train.lora import train_lora

    monkeypatch.setattr(icons_lora, "PRIOR_CAPTIONS", 16)  # the prior's path, on a small pool
    model = make_tiny_icons(tmp_path / "icons")
    data = icons_world.write_kite_demo(tmp_path / "kite", n=6)
    lora = train_lora(
        model=str(model),
        data=data,
        out=tmp_path / "out",
        steps=2,
        batch_size=2,
        checkpoint_every=1,
        prior_weight=1.0,
        validation_prompts=["a kite"],
    )
    taught, phrases = read_lora_painter(lora)
    assert phrases == ["kite"] and taught
    assert json.loads(lora.with_name("lora.json").read_text())["targets"] == "convolutions"

    wb = Wordbrush.load(str(model))
    painter = wb.generator.layout_encoder.painter
    base = {k: v.clone() for k, v in painter.state_dict().items()}
    assert wb.text_to_image("a kite", seed=0, steps=2).recipes[0].encoded_prompt == "a balloon"  # nearest icon
    result = wb.text_to_image("a kite next to a frog", seed=0, steps=2, lora=f"{lora}:1")
    assert result.recipes[0].encoded_prompt == "a kite next to a frog"  # the taught word stays as written
    assert result.recipes[0].layout.startswith("kite at (") and "; frog at (" in result.recipes[0].layout
    assert all(torch.allclose(v, taught[k], atol=1e-3) for k, v in painter.state_dict().items())
    wb.text_to_image("a kite", seed=0, steps=2, lora=f"{lora}:0.5")
    halfway = {k: (base[k] + taught[k]) / 2 for k in base}
    assert all(torch.allclose(v, halfway[k], atol=1e-3) for k, v in painter.state_dict().items())
    assert wb.text_to_image("a kite", seed=0, steps=2).recipes[0].encoded_prompt == "a balloon"  # LoRA gone
    assert all(torch.equal(v, base[k]) for k, v in painter.state_dict().items())


def test_a_taught_thing_is_found_in_its_pictures_and_never_in_the_worlds(tmp_path):
    from pipeline.worlds.icons.scenes import kite_sprite, write_kite_demo
    from train.icons_lora import thing_boxes, thing_found

    data = write_kite_demo(tmp_path / "kite", n=12)
    sprite = kite_sprite()
    pictures = [Image.open(p) for p in sorted(data.glob("*.png"))]
    assert all(thing_found(p, sprite) for p in pictures)
    assert all(len(thing_boxes(p, 1)) == 1 and thing_boxes(p, 2) is None for p in pictures)
    rng = random.Random(3)
    for _ in range(60):
        example = icons_world.sample_example(rng, combo_split="heldout")
        assert not thing_found(icons_world.render_scene(example.scene, example.seed)[0], sprite)


def test_a_picture_without_a_recipe_is_restyled_with_the_things_found_in_it(tmp_path):
    from pipeline import load_pipeline
    from pipeline.worlds.icons.judge import scene_of
    from tests.tiny import make_tiny_icons

    rng = random.Random(8)
    for _ in range(30):  # the world's own pictures: the same things found, each box around its sprite
        example = icons_world.sample_example(rng, combo_split="heldout")
        image, layout = icons_world.render_scene(example.scene, example.seed)
        caption, plan = scene_of(image, "pink")
        assert sorted(plan.request.things) == sorted(example.scene.icons) and plan.request.background == "pink"
        for box in plan.boxes:
            assert any(abs(box[0] - b[0]) <= 3 and abs(box[2] - b[2]) <= 3 for b in layout.boxes), (caption, box)
    pipe = load_pipeline(str(make_tiny_icons(tmp_path)))
    picture = icons_world.render(
        Scene("relation", ("cat", "pizza"), "pink", "left of"), icons_world.Layout(((4, 8, 30, 34), (36, 30, 60, 54)))
    )
    result = pipe.style_transfer(
        picture.resize((256, 256)), style_prompt=pipe.style_presets["dark blue"], seed=0, steps=2
    )
    assert result.recipes[0].encoded_prompt == "a cat to the left of a pizza on a dark blue background"
    assert result.recipes[0].strength == 1.0  # the icons model's default: the map keeps the things
