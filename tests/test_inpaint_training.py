"""The inpainting UNet: widened from a text-to-image UNet, trained by `python -m train inpaint`, and used by
the pipeline for masked calls when a model folder has one."""

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import Wordbrush, diffusion
from pipeline.encoders import load_encoder
from pipeline.layout import RegionalAttention
from pipeline.worlds.shapes import scenes as world
from tests.tiny import TINY_DIFFUSION, make_tiny_diffusion
from train import inpaint
from train.__main__ import main as train_main


def test_widened_unet_draws_exactly_as_its_base_before_training():
    torch.manual_seed(0)
    base = diffusion.build_unet(TINY_DIFFUSION).eval()
    wide = diffusion.inpainting_unet(base).eval()
    assert wide.config.in_channels == 3 + diffusion.COORD_INPUTS + diffusion.INPAINT_INPUTS
    assert diffusion.is_inpainting(wide) and diffusion.reads_coords(wide)
    x, states = torch.randn(2, 3, 32, 32), torch.randn(2, 5, 384)
    t, pooled = torch.tensor([10, 500]), torch.randn(2, 384)
    extra = diffusion.inpaint_inputs(torch.rand(2, 3, 32, 32) * 2 - 1, (torch.rand(2, 1, 32, 32) > 0.5).float())
    with torch.no_grad():
        a = base(diffusion.unet_inputs(base, x), t, states, class_labels=pooled).sample
        b = wide(diffusion.unet_inputs(wide, x, extra), t, states, class_labels=pooled).sample
    torch.testing.assert_close(a, b)  # the new input channels start at zero


def test_inpainting_unet_refuses_a_call_without_a_mask():
    wide = diffusion.inpainting_unet(diffusion.build_unet(TINY_DIFFUSION))
    cond = load_encoder("minilm").encode(["a red circle"])
    with pytest.raises(ValueError, match="needs an image and a mask"):
        diffusion.sample(wide, TINY_DIFFUSION, cond, cond, seeds=[0], steps=2)


def test_training_masks_cover_the_object_they_caption():
    rng = random.Random(0)
    for _ in range(50):
        image, mask, prompt = inpaint.masked_example(rng)
        assert mask.shape == (32, 32) and mask.any() and image.size == (32, 32) and prompt
    # An object's mask holds the object's whole box.
    scene = world.Scene("single", (world.Obj("red", "circle"),))
    _, layout = world.render_scene(scene, 3)
    x0, y0, x1, y1 = layout.placed[0].box
    m = inpaint.object_mask(layout.placed[0].box, random.Random(1))
    assert m[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))].all()


def test_evaluation_cases_ask_for_an_object_in_empty_background():
    for case in inpaint.inpaint_cases(20):
        assert case.mask.sum() == inpaint.EVAL_BOX**2
        assert not inpaint.object_present(case, case.image)  # nothing of that kind is there yet
    # A clean drawing of the asked object in the box counts as present.
    case = inpaint.inpaint_cases(1)[0]
    bx, by = case.box
    scene = world.Scene("single", (case.want,))
    layout = world.Layout([world.Placed(case.want, (bx + 1, by + 1, bx + 13, by + 13))], "grey")
    drawn = np.asarray(world.render(scene, layout)).copy()
    out = np.asarray(case.image).copy()
    out[case.mask] = drawn[case.mask]
    assert inpaint.object_present(case, Image.fromarray(out))


def test_inpaint_cli_trains_resumes_and_the_pipeline_uses_its_unet(tmp_path):
    base = make_tiny_diffusion(tmp_path / "base")
    out = tmp_path / "run"
    common = [
        "inpaint",
        "--init",
        str(base),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--eval-n",
        "2",
        "--checkpoint-every",
        "2",
        "--eval-every",
        "0",
        "--mixed-precision",
        "no",
    ]
    assert train_main([*common, "--steps", "2"]) == 0
    assert train_main([*common, "--steps", "4"]) == 0  # resumes at step 2
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "eval" in r] == [2, 4]
    model = out / "model"
    meta = diffusion.read_meta(model)
    assert meta["inpaint_card"]["step"] == 4 and meta["inpaint_card"]["images_seen"] == 16
    shards = list((model / diffusion.INPAINT_FOLDER).glob("*.safetensors"))
    assert shards and all(p.stat().st_size < 10 * 2**20 for p in shards)

    wb = Wordbrush.load(str(model))
    assert wb.generator.inpaint_unet is not None and diffusion.is_inpainting(wb.generator.inpaint_unet)
    assert all(isinstance(p, RegionalAttention) for p in wb.generator.inpaint_unet.attn_processors.values())
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), np.uint8))
    mask = np.zeros((40, 30), bool)
    mask[5:20, 5:20] = True
    result = wb.inpaint(image, Image.fromarray(mask.astype(np.uint8) * 255), prompt="a red circle", seed=3, steps=2)
    out_px, in_px = np.asarray(result.images[0]), np.asarray(image)
    assert np.array_equal(out_px[~mask], in_px[~mask]) and not np.array_equal(out_px[mask], in_px[mask])
    again = wb.inpaint(image, Image.fromarray(mask.astype(np.uint8) * 255), prompt="a red circle", seed=3, steps=2)
    assert np.array_equal(np.asarray(again.images[0]), out_px)
    assert wb.text_to_image("a red circle", seed=0, steps=2).images[0].size == (32, 32)  # t2i keeps its UNet
