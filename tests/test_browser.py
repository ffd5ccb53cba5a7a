"""End to end in headless Chromium: each tab, as a person uses it."""

import re

import pytest
from PIL import Image

from scripts import browser
from scripts.live_app import running_app
from tests.tiny import make_tiny_diffusion

pytestmark = pytest.mark.skipif(browser.chromium_path() is None, reason="no chromium (bash scripts/install.sh --dev)")


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    folder = make_tiny_diffusion(tmp_path_factory.mktemp("tiny") / "model")
    with running_app(str(folder)) as u:
        yield u


def test_each_tab_in_a_real_browser(url, tmp_path):
    from playwright.sync_api import expect

    picture = tmp_path / "in.png"
    Image.new("RGB", (64, 64), (40, 70, 225)).save(picture)
    with browser.browser_page(url, failure_screenshot=tmp_path / "failure.png") as page:
        assert browser.text_to_image(page, "a red circle above a blue square") == 4
        recipe = page.locator("#t2i-recipe textarea")
        assert "Seed: 0" in recipe.input_value() and 'Layout: "red circle at' in recipe.input_value()
        page.get_by_label("Plan where two named objects go (layout stage, diffusion)").uncheck()
        page.get_by_role("button", name="Generate").click()
        expect(recipe).not_to_have_value(re.compile("Layout:"), timeout=60_000)  # drawn without a plan
        browser.style_transfer(page, picture)
        assert "in outline style" in page.locator("#style-recipe textarea").input_value()
        browser.inpaint(page, picture, "a yellow triangle")
        assert page.locator("#inpaint-recipe textarea").input_value().startswith("a yellow triangle")
        assert page.get_by_text("nothing is painted").count() == 0  # the brush stroke reached the mask


def test_the_page_shows_how_free_phrasing_was_understood(url):
    from playwright.sync_api import expect

    with browser.browser_page(url) as page:
        browser.text_to_image(page, "could you draw twin charcoal squares, please")
        understood = page.locator("#t2i-understood textarea")
        expect(understood).to_have_value("understood as: two black squares", timeout=30_000)
        page.get_by_label("Understand free phrasing (language model)").uncheck()
        page.get_by_role("button", name="Generate").click()
        expect(understood).to_have_value(re.compile("^understanding off"), timeout=60_000)


def test_bad_input_shows_an_error_and_the_page_keeps_working(url):
    with browser.browser_page(url) as page:
        page.get_by_label("Prompt", exact=True).fill("")
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("prompt is empty").first.wait_for(timeout=30_000)
        assert browser.text_to_image(page, "three green triangles") == 4
