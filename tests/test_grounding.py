"""The attention grounding loss (train/grounding.py): word spans, token weights, box masks, the recording
processor and the loss itself."""

import math
import random

import pytest
import torch

from pipeline import diffusion
from pipeline.encoders import load_encoder
from pipeline.worlds.shapes import scenes as world
from train import grounding
from train.diffusion import DiffusionTask, build_pool

TINY = diffusion.SIZES["tiny"]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("minilm")


def _words(example):
    return [[example.caption[a:b] for a, b in spans] for spans in grounding.object_spans(example)]


def _example(scene, template):
    """The caption `template` (world.TEMPLATES) fills in for `scene`, without style words."""
    a, b = scene.objects[0], scene.objects[-1]
    fields = {
        "a": f"a {a.phrase}",
        "b": f"a {b.phrase}",
        "rel": "above",
        "P": f"{a.color} {a.shape}s",
        "shapes": f"{a.shape}s",
        "color": a.color,
        "n": "three",
    }
    return world.Example(scene, template.format(**fields), 0)


def test_object_spans_name_each_objects_colour_and_shape_in_every_template():
    red_circle, blue_square = world.Obj("red", "circle"), world.Obj("blue", "square")
    relation = world.Scene("relation", (red_circle, blue_square), relation="above")
    for template in world.TEMPLATES["relation"]:
        if "{inv}" in template:
            continue
        assert _words(_example(relation, template)) == [["red", "circle"], ["blue", "square"]], template
    count = world.Scene("count", (red_circle,) * 3)
    for template in ("{n} {P}", "{n} {shapes}, all {color}"):
        assert _words(_example(count, template)) == [["red", "circles"], []], template
    rng = random.Random(0)
    for _ in range(300):  # every generated caption names all the objects it should
        ex = world.sample_example(rng)
        named = [bool(s) for s in grounding.object_spans(ex)]
        distinct = len(set(ex.scene.objects)) == len(ex.scene.objects)
        want = [True, False] if ex.scene.kind in ("single", "count") else [distinct, distinct]
        assert named == want, ex


def test_twin_objects_are_left_unnamed():
    twin = world.Obj("red", "circle")
    pair = world.Example(world.Scene("pair", (twin, twin)), "a red circle and a red circle", 0)
    assert grounding.object_spans(pair) == [[], []]


def test_token_groups_spread_one_over_the_words_tokens(encoder):
    scene = world.Scene("relation", (world.Obj("red", "circle"), world.Obj("blue", "triangle")), relation="below")
    ex = world.Example(scene, "a striped red circle below a blue triangle", 0)
    groups = grounding.token_groups(encoder.tokenizer, [ex], 16)
    tokens = encoder.tokenizer.convert_ids_to_tokens(encoder.tokenizer(ex.caption)["input_ids"])
    picked = [[tokens[t] for t in range(len(tokens)) if groups[0, g, t] > 0] for g in range(2)]
    assert picked == [["red", "circle"], ["blue", "triangle"]]
    assert torch.allclose(groups.sum(-1), torch.ones(1, 2))


def test_box_masks_cover_each_groups_boxes():
    scene = world.Scene("relation", (world.Obj("red", "circle"), world.Obj("blue", "square")), relation="left of")
    boxes = [(2, 4, 14, 16), (20, 8, 30, 18)]
    layout = world.Layout([world.Placed(obj, box) for obj, box in zip(scene.objects, boxes)])
    masks = grounding.box_masks(scene, layout, 32)
    assert masks.shape == (2, 32, 32)
    assert masks[0].sum() == 12 * 12 and masks[1].sum() == 10 * 10
    assert masks[0, 10, 5] == 1 and masks[0, 10, 25] == 0 and masks[1, 10, 25] == 1
    count = world.Scene("count", (world.Obj("red", "circle"),) * 2)
    both = grounding.box_masks(count, world.Layout([world.Placed(o, b) for o, b in zip(count.objects, boxes)]), 32)
    assert both[0].sum() == 12 * 12 + 10 * 10 and both[1].sum() == 0  # a count scene's objects are one group


def test_recording_processor_changes_nothing_and_records_masked_maps(encoder):
    torch.manual_seed(0)
    unet = diffusion.build_unet(TINY).eval()
    pool = build_pool(encoder, size=4, seed=0)
    x, t = torch.randn(4, 3, 32, 32), torch.tensor([10, 300, 700, 999])
    args = (pool.states.float(),)
    kwargs = {"class_labels": pool.pooled.float(), "encoder_attention_mask": pool.mask}
    with torch.no_grad():
        before = unet(diffusion.unet_inputs(unet, x), t, *args, **kwargs).sample
        recorder = grounding.AttentionRecorder(unet)
        fast = unet(diffusion.unet_inputs(unet, x), t, *args, **kwargs).sample
        with recorder.record() as maps:
            recorded = unet(diffusion.unet_inputs(unet, x), t, *args, **kwargs).sample
    assert recorder.layers == len(maps) > 0 and recorder.maps is None  # recording stops with the block
    assert torch.equal(before, fast) and torch.allclose(before, recorded, atol=1e-5)
    for attn in maps:
        assert torch.allclose(attn.sum(-1), torch.ones(attn.shape[:2]), atol=1e-5)  # a softmax over tokens
        for i, n in enumerate(pool.mask.sum(1).tolist()):
            assert attn[i, :, n:].abs().sum() == 0  # no attention on padding


def test_grounding_loss_and_share_inside_score_where_the_words_attend():
    masks = torch.zeros(1, 2, 8, 8)
    masks[0, 0, :4] = 1  # group 0: top half; group 1: bottom half
    masks[0, 1, 4:] = 1
    groups = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]])  # tokens 0-1 name group 0, token 2 group 1
    inside = torch.zeros(1, 64, 3)
    inside[0, :32, 0:2] = 1  # top pixels attend to group 0's words
    inside[0, 32:, 2] = 1
    uniform = torch.full((1, 64, 3), 1 / 3)
    swapped = inside.flip(1)  # everyone attends to the wrong half
    loss = [grounding.grounding_loss([a], groups, masks).item() for a in (inside, uniform, swapped)]
    assert loss[0] == pytest.approx(math.log(32), abs=1e-5) and loss[1] == pytest.approx(math.log(64), abs=1e-5)
    assert loss[2] > 15  # no attention inside: -log(1e-8)
    share = [grounding.share_inside([a], groups, masks) for a in (inside, uniform, swapped)]
    assert share == pytest.approx([1.0, 0.5, 0.0], abs=1e-6)


def test_grounding_loss_prefers_spread_attention_where_the_layout_is_uncertain():
    """Where an object may be in either of two places, attention over both beats a bet on one."""
    groups = torch.tensor([[[1.0]]])
    left, right = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    left[..., :, :4], right[..., :, 4:] = 1, 1
    on_left = left.flatten(2).transpose(1, 2)  # (1, 64, 1) attention weights: all on the left half
    spread = torch.ones(1, 64, 1)

    def expected(attn):
        return sum(grounding.grounding_loss([attn], groups, m).item() for m in (left, right)) / 2

    assert expected(spread) < expected(on_left)


def test_training_with_grounding_moves_the_words_attention_into_their_boxes(encoder):
    torch.manual_seed(0)
    pool = build_pool(
        encoder, size=32, seed=0, kind_weights={"relation": 1.0, "single": 0.0, "pair": 0.0, "count": 0.0}
    )
    task = DiffusionTask(diffusion.build_unet(TINY), TINY, encoder, pool, grounding=1.0, cond_dropout=0.0, high_noise=1)
    batch = next(task.batches(0, 16, torch.device("cpu")))
    assert batch[2].shape == (16, 2, 32, 32)

    def attention_loss():
        idx, x0, masks = batch
        with torch.no_grad(), task.recorder.record() as maps:
            task.unet(
                diffusion.unet_inputs(task.unet, x0),
                torch.full((16,), 900),
                pool.states[idx].float(),
                class_labels=pool.pooled[idx].float(),
                encoder_attention_mask=pool.mask[idx],
            )
        return grounding.grounding_loss(maps, task.groups[idx], masks).item()

    start = attention_loss()
    opt = torch.optim.Adam(task.unet.parameters(), lr=2e-3)
    for _ in range(25):
        opt.zero_grad()
        task.loss(task.unet, batch).backward()
        opt.step()
    assert attention_loss() < start - 0.1


def test_attention_centres_find_where_each_groups_words_attend():
    attn = torch.zeros(1, 4, 3)  # a 2 x 2 map over 3 tokens
    attn[0, 0, 0] = 1  # top-left pixel attends to token 0 (group 0)
    attn[0, 3, 1:] = 0.5  # bottom-right pixel to tokens 1 and 2 (group 1)
    attn[0, 1:3, 2] = 1
    groups = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]])
    centres = grounding.attention_centres([attn], groups)
    assert torch.allclose(centres[0, 0], torch.tensor([0.25, 0.25]))
    # group 1 = half token 1 + half token 2: 0.5 at each of the other three pixels, 0 at the top-left
    share = torch.tensor([0.0, 1.0, 1.0, 1.0]) / 3
    xy = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    assert torch.allclose(centres[0, 1], share @ xy)


def test_grounding_leaves_low_noise_samples_to_the_denoising_loss(encoder, monkeypatch):
    from train import diffusion as train_diffusion

    pool = build_pool(encoder, size=16, seed=0)
    task = DiffusionTask(diffusion.build_unet(TINY), TINY, encoder, pool, grounding=1.0, cond_dropout=0.0)
    batch = next(task.batches(0, 8, torch.device("cpu")))
    plain = DiffusionTask(task.unet, TINY, encoder, pool, cond_dropout=0.0)
    losses = {}
    for t, name in ((100, "low"), (900, "high")):
        monkeypatch.setattr(train_diffusion, "timesteps", lambda n, total, share, device, t=t: torch.full((n,), t))
        for label, which in (("grounded", task), ("plain", plain)):
            torch.manual_seed(0)
            losses[name, label] = which.loss(task.unet, batch[:2] if which is plain else batch).item()
    assert losses["low", "grounded"] == pytest.approx(losses["low", "plain"], rel=1e-5)  # nothing added at t = 100
    assert losses["high", "grounded"] > losses["high", "plain"] + 0.1  # the attention loss at t = 900
