"""Real diffusers checkpoints, offline: tiny random Stable Diffusion pipelines built here, saved with
save_pretrained and loaded back through the same code path as a hub id (pipeline/hub.py)."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import app
from pipeline import Wordbrush, load_pipeline
from pipeline.batcher import Batcher
from pipeline.hub import HubPipeline
from pipeline.recipe import read_recipe
from pipeline.serve import Server, load_models
from scripts import browser
from scripts.live_app import ROOT, running_app
from tests.tiny import make_tiny_sd


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.fixture(scope="module")
def hub(sd_folder):
    return load_pipeline(str(sd_folder))


def _arr(image):
    return np.asarray(image).astype(int)


def test_a_diffusers_folder_loads_as_a_hub_pipeline_with_all_three_tasks(hub):
    assert isinstance(hub, HubPipeline)
    assert hub.generator.kind == "diffusers" and hub.generator.resolution == 32
    assert set(hub.generator.pipes) == {"text_to_image", "style_transfer", "inpaint"} and not hub.generator.missing
    base = hub.generator.base
    for pipe in hub.generator.pipes.values():  # one set of components in memory
        assert pipe.unet is base.unet and pipe.vae is base.vae and pipe.text_encoder is base.text_encoder


def test_text_to_image_is_batched_and_seeded_per_image(hub):
    both = hub.text_to_image(["a red fox", "a lighthouse"], seed=[3, 4], steps=2, guidance=3.0)
    alone = hub.text_to_image("a lighthouse", seed=4, steps=2, guidance=3.0)
    assert [im.size for im in both.images] == [(32, 32), (32, 32)]
    assert np.array_equal(_arr(both.images[1]), _arr(alone.images[0]))  # same seed, same image, any batch
    assert not np.array_equal(_arr(both.images[0]), _arr(both.images[1]))
    r = both.recipes[1]
    assert (r.prompt, r.seed, r.steps, r.generator, r.encoder) == ("a lighthouse", 4, 2, "diffusers", "CLIPTextModel")


def test_bad_requests_get_the_same_clear_errors(hub):
    with pytest.raises(ValueError, match="prompt is empty"):
        hub.text_to_image("  ", seed=0, steps=2)
    with pytest.raises(ValueError, match="steps must be"):
        hub.text_to_image("x", seed=0, steps=0)
    with pytest.raises(ValueError, match="strength"):
        hub.style_transfer(Image.new("RGB", (8, 8)), style_prompt="oil", strength=0.0, steps=2)


def test_style_transfer_keeps_the_aspect_ratio_and_changes_the_image(hub):
    source = Image.new("RGB", (120, 60), (200, 30, 30))
    out = hub.style_transfer(source, style_prompt="as an oil painting", strength=0.5, seed=0, steps=2)
    image = out.images[0]
    assert abs(image.size[0] / image.size[1] - 2.0) < 0.01 and max(image.size) == 32
    assert out.recipes[0].strength == 0.5 and out.recipes[0].task == "style_transfer"


def test_inpaint_keeps_pixels_outside_the_mask_bit_for_bit(hub):
    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    mask = Image.new("L", (70, 50), 0)
    mask.paste(255, (10, 10, 40, 30))
    out = hub.inpaint(source, mask, prompt="a cat", seed=0, steps=2).images[0]
    inside = np.asarray(mask) >= 128
    assert out.size == source.size
    assert np.array_equal(_arr(out)[~inside], _arr(source)[~inside])
    assert not np.array_equal(_arr(out)[inside], _arr(source)[inside])
    empty = hub.inpaint(source, Image.new("L", (70, 50), 0), prompt="a cat", seed=0, steps=2).images[0]
    assert np.array_equal(_arr(empty), _arr(source))


def test_an_inpainting_checkpoint_inpaints_and_explains_what_it_cannot_do(tmp_path):
    hub = load_pipeline(str(make_tiny_sd(tmp_path / "inpaint", inpainting=True)))
    assert hub.generator.base.unet.config.in_channels == 9
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    assert hub.inpaint(Image.new("RGB", (32, 32), "white"), mask, prompt="x", steps=2).images[0].size == (32, 32)
    with pytest.raises(ValueError, match="inpainting checkpoint"):
        hub.text_to_image("x", steps=2)


def test_a_model_without_an_inpainting_pipeline_says_so(sd_folder, monkeypatch):
    import diffusers

    def no_inpainting(pipe, **kwargs):  # what diffusers raises for e.g. PixArt-Sigma
        raise ValueError(f"AutoPipeline can't find a pipeline linked to {type(pipe).__name__}")

    monkeypatch.setattr(diffusers.AutoPipelineForInpainting, "from_pipe", no_inpainting)
    hub = load_pipeline(str(sd_folder))
    with pytest.raises(ValueError, match="cannot do inpaint.*no inpainting pipeline for StableDiffusionPipeline"):
        hub.inpaint(Image.new("RGB", (32, 32)), Image.new("L", (32, 32), 255), prompt="x", steps=2)
    assert hub.text_to_image("x", steps=2).images  # the other tasks still work


def test_out_of_memory_retries_at_a_smaller_batch_then_reports(sd_folder, monkeypatch):
    hub = load_pipeline(str(sd_folder))
    pipe = hub.generator.pipes["text_to_image"]
    real_call = type(pipe).__call__
    limit = {"n": 2}

    def small_gpu(self, *args, **kwargs):
        if len(kwargs["prompt"]) > limit["n"]:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", small_gpu)
    out = hub.text_to_image("a red fox", seed=0, steps=2, num_images=4)
    alone = hub.text_to_image("a red fox", seed=3, steps=2)
    assert len(out.images) == 4 and hub.generator.oom_retries == 1
    # seeds survive the split (up to float rounding: fp32 on a CPU without AVX-512 rounds a batch differently)
    assert np.abs(_arr(out.images[3]) - _arr(alone.images[0])).max() <= 2
    limit["n"] = 0
    with pytest.raises(ValueError, match="out of GPU memory"):
        hub.text_to_image("a red fox", seed=0, steps=2)


def test_a_diffusers_lora_loads_with_a_scale_and_unloads(sd_folder, tmp_path):
    from peft import LoraConfig

    from train.adapters import save_lora

    hub = load_pipeline(str(sd_folder))
    before = hub.text_to_image("a red fox", seed=0, steps=2).images[0]
    unet = hub.generator.base.unet
    torch.manual_seed(0)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_q", "to_v"]))
    for name, p in unet.named_parameters():  # a LoRA that does something: non-zero up weights
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    path = save_lora(unet, tmp_path)
    unet.delete_adapters("default")
    assert np.array_equal(_arr(hub.text_to_image("a red fox", seed=0, steps=2).images[0]), _arr(before))

    with_lora = hub.text_to_image("a red fox", seed=0, steps=2, lora=f"{path}:1.0")
    assert not np.array_equal(_arr(with_lora.images[0]), _arr(before))
    assert with_lora.recipes[0].lora == "lora:1"  # the file's name, not its path on the server
    style = hub.style_transfer(before, style_prompt="oil", seed=0, steps=2, lora=f"{path}:1.0")
    assert style.recipes[0].lora == "lora:1"
    assert np.array_equal(_arr(hub.text_to_image("a red fox", seed=0, steps=2).images[0]), _arr(before))


def test_a_wrong_model_id_gives_a_clear_message():
    with pytest.raises(ValueError, match="neither a folder nor a downloadable hub repository"):
        load_pipeline("nobody/no-such-model")


def test_the_cli_runs_every_command_on_the_tiny_pipeline(sd_folder, tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "pipeline", *args, "--model", str(sd_folder), "--steps", "2"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    out = tmp_path / "x.png"
    done = cli("generate", "x", "--out", str(out), "--seed", "7")
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size == (32, 32) and read_recipe(Image.open(out)).seed == 7
    Image.new("RGB", (64, 32), (10, 200, 10)).save(tmp_path / "in.png")
    Image.new("L", (64, 32), 255).save(tmp_path / "mask.png")
    done = cli("style", "--image", str(tmp_path / "in.png"), "--prompt", "oil", "--out", str(tmp_path / "s.png"))
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "s.png").size == (32, 16)
    done = cli(
        "inpaint",
        "--image",
        str(tmp_path / "in.png"),
        "--mask",
        str(tmp_path / "mask.png"),
        "--prompt",
        "a cat",
        "--out",
        str(tmp_path / "i.png"),
    )
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "i.png").size == (64, 32)


def test_the_app_handlers_serve_the_tiny_pipeline(hub, tmp_path):
    batchers = Server({"diffusers": Batcher(hub, window_s=0.01)})
    demo = app.build_demo(batchers)
    assert {"text_to_image", "style_transfer", "inpaint"} <= {
        d["api_name"] for d in demo.config["dependencies"] if d.get("api_name")
    }
    t2i = app.text_to_image_handler(batchers)
    gallery, seen, recipe, seed = t2i("a red fox", "diffusers", 2, 3.0, 1, False, 2, progress=lambda *a, **k: None)
    assert len(gallery) == 2 and gallery[0][0].size == (32, 32) and "Seed: 1" in recipe
    gallery[0][0].save(tmp_path / "fox.png")
    style = app.style_transfer_handler(batchers)
    out, recipe = style(str(tmp_path / "fox.png"), "watercolor", "", 0.6, 0, False, progress=lambda *a, **k: None)
    assert "watercolor" in recipe and out.size == (32, 32)


def test_the_page_switches_models_and_a_bad_name_leaves_the_current_one_serving(tiny_folder, sd_folder, tmp_path):
    import gradio as gr

    first = Batcher(Wordbrush.load(str(tiny_folder)), window_s=0.01)
    batchers = {"diffusion": first}

    def open_model(name):
        return {kind: Batcher(m, window_s=0.01) for kind, m in load_models(name).items()}

    server = Server(batchers, open_model=open_model)
    load = app.load_model_handler(server)
    for name in ("nobody/no-such-model", "/etc", str(tmp_path / "nowhere")):
        with pytest.raises(gr.Error, match="could not load") as refused:
            load(name)
        # the same words whether or not the path exists: the page does not tell which server paths exist
        assert str(refused.value.message).replace(name, "NAME").endswith("(the server log says why)")
    assert batchers == {"diffusion": first}  # still serving the first model
    t2i = app.text_to_image_handler(server)
    assert len(t2i("a red circle", "diffusion", 2, 3.0, 0, False, 1, progress=lambda *a, **k: None)[0]) == 1

    updates = load(str(sd_folder))
    assert list(batchers) == ["diffusers"] and "loaded" in updates[-1]
    assert updates[0]["choices"] == [("diffusers", "diffusers")] or updates[0]["value"] == "diffusers"
    gallery = t2i("a red fox", "diffusers", 2, 3.0, 0, False, 2, progress=lambda *a, **k: None)[0]
    assert [image.size for image, _ in gallery] == [(32, 32), (32, 32)]
    first._thread.join(timeout=10)
    assert not first._thread.is_alive()  # the old model's worker ended, its weights can go


@pytest.mark.skipif(browser.chromium_path() is None, reason="no chromium (bash scripts/install.sh --dev)")
def test_every_tab_in_a_real_browser_on_the_tiny_pipeline(sd_folder, tmp_path):
    picture = tmp_path / "in.png"
    Image.new("RGB", (64, 64), (40, 70, 225)).save(picture)
    shot = tmp_path / "f.png"
    with (
        running_app(str(sd_folder), extra=["--allow-model-load"]) as url,
        browser.browser_page(url, failure_screenshot=shot) as page,
    ):
        model_box = page.get_by_role("combobox", name="Model")
        model_box.fill("nobody/no-such-model")
        model_box.press("Enter")
        page.get_by_role("button", name="Load model").click()
        page.get_by_text("could not load").first.wait_for(timeout=30_000)  # said in the page, server serves on
        assert browser.text_to_image(page, "a lighthouse at dusk") == 4
        browser.style_transfer(page, picture)
        assert "oil painting" in page.locator("#style-recipe textarea").input_value()
        browser.inpaint(page, picture, "a red fox")
        assert page.locator("#inpaint-recipe textarea").input_value().startswith("a red fox")


def test_lora_training_runs_on_a_diffusers_checkpoint_and_its_lora_loads_back(sd_folder, tmp_path):
    from pipeline.worlds.shapes.scenes import write_star_demo
    from train.lora import train_lora

    hub = load_pipeline(str(sd_folder))
    before = hub.text_to_image("a red star", seed=0, steps=2).images[0]
    lora = train_lora(
        model=str(sd_folder),
        data=write_star_demo(tmp_path / "stars", n=6),
        out=tmp_path / "run",
        steps=6,
        batch_size=2,
        lr=5e-2,
        checkpoint_every=3,
        validation_prompts=["a red star"],
    )
    assert lora.exists() and sorted((tmp_path / "run" / "model").glob("validation-*.png"))
    after = hub.text_to_image("a red star", seed=0, steps=2, lora=str(lora)).images[0]  # load_lora_weights reads it
    assert not np.array_equal(_arr(after), _arr(before))


def test_a_checkpoint_gets_its_familys_defaults_and_a_hub_id_its_presets(hub, sd_folder, tmp_path):
    import json
    import shutil

    from pipeline.hub import sampling_defaults
    from pipeline.presets import PRESETS, preset_of

    assert (hub.default_steps, hub.default_guidance) == (25, 7.5)  # a Stable Diffusion 1.x/2.x folder
    assert preset_of("stabilityai/sdxl-turbo") is PRESETS["sdxl-turbo"] and preset_of("sd15") is PRESETS["sd15"]
    assert preset_of("PixArt-alpha/PixArt-Sigma-XL-2-512-MS") is PRESETS["pixart-sigma"]  # its transformer's id
    assert preset_of("someone/something") is None
    base = hub.generator.base
    assert sampling_defaults(base, "stabilityai/sdxl-turbo") == (1, 0.0)  # the preset's, by hub id
    assert sampling_defaults(base, "someone/my-sd-turbo-finetune") == (1, 0.0)
    distilled = tmp_path / "few-step"  # a distilled checkpoint's scheduler says so whatever its name
    shutil.copytree(sd_folder, distilled)
    config = json.loads((distilled / "scheduler" / "scheduler_config.json").read_text())
    config["timestep_spacing"] = "trailing"
    (distilled / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    few = load_pipeline(str(distilled))
    assert (few.default_steps, few.default_guidance) == (4, 0.0)


def test_compile_constructs_a_compiled_denoiser_and_a_gan_is_refused_with_a_reason(sd_folder):
    compiled = load_pipeline(str(sd_folder), compile=True)
    assert type(compiled.generator.base.unet).__name__ == "OptimizedModule"  # what torch.compile returns
    assert compiled.generator.resolution == 32  # asked of the compiled module without asking for its truth value
    with pytest.raises(ValueError, match="diffusers checkpoint: it has no 'gan' generator"):
        load_pipeline(str(sd_folder), generator="gan")


def test_native_resolution_reads_what_each_family_records():
    from types import SimpleNamespace as NS

    from pipeline.diffusers_generator import DEFAULT_RESOLUTION, native_resolution

    unet = NS(unet=NS(config=NS(sample_size=64)), vae_scale_factor=8)  # SD 1.5: 512
    pixart = NS(unet=None, transformer=NS(config=NS(sample_size=128)), vae_scale_factor=8)
    flux2 = NS(unet=None, transformer=NS(config=NS()), default_sample_size=128, vae_scale_factor=8)
    z_image = NS(transformer=NS(config=NS()), vae_scale_factor=8)  # its config has no size, its pipeline none
    assert [native_resolution(p) for p in (unet, pixart, flux2)] == [512, 1024, 1024]
    assert native_resolution(z_image) == DEFAULT_RESOLUTION
