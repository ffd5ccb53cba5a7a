"""Prompt understanding (pipeline/worlds/shapes/reader.py): the grammar, the training phrasings, the shipped reader,
and the pipeline reading free phrasing into the world's own words."""

import random

import pytest

from pipeline.worlds.shapes import reader as understand
from pipeline.worlds.shapes import scenes as world
from pipeline.worlds.shapes.reader import Parsed, canonical, in_world_words, parse_canonical
from train import phrasing


def _parsed(scene: world.Scene) -> Parsed:
    return Parsed(scene.kind, tuple((o.color, o.shape) for o in scene.objects), scene.relation, scene.style)


def test_the_grammar_matches_the_world():
    assert set(understand.COLORS) == set(world.COLORS)
    assert set(understand.SHAPES) == set(world.SHAPES) | set(world.NEW_SHAPES)
    assert set(understand.STYLES) == set(world.STYLES) - {"flat"}


def test_every_scene_has_a_canonical_caption_that_parses_back():
    rng = random.Random(0)
    for _ in range(500):
        scene = world.sample_scene(rng)
        text = canonical(
            scene.kind, [(o.color, o.shape) for o in scene.objects], relation=scene.relation, style=scene.style
        )
        assert parse_canonical(text) == _parsed(scene), text
    assert parse_canonical("a red circle and a red circle") is None  # that is a count
    assert parse_canonical("a crimson disc") is None


def test_world_captions_skip_the_reader_and_free_phrasing_does_not():
    rng = random.Random(1)
    for split in ("train", "heldout"):
        for _ in range(300):
            caption = world.caption(world.sample_scene(rng), rng, template_split=split)
            assert in_world_words(caption), caption
    for free in ("a crimson disc", "please draw a red circle", "twin charcoal squares", "asdf qwerty", "🔴"):
        assert not in_world_words(free)


def test_phrasing_splits_never_share_words_or_templates():
    for table in (phrasing.COLOR_WORDS, phrasing.SHAPE_WORDS, phrasing.RELATION_WORDS, phrasing.COUNT_WORDS):
        for words in table.values():
            train, held = phrasing.split_of(words, "train"), phrasing.split_of(words, "heldout")
            assert train and held and not set(train) & set(held) and words[0] in train
    for templates in (*phrasing.TEMPLATES.values(), phrasing.WRAPPERS):
        assert not set(phrasing.split_of(templates, "train")) & set(phrasing.split_of(templates, "heldout"))


def test_phrased_targets_are_the_scenes_they_describe():
    rng = random.Random(2)
    for _ in range(300):
        scene = world.sample_scene(rng)
        example = phrasing.phrase_scene(scene, rng, words="heldout", templates="heldout")
        assert example.target == _parsed(scene)
        assert not in_world_words(example.prompt) or example.prompt.lower() == example.prompt.lower().strip()


@pytest.fixture(scope="module")
def reader():
    if not (understand.READER_DIR / "reader.json").exists():
        pytest.fail(f"no prompt reader shipped in {understand.READER_DIR}")
    return understand.load_reader()


def test_the_shipped_reader_reads_sentence_forms_it_never_trained_on(reader):
    """Held-out sentence forms and wrappers, scenes from held-out combinations (docs/understanding.md)."""
    from train.understanding import eval_examples

    examples = eval_examples("train", "heldout", n=200)
    answers = reader.read([e.prompt for e in examples])
    right = sum(scene == e.target for e, (scene, _) in zip(examples, answers))
    assert right / len(examples) >= 0.85


def test_the_reader_puts_free_phrasing_in_the_worlds_words(reader):
    got = reader.understand(["could you please paint a scarlet disc sitting above a cobalt cube?", "a red circle"])
    assert got[0].how == "rewritten" and got[0].text == "a red circle above a blue square"
    assert got[1].how == "as written" and got[1].text == "a red circle"


@pytest.mark.parametrize(
    "prompt", ["asdf qwerty", "🔴🟦🔺⭐🐱", "ein roter Kreis neben einem blauen Quadrat", "a cat on a sofa"]
)
def test_what_the_reader_cannot_read_is_drawn_as_written(reader, prompt):
    (got,) = reader.understand([prompt])
    assert got.how == "not understood" and got.text == prompt


def test_a_very_long_prompt_is_drawn_as_written(reader):
    prompt = " ".join(["a crimson disc"] * 2000)
    (got,) = reader.understand([prompt])
    assert got.how == "too long" and got.text == prompt


def test_the_pipeline_reads_free_phrasing_plans_its_layout_and_records_it(wb, reader):
    wb.understanding._reader = reader  # the loaded reader, shared
    free = "please paint a scarlet disc sitting above a cobalt cube"
    result = wb.text_to_image([free, "a red circle"], seed=0, steps=2)
    r, plain = result.recipes
    assert r.prompt == free and r.understood == "rewritten" and r.encoded_prompt == "a red circle above a blue square"
    assert r.layout and "red circle" in r.layout and "blue square" in r.layout  # the plan follows the reading
    assert 'Understood as: "a red circle above a blue square"' in r.to_a1111()
    assert plain.understood == "as written" and plain.encoded_prompt == "a red circle"
    off = wb.text_to_image(free, seed=0, steps=2, understand=False).recipes[0]
    assert off.understood == "off" and off.encoded_prompt == free and off.layout is None
    # The same pictures as the world's own words in the same batch, from the same seeds
    import numpy as np

    same = wb.text_to_image(["a red circle above a blue square", "a red circle"], seed=0, steps=2).images
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(result.images, same))


def test_style_transfer_without_content_describes_the_image(wb, reader):
    wb.understanding._reader = reader
    scene = world.Scene("relation", (world.Obj("red", "circle"), world.Obj("blue", "square")), relation="above")
    image, _ = world.render_scene(scene, seed=3)
    assert understand.describe_image(image) == "a red circle above a blue square"
    result = wb.style_transfer(image, style_prompt="in outline style", seed=0, steps=2)
    r = result.recipes[0]
    assert r.described and r.encoded_prompt == "a red circle above a blue square in outline style"
    named = wb.style_transfer(image, style_prompt="a green triangle in outline style", seed=0, steps=2).recipes[0]
    assert not named.described and named.encoded_prompt == "a green triangle in outline style"


def test_reader_training_resumes_exactly_and_exports_a_small_fp16_adapter(tmp_path):
    from safetensors.torch import load_file

    from pipeline.worlds.shapes.reader import ReaderConfig
    from train.loop import TrainConfig, run_training
    from train.understanding import UnderstandingTask

    def run(out, steps):
        task = UnderstandingTask(ReaderConfig(rank=2), eval_size=8)
        cfg = TrainConfig(
            out=str(out),
            steps=steps,
            batch_size=4,
            lr=1e-3,
            warmup=1,
            ema_decay=0.0,
            checkpoint_every=2,
            eval_every=0,
            mixed_precision="no",
        )
        run_training(task, cfg)
        return out / "model"

    straight = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    resumed = run(tmp_path / "b", 4)
    for name in ("adapter_model.safetensors", "heads.safetensors"):
        a, b = load_file(straight / name), load_file(resumed / name)
        assert a.keys() == b.keys() and all(v.dtype.itemsize == 2 for v in a.values())
        assert all((a[k].float() - b[k].float()).abs().max() < 1e-3 for k in a)
    assert (straight / "adapter_model.safetensors").stat().st_size < 10e6
    loaded = understand.load_reader(straight)
    assert len(loaded.read(["a crimson disc"])) == 1


@pytest.mark.parametrize(
    ("prompt", "content"),
    [
        ("in outline style", False),
        ("make it hollow", False),
        ("with stripes please", False),
        ("in outline style, a crimson disc", True),
        ("a red circle", True),
        ("three squares", True),
    ],
)
def test_style_only_prompts_name_no_content(wb, reader, prompt, content):
    wb.understanding._reader = reader
    assert wb.understanding.names_content(prompt) == content
