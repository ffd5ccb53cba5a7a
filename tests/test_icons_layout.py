"""The icons world's layout stage (pipeline/worlds/icons/layout.py): reading prompts, planning boxes, the map."""

import random

import numpy as np
import pytest
import torch

from pipeline import diffusion
from pipeline.worlds.icons import layout as lay
from pipeline.worlds.icons import scenes as icons_world


def test_every_caption_of_the_world_is_read_back_as_its_scene():
    for split in ("train", "heldout"):
        rng = random.Random(split)
        for _ in range(1500):
            example = icons_world.sample_example(rng, combo_split=split, template_split=split)
            scene, request = example.scene, lay.read_request(example.caption)
            said = any(bg in example.caption for bg in icons_world.BACKGROUNDS)
            assert request.background == (scene.background if said else None), example.caption
            assert request.size == scene.size, example.caption
            if scene.kind == "relation" and request.things != scene.icons:  # "{b} to the right of {a}"
                assert request.things == scene.icons[::-1], example.caption
                assert request.relation == icons_world.INVERSE[scene.relation], example.caption
            else:
                assert sorted(request.things) == sorted(scene.icons), example.caption
                assert request.relation == scene.relation, example.caption


@pytest.mark.parametrize(
    ("prompt", "things", "relation", "size", "background"),
    [
        ("three red apples", ("red apple",) * 3, None, None, None),
        ("2 apples", ("red apple",) * 2, None, None, None),
        ("a rocket above a crescent moon on a dark blue background", ("rocket", "moon"), "above", None, "dark blue"),
        ("A frog, next to a slice of pizza!", ("frog", "pizza"), None, None, None),
        ("a huge car on navy", ("car",), None, "big", "dark blue"),
        ("a pink pig", ("pig",), None, None, None),  # a colour before a thing is not the background
        ("two cats and a dog", ("cat", "cat", "dog"), None, None, None),
        ("a zorb on a pink background", ("zorb",), None, None, "pink"),  # unnamed: the prompt's own word
        ("", ("thing",), None, None, None),
    ],
)
def test_free_phrasings_are_read(prompt, things, relation, size, background):
    assert lay.read_request(prompt) == lay.Request(things, relation, size, background)


def test_plans_are_seeded_apart_inside_the_canvas_and_honour_the_relation():
    request = lay.read_request("a dog to the left of a cat")
    for seed in range(200):
        plan = lay.plan(request, seed)
        assert plan == lay.plan(request, seed)
        (a, b) = plan.boxes
        assert all(1 <= v <= 63 for box in plan.boxes for v in box)
        assert lay.apart(a, b, lay.GAP)
        assert lay.relation_holds("left of", ((a[0] + a[2]) / 2, 0), ((b[0] + b[2]) / 2, 0), lay.MARGIN)
    assert len({lay.plan(request, s).boxes for s in range(20)}) == 20


def test_inpainting_plans_the_last_named_thing_inside_the_painted_region():
    mask = np.zeros((64, 64), bool)
    mask[10:40, 20:44] = True
    plan = lay.plan_in_mask(lay.read_request("replace the cat with a dog"), mask)
    assert plan.request.things == ("dog",)
    x0, y0, x1, y1 = plan.boxes[0]
    assert 20 <= x0 < x1 <= 44 and 10 <= y0 < y1 <= 40 and x1 - x0 == y1 - y0 == 20


def test_the_map_shows_each_thing_in_its_box_and_the_background_only_when_said():
    encoder = lay.LayoutEncoder(8)
    plans = [
        lay.Plan(lay.Request(("dog", "cat"), background="pink"), ((0, 0, 16, 16), (32, 32, 64, 64))),
        lay.Plan(lay.Request(("dog",)), ((8, 8, 40, 40),)),
    ]

    class Pooled:  # a stand-in prompt encoder: a fixed 8-d state per phrase
        def encode(self, phrases):
            states = torch.stack([torch.randn(8, generator=torch.Generator().manual_seed(len(p))) for p in phrases])
            return type("E", (), {"pooled": states})()

    batch = lay.encode_plans(Pooled(), plans)
    m = encoder(batch, grid=32)
    assert m.shape == (2, lay.LAYOUT_INPUTS, 32, 32)
    inside = m[:, lay.CODE_DIM]  # the inside channel
    assert inside[0, :8, :8].eq(1).all() and inside[0, 16:, 16:].eq(1).all() and inside[0].sum() == 64 + 256
    assert inside[1, 4:20, 4:20].eq(1).all() and inside[1].sum() == 256
    codes = m[:, : lay.CODE_DIM]
    assert codes[0, :, 9:15, 9:15].abs().sum() == 0  # no thing there
    dog = encoder.code(batch.things[0, 0])
    assert dog.mean().abs() < 1e-5 and (dog.std(unbiased=False) - 1).abs() < 1e-3  # normalised
    assert torch.allclose(codes[0, :, 3, 3], dog) and torch.allclose(codes[1, :, 10, 10], dog)
    start = lay.CODE_DIM + 3 + 4 * len(lay.FREQUENCIES)  # after the thing code, inside, u, v and Fourier
    background = m[:, start : start + lay.CODE_DIM + 1]
    assert background[0].abs().sum() > 0 and background[1].abs().sum() == 0  # said for the first only
    sketch = torch.nn.functional.pixel_shuffle(m[:, -lay.SKETCH_INPUTS :], lay.SKETCH_SUB)  # (2, 4, 64, 64)
    alpha = sketch[:, 3]
    assert alpha[0, 32:, 32:].sum() > 0 and alpha[0, 16:32].sum() == 0 and alpha[1, 40:].sum() == 0  # boxes only
    # the dog's sketch, resampled to its 32 px box in the second image, is the painter's own picture of it
    drawn = encoder.sketch(batch.things[0, :1])
    expected = torch.nn.functional.interpolate(drawn, size=32, mode="bilinear", align_corners=False)
    assert torch.allclose(sketch[1, :, 8:40, 8:40], expected[0], atol=1e-5)


def test_an_icons_unet_reads_the_map_beside_the_image_and_coordinates():
    import dataclasses

    cfg = dataclasses.replace(diffusion.SIZES["icons-tiny"], cond_dim=8)
    unet = diffusion.build_unet(cfg)
    assert diffusion.reads_layout(unet) and diffusion.reads_coords(unet) and not diffusion.is_inpainting(unet)
    x = torch.randn(2, 3, 64, 64)
    layout_map = torch.randn(2, lay.LAYOUT_INPUTS, 32, 32)
    inputs = diffusion.unet_inputs(unet, x, None, layout_map)
    assert inputs.shape == (2, 12 + 2 + lay.LAYOUT_INPUTS, 32, 32)
    assert torch.equal(inputs[:, -lay.LAYOUT_INPUTS :], layout_map)
    assert diffusion.unet_inputs(unet, x)[:, -lay.LAYOUT_INPUTS :].abs().sum() == 0  # no layout: zeros
