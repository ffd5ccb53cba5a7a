"""Style transfer and inpainting quality on held-out scenes, scored by the shapes-world evaluator.

    python -m bench.edit_quality [--model shapes] [--n 100] [--strength 0.6]

Style transfer: a held-out scene drawn in one style is redrawn toward another. "Content kept" = the
evaluator still finds the scene (its objects, colours, relation or count); "style recognized" = the style
classifier names the target style. Measured with the style preset alone ("in outline style") and with the
content described in the target style (a caption of the restyled scene: "an outlined red circle above an
outlined blue square", "three green squares with stripes").
Inpainting: a held-out one-object scene; a 14 x 14 box of empty background is masked and a new object
is asked for there (train/inpaint.py inpaint_cases). `--cases old` also runs the first version's cases,
whose box covered part of the object in 87 of 100 (a bug in their box search; kept for comparison).
"Present" = an object of the asked colour and shape is found with its centre in the box; "outside
identical" = every pixel outside the mask is bit-identical to the input. Variants: `whole` (the whole
image redrawn) or `zoom` (the mask's square on the model's whole canvas), `-repaintK` for RePaint
resampling, and a `base-` prefix to use blended diffusion with the text-to-image UNet even when the
model folder has a trained inpainting UNet (inpaint-unet/).
Icons models (`--model` of the icons world): style transfer puts a held-out scene (a picture without a
recipe) on another of the world's backgrounds with the style preset alone; "content kept" = the icons
evaluator finds the same icons (with their relation and count), "target style recognized" = the background
is the preset's. Inpainting: one icon of a held-out scene is painted over (its box and 3 px more) and another
icon asked for there (pipeline/worlds/icons/judge.py inpaint_cases); "present" = that icon is found with its centre in
the mask.
A LoRA's concept: `--lora runs/lora-star/model/lora.safetensors --shape star --skip-style` asks for a star
(the LoRA demo's new shape) in every box, with the LoRA applied (it reaches the inpainting UNet too).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time

import numpy as np
from PIL import Image

from bench.lora_demo import WithLora
from pipeline import Wordbrush
from pipeline.worlds.icons import ICONS
from pipeline.worlds.icons import judge as icons_eval
from pipeline.worlds.icons import scenes as icons_world
from pipeline.worlds.shapes import judge as evaluate
from pipeline.worlds.shapes import scenes as world
from train import inpaint

CATEGORY_OF_KIND = {"single": "single_object", "pair": "color_attribution", "relation": "position", "count": "counting"}


def style_transfer_scores(wb: Wordbrush, n: int, strength: float, describe: bool, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    kept, styled = [], []
    for i in range(n):
        source_style, target = rng.sample(world.STYLES, 2)
        scene = world.sample_split_scene(rng, split="heldout", style=source_style)
        image, _ = world.render_scene(scene, rng.getrandbits(31))
        target_scene = world.Scene(scene.kind, scene.objects, target, scene.relation)
        # The content described in the target style (a caption of the restyled scene), or the preset alone.
        described = world.caption(target_scene, rng)
        prompt = described if describe else f"in {target} style"
        out = wb.style_transfer(image, style_prompt=prompt, strength=strength, seed=i).images[0]
        kept.append(evaluate.judge(evaluate.EvalItem(CATEGORY_OF_KIND[scene.kind], target_scene, prompt, 0), out))
        styled.append(evaluate.judge(evaluate.EvalItem("style", target_scene, prompt, 0), out))
    return float(np.mean(kept)), float(np.mean(styled))


def icons_style_scores(wb: Wordbrush, n: int, strength: float | None, seed: int = 0) -> tuple[float, float]:
    """(content kept, target background) over n held-out icons scenes restyled with a background preset."""
    rng = random.Random(seed)
    kept, styled = [], []
    presets = {text.split(" a ", 1)[1].removesuffix(" background"): text for text in wb.style_presets.values()}
    for i in range(n):
        scene = icons_world.sample_split_scene(rng, split="heldout", kind=rng.choice(icons_world.KINDS))
        image, _ = icons_world.render_scene(scene, rng.getrandbits(31))
        targets = [
            b for b in presets if b != scene.background and all(icons_world.visible_on(t, b) for t in scene.icons)
        ]
        target = dataclasses.replace(scene, background=rng.choice(targets))
        out = wb.style_transfer(image, style_prompt=presets[target.background], strength=strength, seed=i).images[0]
        verdict = icons_eval.judge(target, out)
        kept.append(verdict["icons"])
        styled.append(verdict["background"])
    return float(np.mean(kept)), float(np.mean(styled))


def inpaint_scores(
    wb: Wordbrush, n: int, seed: int = 0, resample: int = 1, zoom: bool = True, clear: bool = True, shape: str = ""
) -> tuple[float, float]:
    """shape: ask for this shape in every box instead of the case's own (e.g. "star", a LoRA's concept)."""
    cases = inpaint.inpaint_cases(n, seed, clear=clear)
    if shape:
        cases = [
            dataclasses.replace(c, want=world.Obj(c.want.color, shape), prompt=f"a {c.want.color} {shape}")
            for c in cases
        ]
    return scored_inpainting(wb, cases, inpaint.object_present, resample, zoom)


def icons_inpaint_scores(wb: Wordbrush, n: int, seed: int = 0, resample: int = 1, zoom: bool = True):
    """The icons world: one icon of a held-out scene painted over, another asked for there
    (pipeline/worlds/icons/judge.py inpaint_cases). Present = the asked icon found with its centre in the mask."""
    return scored_inpainting(wb, icons_eval.inpaint_cases(n, seed), icons_eval.icon_in_mask, resample, zoom)


def scored_inpainting(wb: Wordbrush, cases: list, present_in, resample: int, zoom: bool) -> tuple[float, float]:
    """(share of cases where `present_in(case, result)`, share whose pixels outside the mask are unchanged)."""
    present, identical = [], []
    for i, case in enumerate(cases):
        mask_image = Image.fromarray(case.mask.astype(np.uint8) * 255)
        out = wb.inpaint(case.image, mask_image, prompt=case.prompt, seed=i, resample=resample, zoom=zoom).images[0]
        before, after = np.asarray(case.image), np.asarray(out)
        identical.append(bool(np.array_equal(before[~case.mask], after[~case.mask])))
        present.append(present_in(case, out))
    return float(np.mean(present)), float(np.mean(identical))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument(
        "--strength", type=float, nargs="+", help="style-transfer strengths to compare (default: the model's)"
    )
    parser.add_argument(
        "--inpaint",
        nargs="+",
        default=["whole", "zoom", "zoom-repaint3"],
        help="inpainting variants: [base-]whole or [base-]zoom, -repaintK for RePaint (module docstring)",
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=["clear", "old"],
        default=["clear", "old"],
        help="inpainting cases: a box of clear background, or the first version's (mostly over the object)",
    )
    parser.add_argument("--skip-style", action="store_true")
    parser.add_argument("--lora", help="a LoRA file to apply (path[:scale])")
    parser.add_argument("--shape", default="", help="inpainting: ask for this shape in every box (e.g. star)")
    args = parser.parse_args()
    wb = WithLora(Wordbrush.load(args.model, generator="diffusion", device="cpu"), args.lora)
    asking = f", asking for a {args.shape} in every box" if args.shape else ""
    print(f"model {args.model}, LoRA {args.lora}, {args.n} held-out scenes each{asking}\n")
    print("| task | variant | measure | score |")
    print("|---|---|---|---:|")
    icons = wb.world is ICONS  # its styles are backgrounds; its inpainting cases replace an icon
    for strength in [] if args.skip_style or not icons else args.strength or [None]:
        t0 = time.perf_counter()
        kept, styled = icons_style_scores(wb, args.n, strength)
        label = f"background preset, strength {strength or wb.default_strength} "
        label += f"({(time.perf_counter() - t0) / args.n:.2f} s/image)"
        print(f"| style transfer | {label} | content kept | {kept:.3f} |")
        print(f"| style transfer | {label} | target background | {styled:.3f} |")
    for strength in [] if args.skip_style or icons else args.strength or [wb.default_strength]:
        for describe in (False, True):
            kept, styled = style_transfer_scores(wb, args.n, strength, describe)
            label = f"{'content + style' if describe else 'style preset only'} prompt, strength {strength}"
            print(f"| style transfer | {label} | content kept | {kept:.3f} |")
            print(f"| style transfer | {label} | target style recognized | {styled:.3f} |")
    trained = wb.generator.inpaint_unet
    for variant in args.inpaint:
        base = variant.startswith("base-")
        area, _, rounds = variant.removeprefix("base-").partition("-repaint")
        resample = int(rounds or 1)
        wb.generator.inpaint_unet = None if base else trained
        for cases in ["replace"] if icons else args.cases:
            t0 = time.perf_counter()
            if icons:
                present, identical = icons_inpaint_scores(wb, args.n, resample=resample, zoom=area == "zoom")
            else:
                present, identical = inpaint_scores(
                    wb, args.n, resample=resample, zoom=area == "zoom", clear=cases == "clear", shape=args.shape
                )
            seconds = (time.perf_counter() - t0) / args.n
            label = "mask's square on the whole canvas" if area == "zoom" else "whole image"
            unet = "inpainting UNet" if wb.generator.inpaint_unet is not None else "text-to-image UNet"
            label += f", {unet}, blended{f' + RePaint x{resample}' if resample > 1 else ''} ({seconds:.2f} s/image)"
            task = {"clear": "clear box", "old": "old cases", "replace": "an icon replaced"}[cases]
            print(f"| inpainting, {task} | {label} | object present in the mask | {present:.3f} |")
            print(f"| inpainting, {task} | {label} | outside-mask pixels identical | {identical:.3f} |")


if __name__ == "__main__":
    main()
