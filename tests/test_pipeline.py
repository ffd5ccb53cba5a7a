import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import Wordbrush
from pipeline.recipe import read_recipe

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def _arr(image):
    return np.asarray(image, np.int16)


def test_text_to_image_returns_images_and_recipes(wb):
    result = wb.text_to_image("a red circle", seed=3, steps=2, num_images=2)
    assert len(result.images) == 2 and len(result.recipes) == 2
    assert result.images[0].size == (32, 32) and result.images[0].mode == "RGB"
    assert [r.seed for r in result.recipes] == [3, 4]
    r = result.recipes[0]
    assert (r.prompt, r.steps, r.guidance, r.generator, r.encoder) == ("a red circle", 2, 3.0, "diffusion", "minilm")


def test_same_seed_same_image_other_seed_other_image(wb):
    a = wb.text_to_image("a red circle", seed=5, steps=2).images[0]
    b = wb.text_to_image("a red circle", seed=5, steps=2).images[0]
    c = wb.text_to_image("a red circle", seed=6, steps=2).images[0]
    assert np.array_equal(_arr(a), _arr(b))
    assert np.abs(_arr(a) - _arr(c)).mean() > 5


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_batched_prompts_match_one_by_one(tiny_folder, precision):
    wb = Wordbrush.load(str(tiny_folder), precision=precision)
    assert (wb.generator.autocast is None) == (precision == "fp32")
    prompts = ["a red circle", "three blue squares", "a green triangle above a white circle"]
    batched = wb.text_to_image(prompts, seed=[1, 2, 3], steps=3)
    for prompt, seed, image in zip(prompts, [1, 2, 3], batched.images):
        alone = wb.text_to_image(prompt, seed=seed, steps=3).images[0]
        diff = np.abs(_arr(alone) - _arr(image))
        if precision == "fp32":
            assert diff.max() == 0  # bit for bit: the per-image linears run row by row, prompts padded to one length
        else:  # bf16 kernels round differently at another batch size: close, not identical
            assert diff.mean() < 1.5 and diff.max() <= 24


def test_a_request_samples_the_same_bits_alone_as_in_any_batch(tiny_folder):
    """Float output of the sampler, not just pixels: prompts of different lengths, batches of different sizes."""
    wb = Wordbrush.load(str(tiny_folder), precision="fp32")
    prompts = ["a red circle", "three blue squares above a big green triangle with stripes", "ok", "a white star"]
    uncond = wb.encoder.encode([""])
    batched = wb.generator.generate(wb.encoder.encode(prompts), uncond, seeds=[5, 6, 7, 8], steps=3, guidance=3.0)
    for i, prompt in enumerate(prompts):
        wb.encoder.clear_cache()
        alone = wb.generator.generate(wb.encoder.encode([prompt]), uncond, seeds=[5 + i], steps=3, guidance=3.0)
        assert torch.equal(alone[0], batched[i]), prompt


def test_auto_precision_uses_bf16_only_where_the_hardware_has_it(tiny_folder):
    from pipeline.core import native_bf16

    wb = Wordbrush.load(str(tiny_folder))
    assert (wb.generator.autocast == torch.bfloat16) == native_bf16("cpu")
    with pytest.raises(ValueError, match="precision must be"):
        Wordbrush.load(str(tiny_folder), precision="fp8")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x", "seed": -5}, "seed must be"),
        ({"prompt": "x", "seed": 2**64}, "seed must be"),
        ({"prompt": "x", "steps": 0}, "steps must be between"),
        ({"prompt": "x", "steps": 10_000}, "steps must be between"),
        ({"prompt": "x", "guidance": -1.0}, "guidance must be"),
        ({"prompt": "x", "num_images": 0}, "num_images"),
        ({"prompt": ["a", "b"], "seed": [1]}, "seeds for 2 prompts"),
    ],
)
def test_bad_input_gets_a_teaching_error(wb, kwargs, message):
    prompt = kwargs.pop("prompt")
    with pytest.raises(ValueError, match=message):
        wb.text_to_image(prompt, **kwargs)


def test_long_and_foreign_prompts_work_and_say_so(wb):
    long = wb.text_to_image("a red circle " * 800, seed=0, steps=1)  # 10,400 characters
    assert len(long.recipes[0].encoded_prompt) < 400  # cut at the encoder's 64 tokens, recorded in the recipe
    foreign = wb.text_to_image("ein roter Kreis über einem blauen Quadrat 🔴", seed=0, steps=1)
    assert foreign.images[0].size == (32, 32)
    random_seed = wb.text_to_image("a red circle", seed=-1, steps=1)
    assert 0 <= random_seed.recipes[0].seed < 2**32


def test_huge_seed_is_accepted(wb):
    assert wb.text_to_image("a red circle", seed=2**63 - 1, steps=1).recipes[0].seed == 2**63 - 1


def test_callback_sees_every_step(wb):
    seen = []
    wb.text_to_image("a red circle", seed=0, steps=4, callback=lambda i, n, x: seen.append((i, n, tuple(x.shape))))
    assert seen == [(i, 4, (1, 3, 32, 32)) for i in range(1, 5)]


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises((ValueError, FileNotFoundError), match="model|wordbrush.json"):
        Wordbrush.load(str(tmp_path))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True)


def test_cli_single_prompt_writes_png_with_recipe(tiny_folder, tmp_path):
    out = tmp_path / "out.png"
    r = _cli(
        "generate",
        "a red circle above a blue square",
        "--seed",
        "0",
        "--out",
        str(out),
        "--model",
        str(tiny_folder),
        "--steps",
        "2",
    )
    assert r.returncode == 0, r.stderr
    image = Image.open(out)
    recipe = read_recipe(image)
    assert recipe.prompt == "a red circle above a blue square" and recipe.seed == 0 and recipe.steps == 2
    assert image.info["parameters"].startswith("a red circle above a blue square\nSteps: 2")


def test_cli_prompts_file_writes_numbered_pngs(tiny_folder, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\nthree green triangles\na white square\n")
    r = _cli(
        "generate",
        "--prompts",
        str(prompts),
        "--out-dir",
        str(tmp_path / "d"),
        "--seed",
        "0",
        "--model",
        str(tiny_folder),
        "--steps",
        "2",
        "--batch-size",
        "2",
    )
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert files == ["0000.png", "0001.png", "0002.png"]
    assert [read_recipe(Image.open(tmp_path / "d" / f)).seed for f in files] == [0, 1, 2]


def test_cli_bad_input_exits_2_with_a_message(tiny_folder, tmp_path):
    r = _cli("generate", "a red circle", "--steps", "0", "--model", str(tiny_folder), "--out", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "steps must be between" in r.stderr


def test_cli_bad_inputs_each_get_one_line_and_exit_2(tiny_folder, tmp_path, capsys):
    from PIL import Image

    from pipeline.__main__ import main

    (tmp_path / "latin1.txt").write_bytes("un cercle rouge \xe9\n".encode("latin-1"))
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "text.png").write_text("not an image")
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")  # 40 KB on disk, 400 megapixels decoded
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "corrupt.safetensors").write_bytes(b"garbage")
    model, out = ["--model", str(tiny_folder)], str(tmp_path / "out.png")
    cases = [
        (["generate", "a red circle", "--out", str(tmp_path / "missing" / "x.png"), *model], "does not exist"),
        (
            ["generate", "--prompts", str(tmp_path / "latin1.txt"), "--out-dir", str(tmp_path / "o"), *model],
            "not UTF-8",
        ),
        (
            ["generate", "--prompts", str(tmp_path / "empty.txt"), "--out-dir", str(tmp_path / "o"), *model],
            "holds no prompts",
        ),
        (
            ["generate", "--prompts", str(tmp_path / "nowhere.txt"), "--out-dir", str(tmp_path / "o"), *model],
            "No such file",
        ),
        (["generate", "a red circle", "--out", out, "--model", str(tmp_path / "not-a-model")], "not a Wordbrush model"),
        (
            ["generate", "a red circle", "--out", out, "--lora", str(tmp_path / "corrupt.safetensors"), *model],
            "is not a LoRA",
        ),
        (
            ["generate", "a red circle", "--out", out, "--lora", f"{tmp_path / 'corrupt.safetensors'}:nan", *model],
            "LoRA scale must be between",
        ),
        (
            ["style", "--image", str(tmp_path / "bomb.png"), "--prompt", "in outline style", "--out", out, *model],
            "too large to open",
        ),
        (
            ["style", "--image", str(tmp_path / "text.png"), "--prompt", "in outline style", "--out", out, *model],
            "not an image",
        ),
        (
            [
                "inpaint",
                "--image",
                str(tmp_path / "text.png"),
                "--mask",
                str(tmp_path / "bomb.png"),
                "--prompt",
                "x",
                "--out",
                out,
                *model,
            ],
            "not an image",
        ),
        (["generate", "a red circle", "--out", str(tmp_path / "x.jpg"), *model], "PNG files"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "error: " in err and message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "o").exists()
