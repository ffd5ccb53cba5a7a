"""Every diffusers layout a preset names, as tiny random-weight pipelines saved locally and loaded back the way a
hub id is: Stable Diffusion, SD inpainting (9-channel UNet), SDXL, PixArt-Sigma and Sana. Each runs every task
it supports through the CLI and the app's API handlers, and refuses the others with its one-line reason."""

import re
import shutil

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import app
from pipeline import __main__ as cli
from pipeline import load_pipeline
from pipeline.batcher import Batcher
from pipeline.serve import Server
from tests.tiny import make_tiny_lora, make_tiny_pixart, make_tiny_sana, make_tiny_sd, make_tiny_sdxl
from train import __main__ as train_cli

TASKS = ("text_to_image", "style_transfer", "inpaint")
# layout -> (builder, the tasks it runs, takes a LoRA, trains a LoRA)
LAYOUTS = {
    "sd": (make_tiny_sd, TASKS, True, True),
    "sd-inpainting": (lambda f: make_tiny_sd(f, inpainting=True), ("inpaint",), True, False),
    "sdxl": (make_tiny_sdxl, TASKS, True, True),
    "pixart-sigma": (make_tiny_pixart, ("text_to_image",), False, False),
    "sana": (make_tiny_sana, ("text_to_image",), True, False),
}
REFUSALS = {  # what each unsupported combination says (a regular expression)
    ("sd-inpainting", "text_to_image"): "inpainting checkpoint",
    ("sd-inpainting", "style_transfer"): "inpainting checkpoint",
    ("pixart-sigma", "style_transfer"): "diffusers has no image-to-image pipeline for PixArtSigmaPipeline",
    ("pixart-sigma", "inpaint"): "diffusers has no inpainting pipeline for PixArtSigmaPipeline",
    ("sana", "style_transfer"): "diffusers has no image-to-image pipeline for SanaPipeline",
    ("sana", "inpaint"): "diffusers has no inpainting pipeline for SanaPipeline",
}


def no_progress(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return {name: make(root / name) for name, (make, *_) in LAYOUTS.items()}


@pytest.fixture(scope="module")
def pipes(folders):
    return {name: load_pipeline(str(folder)) for name, folder in folders.items()}


def _editor(size):
    background = Image.new("RGB", size, (90, 140, 200))
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (4, 4, size[0] // 2, size[1] // 2))
    return {"background": background, "layers": [layer], "composite": background}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_runs_its_tasks_through_the_api_and_refuses_the_rest_in_one_line(layout, pipes, tmp_path):
    pipe, (_, runs, *_) = pipes[layout], LAYOUTS[layout]
    server = Server({"diffusers": Batcher(pipe, window_s=0.01)})
    picture = tmp_path / "in.png"
    Image.new("RGB", (48, 32), (200, 60, 40)).save(picture)
    calls = {
        "text_to_image": lambda: app.text_to_image_handler(server)(
            "a red fox", "diffusers", 2, 3.0, 5, False, 2, progress=no_progress
        ),
        "style_transfer": lambda: app.style_transfer_handler(server)(
            str(picture), "oil", "", 0.6, 0, False, progress=no_progress
        ),
        "inpaint": lambda: app.inpaint_handler(server)(_editor((48, 32)), "a cat", 0, False, progress=no_progress),
    }
    for task, call in calls.items():
        if task in runs:
            out = call()
            if task == "text_to_image":
                assert len(out[0]) == 2 and "Seed: 5" in out[2]
            elif task == "style_transfer":  # the input's 3:2 aspect at the model's 32 px
                assert max(out[0].size) == 32 and abs(out[0].size[0] / out[0].size[1] - 1.5) <= 0.2, out[0].size
            else:
                assert out[0].size == (48, 32)  # the input's own size
        else:
            with pytest.raises(gr.Error) as refused:
                call()
            message = str(refused.value.message)
            assert "\n" not in message and message.startswith(f"this model cannot do {task.replace('_', ' ')}")
            assert re.search(REFUSALS[layout, task], message), message
    assert pipe.capabilities.refused.keys() >= {t for t in TASKS if t not in runs}
    family = {"sdxl": (30, 5.0), "pixart-sigma": (20, 4.5), "sana": (20, 4.5)}.get(layout, (25, 7.5))
    assert (pipe.default_steps, pipe.default_guidance) == family  # a folder no preset names: its family's


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_through_the_cli_with_per_step_progress(layout, folders, pipes, tmp_path, capsys):
    folder, runs = folders[layout], LAYOUTS[layout][1]
    steps = []
    if "text_to_image" in runs:
        pipes[layout].text_to_image("a fox", seed=0, steps=3, callback=lambda s, n, _: steps.append((s, n)))
        assert steps == [(1, 3), (2, 3), (3, 3)]  # the page's progress bar moves every step
    Image.new("RGB", (40, 40), (20, 160, 60)).save(tmp_path / "in.png")
    mask = Image.new("L", (40, 40), 0)
    mask.paste(255, (10, 10, 30, 30))
    mask.save(tmp_path / "mask.png")
    commands = {
        "text_to_image": ["generate", "a fox", "--out", str(tmp_path / "t.png")],
        "style_transfer": [
            "style",
            "--image",
            str(tmp_path / "in.png"),
            "--prompt",
            "oil",
            "--out",
            str(tmp_path / "s.png"),
        ],
        "inpaint": [
            "inpaint",
            "--image",
            str(tmp_path / "in.png"),
            "--mask",
            str(tmp_path / "mask.png"),
            "--prompt",
            "a cat",
            "--out",
            str(tmp_path / "i.png"),
        ],
    }
    for task, argv in commands.items():
        capsys.readouterr()
        code = cli.main([*argv, "--model", str(folder), "--steps", "2"])
        err = capsys.readouterr().err
        if task in runs:
            assert code == 0, err
            assert Image.open(argv[argv.index("--out") + 1]).size == ((40, 40) if task == "inpaint" else (32, 32))
        else:
            last = err.strip().splitlines()[-1]  # after the loading bars: one line that says why, no traceback
            assert code == 2 and last.startswith("error: this model cannot do") and "Traceback" not in err, err


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_loads_a_lora_for_one_call_or_says_it_cannot(layout, folders, pipes, tmp_path):
    pipe, takes_lora = pipes[layout], LAYOUTS[layout][2]
    task = LAYOUTS[layout][1][0]
    source = Image.new("RGB", (32, 32), (90, 140, 200))
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (0, 0, 32, 16))

    def draw(lora=None):
        if task == "inpaint":
            image = pipe.inpaint(source, mask, prompt="a fox", seed=0, steps=2, lora=lora).images[0]
        else:
            image = pipe.text_to_image("a fox", seed=0, steps=2, lora=lora).images[0]
        return np.asarray(image).astype(int)

    if not takes_lora:
        lora_file = tmp_path / "other.safetensors"
        shutil.copy(make_tiny_lora(folders["sd"], tmp_path / "sd-lora"), lora_file)
        family = type(pipe.generator.base).__name__
        with pytest.raises(ValueError, match=f"cannot do lora: diffusers has no LoRA loader for {family}"):
            draw(f"{lora_file}:1.0")
        return
    lora = make_tiny_lora(folders[layout], tmp_path / "lora")
    before = draw()
    assert np.abs(draw(f"{lora}:1.0") - before).max() > 0  # the adapter changes the image
    assert np.array_equal(draw(), before)  # and is gone from the next call


def test_lora_training_is_refused_in_one_line_where_the_family_has_none(folders, tmp_path, capsys):
    from pipeline.worlds.shapes.scenes import write_star_demo

    data = write_star_demo(tmp_path / "stars", n=2)
    for layout, (*_, trains) in LAYOUTS.items():
        assert load_pipeline(str(folders[layout])).capabilities.lora_training is trains  # the Train tab shows or not
        if trains:
            continue
        capsys.readouterr()
        argv = ["lora", "--model", str(folders[layout]), "--data", str(data), "--out", str(tmp_path / layout)]
        code = train_cli.main(argv)
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("error: cannot train a LoRA for") and "Traceback" not in err, err


@pytest.mark.parametrize("layout", ["sd", "sdxl"])
def test_lora_training_keeps_only_the_adapter_resumes_exactly_and_loads_in_plain_diffusers(layout, folders, tmp_path):
    from diffusers import DiffusionPipeline
    from safetensors.torch import load_file

    from pipeline.worlds.shapes.scenes import write_star_demo
    from train.lora import train_lora

    data = write_star_demo(tmp_path / "stars", n=6)

    def run(out, steps):
        return train_lora(
            model=str(folders[layout]),
            data=data,
            out=out,
            steps=steps,
            lr=5e-2,
            batch_size=2,
            checkpoint_every=2,
            validation_prompts=["a red star"],
        )

    straight = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)  # stopped at step 2, as a kill after a checkpoint leaves it
    resumed = run(tmp_path / "b", 4)
    a, b = load_file(straight), load_file(resumed)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

    adapter = sum(t.numel() for t in a.values())
    for name in ("trainable.safetensors", "ema.safetensors"):  # a checkpoint holds the adapter, not the UNet
        held = sum(t.numel() for t in load_file(tmp_path / "a" / "checkpoint" / name).values())
        assert adapter <= held <= 2 * adapter, (name, held, adapter)

    plain = DiffusionPipeline.from_pretrained(folders[layout], use_safetensors=True)
    gens = [torch.Generator().manual_seed(0)]
    before = plain("a red star", generator=gens, num_inference_steps=2, output_type="np").images
    plain.load_lora_weights(str(straight.parent), weight_name=straight.name)
    gens = [torch.Generator().manual_seed(0)]
    after = plain("a red star", generator=gens, num_inference_steps=2, output_type="np").images
    assert np.abs(after - before).max() > 1e-3  # diffusers' own loader applied it


def test_a_preset_takes_a_component_from_another_repository_and_that_id_finds_the_preset(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from pipeline import presets
    from pipeline.presets import ModelSpec

    base = make_tiny_pixart(tmp_path / "pipeline", transformer_only=tmp_path / "dit-only")
    spec = ModelSpec(
        generators={"diffusers": str(base)},
        description="tiny",
        default_generator="diffusers",
        components={"transformer": str(tmp_path / "dit-only")},
        steps=3,
        guidance=2.0,
    )
    monkeypatch.setitem(presets.PRESETS, "tiny-pixart", spec)
    for name in ("tiny-pixart", str(tmp_path / "dit-only")):  # by preset name, or by the transformer's own id
        pipe = load_pipeline(name)
        assert (pipe.default_steps, pipe.default_guidance) == (3, 2.0)
        loaded = pipe.generator.base.transformer.state_dict()
        wanted = load_file(tmp_path / "dit-only" / "transformer" / "diffusion_pytorch_model.safetensors")
        assert all(torch.equal(loaded[k], wanted[k]) for k in wanted)
        assert pipe.text_to_image("a fox", seed=0, steps=2).images[0].size == (32, 32)


def test_half_precision_loads_the_fp16_variant_where_there_is_one(tmp_path):
    from diffusers import DiffusionPipeline

    from pipeline.hub import HubPipeline

    plain = make_tiny_sd(tmp_path / "plain")
    DiffusionPipeline.from_pretrained(plain).save_pretrained(tmp_path / "variant", variant="fp16")
    assert sorted((tmp_path / "variant" / "unet").glob("*.fp16.safetensors"))
    for folder in (tmp_path / "variant", plain):  # the variant when it exists, the full files when it does not
        pipe = HubPipeline.load(str(folder), device="cpu", dtype=torch.float16)
        assert pipe.generator.base.unet.dtype == torch.float16


@pytest.mark.slow
def test_offload_and_compile_construct_and_compile_runs(folders):
    offloaded = load_pipeline(str(folders["sd"]), offload=True)  # model CPU offload applies on CUDA only
    assert offloaded.text_to_image("x", seed=0, steps=2).images[0].size == (32, 32)
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile on the CPU needs a C compiler")
    compiled = load_pipeline(str(folders["sd"]), compile=True)
    eager = load_pipeline(str(folders["sd"]))
    a = compiled.text_to_image("a fox", seed=0, steps=2).images[0]  # compiles (tens of seconds), then runs
    b = eager.text_to_image("a fox", seed=0, steps=2).images[0]
    assert np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int)).max() <= 2
