import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from pipeline import Wordbrush
from tests.tiny import make_tiny_diffusion
from train.lora import load_folder

ROOT = Path(__file__).resolve().parent.parent


def _write(folder: Path, name: str, image: Image.Image, caption: str | None):
    image.save(folder / name)
    if caption is not None:
        (folder / name).with_suffix(".txt").write_text(caption)


def test_folder_with_txt_captions_mixed_sizes_and_modes(tmp_path):
    _write(tmp_path, "a.png", Image.new("RGB", (100, 60), "red"), "a red square")
    _write(tmp_path, "b.png", Image.new("RGBA", (20, 20), (0, 0, 255, 128)), "a blue square")
    _write(tmp_path, "c.png", Image.new("L", (64, 64), 200), "a white square")
    _write(tmp_path, "d.png", Image.new("P", (33, 17)), "a black square")
    data = load_folder(tmp_path, resolution=32)
    assert len(data.images) == 4 and all(im.size == (32, 32) and im.mode == "RGB" for im in data.images)
    assert data.captions == ["a red square", "a blue square", "a white square", "a black square"]


def test_metadata_jsonl_layout(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "x.png", "text": "a star"}) + "\n")
    assert load_folder(tmp_path, resolution=32).captions == ["a star"]


def test_bad_data_gets_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="holds no images"):
        load_folder(tmp_path, resolution=32)
    _write(tmp_path, "a.png", Image.new("RGB", (32, 32)), None)
    with pytest.raises(ValueError, match="a.png has no caption"):
        load_folder(tmp_path, resolution=32)
    assert load_folder(tmp_path, resolution=32, allow_empty_captions=True).captions == [""]
    (tmp_path / "a.txt").write_text("a caption")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "broken.txt").write_text("never read")
    with pytest.warns(UserWarning, match="skipped 1 unreadable file.*broken.png"):
        data = load_folder(tmp_path, resolution=32)
    assert data.skipped == ["broken.png"] and len(data.images) == 1


@pytest.fixture(scope="module")
def trained_lora(tmp_path_factory):
    base = make_tiny_diffusion(tmp_path_factory.mktemp("tiny") / "model")
    data = tmp_path_factory.mktemp("stars")
    subprocess.run(
        [sys.executable, "-m", "train", "lora-demo-data", "--world", "shapes", "--out", str(data), "--n", "8"],
        cwd=ROOT,
        check=True,
    )
    out = tmp_path_factory.mktemp("lora")
    cmd = [
        sys.executable,
        "-m",
        "train",
        "lora",
        "--model",
        str(base),
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        "10",
        "--batch-size",
        "4",
        "--lr",
        "1e-2",
        "--checkpoint-every",
        "5",
        "--rank",
        "4",
        "--validation-prompts",
        "a red star",
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return base, out


@pytest.mark.integration
def test_lora_file_is_in_diffusers_format(trained_lora):
    _, out = trained_lora
    weights = load_file(out / "model" / "lora.safetensors")
    assert weights and all(k.startswith("unet.") for k in weights)
    assert any(k.endswith("lora.down.weight") for k in weights) and any(k.endswith("lora.up.weight") for k in weights)
    assert (out / "model" / "validation-000010.png").exists()
    # the checkpoint keeps the adapter (and its EMA), not the frozen UNet: about the LoRA file's size each
    lora_size = (out / "model" / "lora.safetensors").stat().st_size
    for name in ("trainable.safetensors", "ema.safetensors"):
        assert (out / "checkpoint" / name).stat().st_size < 3 * lora_size


@pytest.mark.integration
def test_a_lora_applies_to_its_own_call_only_and_scale_zero_changes_nothing(trained_lora):
    base, out = trained_lora
    wb = Wordbrush.load(str(base))
    lora = out / "model" / "lora.safetensors"

    def draw(**kw):
        return wb.text_to_image("a red star", seed=0, steps=3, **kw)

    before = np.asarray(draw().images[0], np.int16)
    after = draw(lora=f"{lora}:1.0")
    assert np.abs(np.asarray(after.images[0], np.int16) - before).mean() > 0.5
    assert after.recipes[0].lora == f"{out.name}:1"  # its name, not the server path
    assert draw(lora=str(lora)).recipes[0].lora == f"{out.name}:1"  # no scale given: 1
    zero = np.asarray(draw(lora=f"{lora}:0").images[0], np.int16)
    assert np.abs(zero - before).max() <= 1
    plain = draw()  # the next call without a LoRA draws as if none had ever been applied
    assert plain.recipes[0].lora is None
    assert np.array_equal(np.asarray(plain.images[0], np.int16), before)


@pytest.mark.integration
def test_the_layout_stage_still_steers_with_a_lora_applied(trained_lora):
    from pipeline.layout import RegionalAttention

    base, out = trained_lora
    wb = Wordbrush.load(str(base))
    lora = f"{out / 'model' / 'lora.safetensors'}:1.0"
    prompt = "a red star above a blue circle"
    on = wb.text_to_image(prompt, seed=0, steps=3, lora=lora)
    assert all(isinstance(p, RegionalAttention) for p in wb.generator.unet.attn_processors.values())
    off = wb.text_to_image(prompt, seed=0, steps=3, layout=False, lora=lora)
    assert on.recipes[0].layout and on.recipes[0].lora
    assert np.abs(np.asarray(on.images[0], np.int16) - np.asarray(off.images[0], np.int16)).max() > 0


@pytest.mark.integration
def test_lora_resumes_from_its_checkpoint(trained_lora):
    _, out = trained_lora
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] == 10 and state["images_seen"] == 40


@pytest.mark.integration
def test_lora_refuses_non_safetensors(tmp_path, trained_lora):
    base, _ = trained_lora
    bad = tmp_path / "lora.bin"
    bad.write_bytes(b"pickle")
    with pytest.raises(ValueError, match="safetensors files only"):
        Wordbrush.load(str(base)).text_to_image("a red star", lora=str(bad))


def test_prior_preservation_is_zero_for_an_untouched_lora_and_grows_as_it_drifts(tmp_path):
    from pipeline import diffusion
    from pipeline.encoders import load_encoder
    from pipeline.worlds.shapes.scenes import write_star_demo
    from train.adapters import LoraTask, add_lora
    from train.diffusion import build_pool

    unet, cfg, _ = diffusion.load(make_tiny_diffusion(tmp_path / "base"))
    unet = unet.float()
    add_lora(unet, rank=4)
    encoder = load_encoder("minilm")
    data = load_folder(write_star_demo(tmp_path / "stars", n=4), resolution=cfg.resolution)
    prior = build_pool(encoder, size=16, seed=0)
    task = LoraTask(unet, cfg, encoder, data, validation_prompts=[], prior=prior, prior_weight=1.0)
    x0 = next(iter(task.batches(0, 4, torch.device("cpu"))))[1]
    torch.manual_seed(0)
    assert task.prior_loss(unet, x0).item() < 1e-10  # LoRA up-weights start at zero: the base model exactly
    for name, p in unet.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.1)
    torch.manual_seed(0)
    assert task.prior_loss(unet, x0).item() > 1e-4
    assert all(p.requires_grad == ("lora" in n) for n, p in unet.named_parameters())  # adapters back on


@pytest.mark.integration
def test_a_lora_also_applies_to_the_inpainting_unet(trained_lora, tmp_path):
    import shutil

    from pipeline import diffusion

    base, out = trained_lora
    folder = tmp_path / "with-inpaint"
    shutil.copytree(base, folder)
    unet, _, _ = diffusion.load(folder)
    diffusion.save_unet(diffusion.inpainting_unet(unet), folder / diffusion.INPAINT_FOLDER)
    wb = Wordbrush.load(str(folder))
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 20, 20))

    def fill(lora=None):
        image = Image.new("RGB", (32, 32), (128, 128, 128))
        return wb.inpaint(image, mask, prompt="a red star", seed=0, steps=2, lora=lora)

    plain = fill()
    with_lora = fill(f"{out / 'model' / 'lora.safetensors'}:1.0")
    assert with_lora.recipes[0].lora == f"{out.name}:1"  # the recipe names the LoRA it used...
    assert not np.array_equal(np.asarray(with_lora.images[0]), np.asarray(plain.images[0]))  # ...and it was used
    again = fill()
    assert again.recipes[0].lora is None
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(plain.images[0]))  # removed from both UNets


@pytest.mark.integration
def test_bad_loras_and_scales_are_refused_with_a_reason_and_leave_the_model_as_it_was(trained_lora, tmp_path):
    from safetensors.torch import save_file

    base, out = trained_lora
    wb = Wordbrush.load(str(base))
    before = np.asarray(wb.text_to_image("a red star", seed=0, steps=2).images[0], np.int16)
    good = out / "model" / "lora.safetensors"
    for scale in ("nan", "inf", "1e30", "-5"):
        with pytest.raises(ValueError, match="LoRA scale must be between"):
            wb.text_to_image("a red star", seed=0, steps=2, lora=f"{good}:{scale}")
    elsewhere = tmp_path / "elsewhere.safetensors"  # diffusers-format names of layers this UNet does not have
    save_file(
        {
            "unet.no_such_block.to_q.lora.down.weight": torch.zeros(4, 8),
            "unet.no_such_block.to_q.lora.up.weight": torch.zeros(8, 4),
        },
        elsewhere,
    )
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    for path, message in [(elsewhere, "matches no layer|is not a LoRA"), (corrupt, "is not a LoRA")]:
        with pytest.raises(ValueError, match=message):
            wb.text_to_image("a red star", seed=0, steps=2, lora=str(path))
        assert not any("lora_A" in n for n, _ in wb.generator.unet.named_parameters())  # no adapter left behind
    after = np.asarray(wb.text_to_image("a red star", seed=0, steps=2).images[0], np.int16)
    assert np.array_equal(before, after)
