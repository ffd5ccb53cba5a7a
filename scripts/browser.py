"""Drive the app in headless Chromium (Debian's, through Python playwright), as a person would.

Used by the end-to-end test and by scripts/screenshots.py (the README's pictures)."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def browser_page(url: str, *, width: int = 1280, height: int = 900, failure_screenshot: Path | None = None):
    """A page on `url`; on an exception inside the block, a screenshot goes to `failure_screenshot`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url)
        page.get_by_role("button", name="Generate").wait_for(timeout=60_000)
        try:
            yield page
        except Exception:
            if failure_screenshot is not None:
                page.screenshot(path=str(failure_screenshot))
                print(f"screenshot of the failure: {failure_screenshot}")
            raise
        finally:
            browser.close()


def text_to_image(page, prompt: str, *, timeout: float = 60_000) -> int:
    """Type a prompt, press Generate, wait for the gallery; returns the number of images shown."""
    page.get_by_role("tab", name="Text to image").click()
    box = page.get_by_label("Prompt", exact=True)
    box.fill(prompt)
    page.get_by_role("button", name="Generate").click()
    images = page.locator("#t2i-gallery img")
    images.first.wait_for(state="visible", timeout=timeout)
    page.wait_for_timeout(300)
    return images.count()


def style_transfer(page, image: Path, *, content: str = "", timeout: float = 60_000) -> None:
    page.get_by_role("tab", name="Style transfer").click()
    for attempt in range(3):
        page.locator("#style-in input[type=file]").set_input_files(str(image))
        try:
            page.locator("#style-in img").first.wait_for(state="visible", timeout=timeout / 3)
            break
        except Exception:
            if attempt == 2:
                raise
    if content:
        page.get_by_label("Describe the content or a style (optional)").fill(content)
    page.get_by_role("button", name="Apply style").click()
    page.locator("#style-out img").first.wait_for(state="visible", timeout=timeout)


def inpaint(
    page, image: Path, prompt: str, *, area: tuple[int, int, int, int] | None = None, timeout: float = 60_000
) -> None:
    """Upload `image`, paint a diagonal stroke across the middle (or scribble over `area`: x0, y0, x1, y1 in
    screen pixels from the canvas centre), say what goes there and run it."""
    page.get_by_role("tab", name="Inpainting").click()
    placeholder = page.locator("#inpaint-editor").get_by_text("Upload an image")
    for attempt in range(3):  # as a person does it: the editor's Upload button, then the file chooser
        with page.expect_file_chooser() as chooser:
            page.locator("#inpaint-editor button[aria-label=Upload]").click()
        chooser.value.set_files(str(image))
        try:
            placeholder.wait_for(state="hidden", timeout=timeout / 3)
            break
        except Exception:
            if attempt == 2:
                raise
    canvas = page.locator("#inpaint-editor canvas").first
    canvas.wait_for(state="visible", timeout=timeout)
    page.wait_for_timeout(1000)
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    if area is None:  # a stroke across the middle
        points = [(-30 + 5 * k, -30 + 5 * k) for k in range(12)]
    else:  # back and forth in rows, as a person fills a patch
        x0, y0, x1, y1 = area
        points = [(x, y) for i, y in enumerate(range(y0, y1 + 1, 10)) for x in ((x0, x1) if i % 2 == 0 else (x1, x0))]
    page.mouse.move(cx + points[0][0], cy + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(cx + x, cy + y, steps=6)
    page.mouse.up()
    page.wait_for_timeout(500)  # let the editor commit the stroke to its layer
    page.get_by_label("What goes there").fill(prompt)
    page.get_by_role("button", name="Inpaint", exact=True).click()
    page.locator("#inpaint-out img").first.wait_for(state="visible", timeout=timeout)
