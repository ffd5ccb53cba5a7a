"""The README's screenshots: the real app in headless Chromium, one picture per tab.

python -m scripts.screenshots [--model icons] [--world icons] [--out assets/screenshots]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pipeline.presets import DEFAULT_MODEL
from scripts import browser
from scripts.live_app import running_app

SHOWN = 256  # the editing tabs' input picture, at a size a person would upload


def shapes_inputs(tmp: Path) -> tuple[Path, str, str, tuple[int, int, int, int]]:
    """The shapes world's: (picture, free-phrased prompt, what to paint in, the area to paint over)."""
    from pipeline.worlds.shapes import scenes as world

    scene = world.Scene("relation", (world.Obj("red", "circle"), world.Obj("blue", "square")), "flat", "left of")
    world.render_scene(scene, 3)[0].resize((SHOWN, SHOWN), 0).save(tmp / "scene.png")
    prompt = "could you paint a crimson disc resting on top of a navy cube?"
    return tmp / "scene.png", prompt, "a yellow triangle", (-120, -125, -40, -45)  # the empty top left


def icons_inputs(tmp: Path) -> tuple[Path, str, str, tuple[int, int, int, int]]:
    """The icons world's: a cat left of a pizza on light blue (restyled to pink); the cat is replaced by a puppy."""
    from pipeline.worlds.icons import scenes as icons_world

    scene = icons_world.Scene("relation", ("cat", "pizza"), "light blue", "left of")
    image, layout = icons_world.render_scene(scene, 3)
    image.resize((SHOWN, SHOWN), 0).save(tmp / "scene.png")
    scale = SHOWN / image.width
    x0, y0, x1, y1 = (round(v * scale - SHOWN / 2) for v in layout.boxes[0])
    prompt = "could you draw a kitten with a rocket above it, on a yellow background?"
    return tmp / "scene.png", prompt, "a puppy", (x0, y0, x1, y1)


INPUTS = {"shapes": shapes_inputs, "icons": icons_inputs}  # each world's pictures and prompts for the tabs


def model_world(model: str) -> str:
    """The world an embedded model draws, as its folder records it."""
    from pipeline.core import local_folder
    from pipeline.diffusion import read_meta
    from pipeline.presets import resolve_model

    return read_meta(local_folder(resolve_model(model, "diffusion")[0]))["config"]["world"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--world", choices=list(INPUTS), help="the model's world (default: the preset's)")
    parser.add_argument("--out", default="assets/screenshots")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    world = args.world or model_world(args.model)
    picture, prompt, fill, area = INPUTS[world](tmp)
    with running_app(args.model) as url, browser.browser_page(url, height=1000) as page:
        browser.text_to_image(page, prompt)
        page.screenshot(path=str(out / "text-to-image.png"))
        browser.style_transfer(page, picture)  # style only: the page describes the image
        page.screenshot(path=str(out / "style-transfer.png"))
        browser.inpaint(page, picture, fill, area=area)
        page.screenshot(path=str(out / "inpainting.png"))
        page.get_by_role("tab", name="Train").click()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "train.png"))
    print(f"wrote {sorted(p.name for p in out.glob('*.png'))} to {out}")


if __name__ == "__main__":
    main()
