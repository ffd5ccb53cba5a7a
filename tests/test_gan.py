import numpy as np
import pytest
import torch

from pipeline import Wordbrush
from tests.tiny import make_tiny_diffusion, make_tiny_gan


@pytest.fixture(scope="module")
def wb(tmp_path_factory):
    return Wordbrush.load(str(make_tiny_gan(tmp_path_factory.mktemp("tiny") / "gan")))


def test_gan_draws_without_a_layout_and_refuses_one(wb):
    assert wb.text_to_image("a red circle above a blue square", seed=0).recipes[0].layout is None
    with pytest.raises(ValueError, match="cannot follow a layout"):
        wb.text_to_image("a red circle above a blue square", seed=0, layout=True)


def _arr(image):
    return np.asarray(image, np.int16)


def test_gan_answers_the_same_call_as_diffusion(wb):
    result = wb.text_to_image(["a red circle", "three blue squares"], seed=[3, 4], num_images=2)
    assert len(result.images) == 4 and result.images[0].size == (32, 32)
    r = result.recipes[0]
    assert (r.generator, r.steps, r.guidance, r.seed) == ("gan", 1, 0.0, 3)


def test_gan_same_seed_same_image_different_seeds_differ(wb):
    a = wb.text_to_image("a red circle", seed=11).images[0]
    b = wb.text_to_image("a red circle", seed=11).images[0]
    c = wb.text_to_image("a red circle", seed=12).images[0]
    assert np.array_equal(_arr(a), _arr(b))
    assert np.abs(_arr(a) - _arr(c)).mean() > 0.5


def test_gan_batch_matches_one_by_one_bit_for_bit(wb):
    prompts = ["a red circle", "three green triangles above a big purple square with stripes", "a blue square"]
    uncond = wb.encoder.encode([""])
    batched = wb.generator.generate(wb.encoder.encode(prompts), uncond, seeds=[1, 2, 3], steps=1, guidance=0.0)
    for i, prompt in enumerate(prompts):
        wb.encoder.clear_cache()
        alone = wb.generator.generate(wb.encoder.encode([prompt]), uncond, seeds=[i + 1], steps=1, guidance=0.0)
        assert torch.equal(alone[0], batched[i]), prompt


def test_gan_refuses_editing_with_a_clear_message(wb):
    from PIL import Image

    with pytest.raises(ValueError, match="use the diffusion generator"):
        wb.style_transfer(Image.new("RGB", (32, 32)), style_prompt="soft")
    with pytest.raises(ValueError, match="use the diffusion generator"):
        wb.inpaint(Image.new("RGB", (32, 32)), Image.new("L", (32, 32), 255), prompt="x")


def test_generate_cli_with_gan(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    folder = make_tiny_gan(tmp_path / "gan")
    out = tmp_path / "g.png"
    cmd = ["generate", "a red circle", "--model", str(folder), "--generator", "gan", "--out", str(out)]
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-m", "pipeline", *cmd], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.exists()


def test_with_generator_shares_the_encoder(tmp_path, monkeypatch):
    from pipeline import presets

    diff = make_tiny_diffusion(tmp_path / "diffusion")
    g = make_tiny_gan(tmp_path / "gan")
    spec = presets.ModelSpec(generators={"diffusion": str(diff), "gan": str(g)}, description="test")
    monkeypatch.setitem(presets.PRESETS, "test-preset", spec)
    wb = Wordbrush.load("test-preset")
    other = wb.with_generator("gan")
    assert other.encoder is wb.encoder and other.generator.kind == "gan" and wb.generator.kind == "diffusion"
    assert presets.available_generators("test-preset") == ["diffusion", "gan"]


def test_the_icons_gan_trains_resumes_and_draws_the_planned_things(tmp_path):
    from pipeline import load_pipeline
    from tests.tiny import make_tiny_icons
    from train.__main__ import main as train_main

    layout_from, out = make_tiny_icons(tmp_path / "icons"), tmp_path / "run"
    common = [
        "gan",
        "--size",
        "icons",
        "--layout-from",
        str(layout_from),
        "--out",
        str(out),
        "--pool-size",
        "32",
        "--batch-size",
        "4",
        "--eval-per-category",
        "1",
        "--checkpoint-every",
        "1",
        "--eval-every",
        "0",
    ]
    assert train_main([*common, "--steps", "1"]) == 0
    assert train_main([*common, "--steps", "2"]) == 0  # resumes at step 1, its discriminator with it
    log = (out / "log.jsonl").read_text()
    assert '"step": 2' in log and "synonym" in log  # the icons evaluator scored it, per category
    pipe = load_pipeline(str(out / "model"))
    assert pipe.world.name == "icons" and pipe.generator.kind == "gan"
    result = pipe.text_to_image(["a puppy next to a pizza", "a frog"], seed=[5, 6])
    assert result.images[0].size == (64, 64)
    assert result.recipes[0].encoded_prompt == "a dog and a pizza"  # the icons reader, then the layout stage
    assert result.recipes[0].layout.startswith("dog at (") and "; pizza at (" in result.recipes[0].layout
    assert "; background " in result.recipes[1].layout  # unsaid: the layout stage picks it from the seed
    alone = pipe.text_to_image("a frog", seed=6).images[0]
    assert np.array_equal(np.asarray(alone), np.asarray(result.images[1]))  # the same bits alone as in a batch
    with pytest.raises(ValueError, match="use the diffusion generator"):
        pipe.inpaint(alone, alone.convert("L"), prompt="a cat", seed=0)
