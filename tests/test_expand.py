"""The language model's second job: prompt expansion with SmolLM2 (offline), seeded, switchable."""

import pytest

from pipeline.expand import load_expander


@pytest.fixture(scope="module")
def expander():
    return load_expander("smollm2")


def test_smollm2_expands_a_prompt_the_same_way_for_the_same_seed(expander):
    prompt = "a lighthouse at dusk"
    first = expander._generate(prompt, 0)
    assert expander._generate(prompt, 0) == first  # seeded sampling: reproducible
    assert len(first.split()) > len(prompt.split()) and "\n" not in first
    assert expander._generate(prompt, 1) != first  # another seed, another wording


def test_expansion_is_off_by_default_on_the_embedded_model_and_recorded_when_on(wb, expander):
    wb.expansion.expander = expander  # the loaded SmolLM2, shared
    plain = wb.text_to_image("a red circle", seed=0, steps=2)
    assert plain.recipes[0].encoded_prompt == "a red circle" and not plain.recipes[0].expanded
    grown = wb.text_to_image("a red circle", seed=0, steps=2, expand=True)
    r = grown.recipes[0]
    assert r.expanded and r.prompt == "a red circle" and r.encoded_prompt == expander.expand("a red circle", seed=0)
    assert "Expanded prompt:" in r.to_a1111()


def test_a_missing_expander_model_gives_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="cannot load prompt expander"):
        load_expander(str(tmp_path / "nothing-here"))
