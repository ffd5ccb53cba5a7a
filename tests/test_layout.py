"""The layout stage (pipeline/layout.py): parsing, planning, the attention mask and its use by the pipeline."""

import random

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from pipeline import diffusion, layout
from pipeline.worlds.shapes import scenes as world


def test_vocabulary_is_the_worlds():
    assert set(layout.COLORS) == set(world.COLORS)
    assert set(layout.SHAPES) == set(world.SHAPES) | set(world.NEW_SHAPES)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_parse_reads_the_objects_and_relation_of_every_world_caption(split):
    rng = random.Random(0)
    for _ in range(400):
        scene = world.sample_scene(rng)
        text = world.caption(scene, rng, template_split=split)
        parsed = layout.parse(text)
        if scene.kind in ("single", "count") or scene.objects[0] == scene.objects[1]:
            assert parsed is None, text
            continue
        objects, relation = parsed
        got = [(o.color, o.shape) for o in objects]
        want = [(o.color, o.shape) for o in scene.objects[:2]]
        if relation is not None and got == want[::-1]:  # "{b} below {a}" says "{a} above {b}"
            got, relation = got[::-1], world.INVERSE[relation]
        assert (got, relation) == (want, scene.relation), text  # relation None for a pair
        for obj in objects:  # the spans point at the words
            assert [text[a:b] for a, b in obj.spans] == [obj.color, obj.shape]


@pytest.mark.parametrize(
    ("prompt", "want"),
    [
        ("A Red Circle on top of a blue square", ("red circle", "blue square", "above")),
        ("a blue square under a red star", ("blue square", "red star", "below")),
        ("a green triangle, and a white circle to the left of it", ("white circle", "green triangle", "left of")),
        ("above a blue square, a red circle", ("blue square", "red circle", None)),  # unplaceable: apart
        ("a red circle and a blue square", ("red circle", "blue square", None)),
    ],
)
def test_parse_reads_plain_english(prompt, want):
    objects, relation = layout.parse(prompt)
    assert (f"{objects[0].color} {objects[0].shape}", f"{objects[1].color} {objects[1].shape}", relation) == want


def test_spans_index_the_prompt_as_written():
    prompt = "İstanbul: A RED Circle above a blue square"  # "İ".lower() is two characters long
    objects, relation = layout.parse(prompt)
    assert relation == "above" and [prompt[a:b] for a, b in objects[0].spans] == ["RED", "Circle"]
    assert (objects[0].color, objects[0].shape) == ("red", "circle")


@pytest.mark.parametrize("prompt", ["a red circle", "two red circles", "a red circle above a red circle", "", "dog"])
def test_no_plan_unless_two_different_objects(prompt):
    assert layout.plan(prompt, seed=0) is None


def test_plans_hold_their_relation_and_depend_on_the_seed_only():
    for rel in world.RELATIONS:
        boxes = set()
        for seed in range(30):
            p = layout.plan(f"a red circle {world.RELATION_WORDS[rel]} a blue square", seed)
            assert p.relation == rel
            a, b = p.boxes
            assert world._relation_holds(rel, _centre(a), _centre(b), margin=0)  # the world's own rule
            assert layout._apart(a, b) and all(0 < v < 1 for v in a + b)
            assert p == layout.plan(f"a red circle {world.RELATION_WORDS[rel]} a blue square", seed)
            boxes.add(p.boxes)
        assert len(boxes) == 30  # a new layout for every seed


def _centre(box):
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def test_attention_bias_keeps_each_objects_words_to_its_own_box():
    # object 0 in the top-left quarter, object 1 in the bottom-right; tokens 1-2 name 0, tokens 4-5 name 1
    tokens = torch.zeros(1, 2, 7, dtype=torch.bool)
    tokens[0, 0, 1:3] = tokens[0, 1, 4:6] = True
    regions = layout.Regions(torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]]), tokens)
    layout_dilate, layout.DILATE = layout.DILATE, 0.0
    try:
        bias = layout.attention_bias(regions, 4, torch.float32)[0].view(4, 4, 7)  # (y, x, token)
    finally:
        layout.DILATE = layout_dilate
    hidden = bias < 0
    assert hidden[3, 3, 1:3].all() and not hidden[3, 3, 4:6].any()  # bottom-right cell: object 1's words only
    assert hidden[0, 0, 4:6].all() and not hidden[0, 0, 1:3].any()  # top-left cell: object 0's words only
    assert hidden[0, 3, 1:3].all() and hidden[0, 3, 4:6].all()  # outside both boxes: neither object's words
    assert not hidden[..., [0, 3, 6]].any()  # words that name no object are never hidden
    grown = layout.attention_bias(regions, 4, torch.float32)[0].view(4, 4, 7) < 0  # DILATE 1: a cell more
    assert not grown[2, 2].any() and not grown[1, 1].any()  # next to both boxes: both objects' words seen
    unplanned = regions.with_unplanned_rows(2)
    assert not (layout.attention_bias(unplanned, 4, torch.float32)[:2] < 0).any()


def _tiny_unet():
    torch.manual_seed(0)
    return diffusion.build_unet(diffusion.SIZES["tiny"]).eval()


def test_regional_attention_matches_diffusers_without_regions_and_changes_the_output_with_them():
    unet = _tiny_unet()
    x, t = torch.randn(2, 5, 32, 32), torch.tensor([500, 500])
    states, pooled = torch.randn(2, 7, 384), torch.randn(2, 384)
    with torch.no_grad():
        unet.set_attn_processor(AttnProcessor2_0())
        want = unet(x, t, states, class_labels=pooled).sample
        layout.install(unet)
        got = unet(x, t, states, class_labels=pooled).sample
        tokens = torch.zeros(2, 2, 7, dtype=torch.bool)
        tokens[:, 0, 1] = tokens[:, 1, 3] = True
        regions = layout.Regions(torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]] * 2), tokens)
        steered = unet(x, t, states, class_labels=pooled, cross_attention_kwargs={"regions": regions}).sample
        nothing = layout.Regions(regions.boxes, torch.zeros_like(tokens))  # the masked path with nothing hidden
        unmasked = unet(x, t, states, class_labels=pooled, cross_attention_kwargs={"regions": nothing}).sample
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(unmasked, want)  # the masked path computes diffusers' attention
    padding = torch.tensor([[1, 1, 1, 1, 1, 0, 0]] * 2)  # and honours the prompts' padding as diffusers does
    with torch.no_grad():
        unet.set_attn_processor(AttnProcessor2_0())
        want = unet(x, t, states, class_labels=pooled, encoder_attention_mask=padding).sample
        layout.install(unet)
        kwargs = {"regions": nothing}
        got = unet(x, t, states, class_labels=pooled, encoder_attention_mask=padding, cross_attention_kwargs=kwargs)
    torch.testing.assert_close(got.sample, want)
    assert (steered - want).abs().max() > 1e-3


@pytest.fixture
def sdpa_calls(monkeypatch):
    """A list that grows by one at each call of PyTorch's SDPA kernel from here on."""
    calls = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention
    spy = lambda *a, **kw: calls.append(1) or real_sdpa(*a, **kw)  # noqa: E731
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return calls


def test_attend_by_explicit_products_matches_sdpa_for_narrow_bf16_heads_on_the_cpu(sdpa_calls):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 16, 6), torch.randn(2, 4, 9, 6), torch.randn(2, 4, 9, 6)
    bias = torch.zeros(2, 1, 16, 9).masked_fill(torch.rand(2, 1, 16, 9) < 0.3, layout.HIDDEN)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    sdpa_calls.clear()
    got = layout.attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), bias.bfloat16())
    assert not sdpa_calls and got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=0.03, rtol=0.03)  # bf16's rounding, no more
    layout.attend(q, k, v, bias)  # fp32, or wider heads: PyTorch's SDPA as before
    layout.attend(*(x.bfloat16() for x in (torch.randn(1, 2, 4, 32),) * 3))
    assert len(sdpa_calls) == 2


def test_the_unet_in_bf16_on_the_cpu_attends_explicitly_close_to_diffusers_and_batch_invariant(sdpa_calls):
    unet = _tiny_unet()  # heads 8 wide
    x, t = torch.randn(2, 5, 32, 32), torch.tensor([500, 500])
    states, pooled = torch.randn(2, 7, 384), torch.randn(2, 384)
    padding = torch.tensor([[1, 1, 1, 1, 1, 0, 0]] * 2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        unet.set_attn_processor(AttnProcessor2_0())
        want = unet(x, t, states, class_labels=pooled, encoder_attention_mask=padding).sample
        layout.install(unet)
        sdpa_calls.clear()
        got = unet(x, t, states, class_labels=pooled, encoder_attention_mask=padding).sample
        alone = unet(x[1:], t[1:], states[1:], class_labels=pooled[1:], encoder_attention_mask=padding[1:]).sample
    assert not sdpa_calls  # every attention layer took the explicit products
    assert (got.float() - want.float()).abs().max() < 0.05 * want.float().abs().max()  # bf16 rounding apart
    assert torch.equal(got[1:], alone)  # an image does not depend on what it is batched with


def test_text_to_image_plans_two_object_prompts_only(wb):
    pair = "a red circle above a blue square"
    on = wb.text_to_image([pair, "a red circle"], seed=[3, 4], steps=2)
    off = wb.text_to_image([pair, "a red circle"], seed=[3, 4], steps=2, layout=False)
    assert on.recipes[0].layout == layout.plan(pair, 3).describe() and on.recipes[1].layout is None
    assert off.recipes[0].layout is None
    assert on.images[0].tobytes() != off.images[0].tobytes()  # the plan steered the two-object prompt
    assert on.images[1].tobytes() == off.images[1].tobytes()  # and left the single object exactly alone
    again = wb.text_to_image(pair, seed=3, steps=2)  # alone in its batch: the same image, up to float rounding
    assert np.abs(np.asarray(again.images[0], np.int16) - np.asarray(on.images[0], np.int16)).max() <= 2
    assert 'Layout: "red circle at' in on.recipes[0].to_a1111()


def test_the_mask_steers_the_first_three_quarters_of_the_steps(wb, monkeypatch):
    assert [layout.steered_steps(n) for n in (1, 2, 4, 12)] == [1, 2, 3, 9]
    seen = []
    real = diffusion.denoise_step

    def spy(*args, **kwargs):
        seen.append(kwargs["regions"] is not None)  # the layout stage's cross-attention masks
        return real(*args, **kwargs)

    monkeypatch.setattr(diffusion, "denoise_step", spy)
    wb.text_to_image("a red circle above a blue square", seed=0, steps=4)
    assert seen == [True, True, True, False]
