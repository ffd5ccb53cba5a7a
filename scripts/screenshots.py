"""The README's screenshots: the real app in headless Chromium, one picture per tab.

python -m scripts.screenshots [--model shapes] [--out assets/screenshots]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from scripts import browser
from scripts.live_app import running_app
from train import world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--out", default="assets/screenshots")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    # Inputs for the editing tabs: a generated image, shown at a size a person would upload.
    scene = world.Scene("relation", (world.Obj("red", "circle"), world.Obj("blue", "square")), "flat", "left of")
    world.render_scene(scene, 3)[0].resize((256, 256), 0).save(tmp / "scene.png")
    with running_app(args.model) as url, browser.browser_page(url, height=1000) as page:
        browser.text_to_image(page, "could you paint a crimson disc resting on top of a navy cube?")
        page.screenshot(path=str(out / "text-to-image.png"))
        browser.style_transfer(page, tmp / "scene.png")  # style only: the page describes the image
        page.screenshot(path=str(out / "style-transfer.png"))
        browser.inpaint(page, tmp / "scene.png", "a yellow triangle", area=(-120, -125, -40, -45))  # the empty top left
        page.screenshot(path=str(out / "inpainting.png"))
        page.get_by_role("tab", name="Train").click()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "train.png"))
    print(f"wrote {sorted(p.name for p in out.glob('*.png'))} to {out}")


if __name__ == "__main__":
    main()
