"""The language model's second job: faithful prompt expansion (pipeline/expand.py), seeded, switchable."""

import pytest

from pipeline.expand import clip_length, faithfulness_problems, finish, load_expander


@pytest.fixture(scope="module")
def expander():
    return load_expander("smollm2")


def test_clip_tokens_are_counted_offline_as_clip_counts_them():
    from pipeline.expand import clip_tokenizer

    assert clip_tokenizer()("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert clip_length("a photo of a cat") == 7


@pytest.mark.parametrize(
    ("expansion", "problem"),
    [
        ("a red circle above a blue square, with a red square on the blue square.", "calls the square red"),
        ("a red circle above a blue square, a blue square above a red circle.", "places the prompt's square above"),
        ("a red circle above a blue square, soft soft light.", "repeats a word"),
        ("a red circle above a blue square, in a park, in a park at noon.", "repeats a phrase"),
        ("a circle above a blue square, studio light.", "drops or reorders words"),
        ("a red circle above a blue square, studio light, and", "does not end its sentence"),
        ("a red circle above a blue square, " + "very " * 80 + "bright.", "longer than 77 tokens"),
    ],
)
def test_the_faithfulness_check_catches_each_kind_of_unfaithful_expansion(expansion, problem):
    problems = faithfulness_problems("a red circle above a blue square", expansion, length_fn=clip_length)
    assert any(p.startswith(problem) for p in problems), problems


def test_a_faithful_expansion_passes_and_counts_say_two_apples_not_three():
    prompt = "three red apples on a table"
    assert faithfulness_problems(prompt, f"{prompt}, rustic kitchen, warm light.", length_fn=clip_length) == []
    assert faithfulness_problems(prompt, f"{prompt}, two apples in a bowl.") != []


def test_finish_keeps_whole_clauses_within_the_limit_and_ends_the_sentence():
    prompt = "a lighthouse at dusk"
    assert finish(prompt, " stormy sea, warm lantern glow. Then more", clip_length, 77) == (
        "a lighthouse at dusk, stormy sea, warm lantern glow."
    )
    assert finish(prompt, " stormy sea, warm lantern", clip_length, 77) == "a lighthouse at dusk, stormy sea."
    assert finish(prompt, " stormy sea, warm lantern glow.", clip_length, 10) == "a lighthouse at dusk, stormy sea."
    assert finish(prompt, " and then", clip_length, 77) == prompt  # nothing whole: the prompt as written


@pytest.mark.slow
def test_expansions_are_faithful_seeded_and_independent_of_their_batch(expander):
    prompts = ["a lighthouse at dusk", "two black cats on a red sofa", "a yellow kite above a green tree"]
    batch = expander.expand(prompts, seeds=[0, 1, 2])
    for p, e in zip(prompts, batch):
        assert e.text.startswith(p) and (
            not e.expanded or faithfulness_problems(p, e.text, length_fn=clip_length) == []
        )
    expander._cache.clear()
    alone = expander.expand(prompts[1:2], seeds=[1])[0]
    assert alone.text == batch[1].text  # same (prompt, seed): same text, whatever shares the batch
    assert any(e.expanded for e in batch)


@pytest.mark.slow
def test_expansion_is_off_by_default_and_recorded_when_on(wb, expander):
    wb.expansion.expander = expander  # the loaded SmolLM2, shared
    plain = wb.text_to_image("a red circle", seed=0, steps=2)
    assert plain.recipes[0].encoded_prompt == "a red circle" and not plain.recipes[0].expanded
    grown = wb.text_to_image("a lighthouse at dusk", seed=0, steps=2, expand=True, understand=False)
    r = grown.recipes[0]
    want = expander.expand(["a lighthouse at dusk"], seeds=[0], length_fn=wb.expansion.length_fn, max_tokens=64)[0]
    assert r.encoded_prompt == want.text and r.expanded == want.expanded
    assert ("Expanded prompt:" in r.to_a1111()) == want.expanded
