"""Fingerprints of the shipped models' outputs for fixed requests, to check that a change keeps every image.

    python -m bench.fingerprint OUT.json                  # hash 90 outputs: icons and shapes, both generators
    python -m bench.fingerprint OUT.json --against OLD.json   # and list the requests whose images changed

Each entry is a request (20 prompts a model and generator, three restyles, one restyle of a picture without a
recipe, one inpainting) with its images' SHA-256 (first 16 hex digits) and its recipe.
"""

import argparse
import hashlib
import json

import numpy as np
from PIL import Image

from pipeline import Wordbrush

ICONS = [
    "a frog next to a slice of pizza",
    "two cats on a pink background",
    "a small car",
    "a big dog above a tree",
    "three apples",
    "a rocket to the left of a moon",
    "a fish below a star",
    "a banana on a dark blue background",
    "two kittens beside an automobile",
    "a pig",
    "a house to the right of a sun",
    "a huge butterfly on beige",
    "a balloon above a frog",
    "one pizza on a light blue background",
    "a pair of puppies",
    "an owl next to a key",
    "a zorb on a pink background",
    "please draw a cat",
    "a tree below a rocket",
    "three stars on grey",
]
SHAPES = [
    "a red circle above a blue square",
    "three green triangles",
    "a crimson disc over a navy cube",
    "a yellow square",
    "two purple circles",
    "an orange triangle to the left of a white circle",
    "a black square",
    "a blue circle in outline style",
    "a red triangle below a green square",
    "four yellow circles",
    "a white star",
    "a green circle to the right of a red square",
    "two blue squares",
    "a purple triangle",
    "a striped orange circle",
    "a soft red square",
    "a black circle above a yellow triangle",
    "three red squares",
    "a blue triangle",
    "a green square below a purple circle",
]


def h(im):
    return hashlib.sha256(np.asarray(im.convert("RGB")).tobytes()).hexdigest()[:16]


def fingerprints() -> dict:
    out = {}
    for model, prompts in (("icons", ICONS), ("shapes", SHAPES)):
        for gen in ("diffusion", "gan"):
            wb = Wordbrush.load(model, generator=gen, device="cpu")
            for i, p in enumerate(prompts):
                r = wb.text_to_image(p, seed=i, num_images=2 if i % 5 == 0 else 1)
                out[f"{model}/{gen}/t2i/{p}"] = [h(im) for im in r.images] + [r.recipes[0].to_a1111()]
            if gen == "diffusion":
                base = wb.text_to_image(prompts[0], seed=3).images[0]
                for i, style in enumerate(list(wb.style_presets.values())[:3]):
                    r = wb.style_transfer(base, style_prompt=style, seed=i)
                    out[f"{model}/style/{style}"] = [h(r.images[0]), r.recipes[0].to_a1111()]
                plain = Image.fromarray(np.asarray(base))  # no recipe: the finder describes it
                r = wb.style_transfer(plain, style_prompt=list(wb.style_presets.values())[1], seed=5)
                out[f"{model}/style-norecipe"] = [h(r.images[0]), r.recipes[0].to_a1111()]
                mask = Image.new("L", base.size, 0)
                mask.paste(255, (0, 0, base.size[0] // 2, base.size[1] // 2))
                r = wb.inpaint(base, mask, prompt=prompts[3], seed=2)
                out[f"{model}/inpaint"] = [h(r.images[0]), r.recipes[0].to_a1111()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--against", help="an earlier run's JSON to compare with")
    args = parser.parse_args()
    out = fingerprints()
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"{len(out)} requests fingerprinted into {args.out}")
    if args.against:
        with open(args.against) as f:
            old = json.load(f)
        changed = [k for k in old if old[k] != out.get(k)]
        print(f"{len(changed)} of {len(old)} requests changed" + "".join(f"\n  {k}" for k in changed))


if __name__ == "__main__":
    main()
