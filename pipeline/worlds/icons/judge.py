"""The icons world's evaluator, independent of any generator: which icons a picture shows, where, how many,
and on what background.

    python -m train icons-classifier --out assets/evaluator/icons-classifier     # train its one learned part

`find_icons` reads the background from the picture's border (the nearest named background colour), marks
the pixels that differ from it, joins them into one blob per icon (a 2 px dilation bridges an icon's own
gaps; the world keeps icons 7 px apart) and names each blob with `IconClassifier`, a small CNN trained on
crops of rendered scenes (every icon, size and background, with mild blur and noise). `judge` checks a
picture against the scene it should show: right icons, relation between their centres, count, background.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image
from torch import nn

from pipeline.worlds.icons import scenes as world
from pipeline.worlds.icons.catalogue import plural
from pipeline.worlds.icons.layout import MAX_ICONS, Plan, Request

CLASSIFIER = Path(__file__).resolve().parents[3] / "assets" / "evaluator" / "icons-classifier"
CROP = 32  # classifier input side
FOREGROUND = 45.0  # RGB distance from the background colour above which a pixel belongs to an icon
MIN_AREA = 12  # blobs smaller than this many pixels are noise


class IconClassifier(ModelMixin, ConfigMixin):
    """A CROP x CROP crop of one icon on its background -> which icon (logits over the atlas's names)."""

    @register_to_config
    def __init__(self, names: tuple[str, ...] = (), width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1),
            nn.BatchNorm2d(w),
            nn.SiLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.BatchNorm2d(w),
            nn.SiLU(),
            nn.MaxPool2d(2),  # 16 x 16
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.BatchNorm2d(2 * w),
            nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.BatchNorm2d(2 * w),
            nn.SiLU(),
            nn.MaxPool2d(2),  # 8 x 8
            nn.Conv2d(2 * w, 4 * w, 3, padding=1),
            nn.BatchNorm2d(4 * w),
            nn.SiLU(),
            nn.MaxPool2d(2),  # 4 x 4
            nn.Conv2d(4 * w, 4 * w, 3, padding=1),
            nn.BatchNorm2d(4 * w),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(4 * w, len(names)),
        )

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """crops: (B, 3, CROP, CROP) in [-1, 1] -> logits (B, n_icons)."""
        return self.net(crops)


@dataclass(frozen=True)
class Found:
    name: str  # the classifier's icon
    confidence: float  # its softmax probability
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) of the blob's pixels, exclusive end

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    @property
    def side(self) -> int:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


def background_of(image: Image.Image) -> tuple[str, np.ndarray]:
    """The nearest named background colour to the picture's border (its 2 px frame), and the measured colour."""
    px = np.asarray(image.convert("RGB"), np.float32)
    frame = np.concatenate(
        [px[:2].reshape(-1, 3), px[-2:].reshape(-1, 3), px[:, :2].reshape(-1, 3), px[:, -2:].reshape(-1, 3)]
    )
    measured = np.median(frame, axis=0)
    names = list(world.BACKGROUNDS)
    dist = [np.linalg.norm(measured - np.float32(world.BACKGROUNDS[n])) for n in names]
    return names[int(np.argmin(dist))], measured


def blobs(image: Image.Image) -> tuple[str, list[tuple[int, int, int, int]]]:
    """(background name, one box per icon-sized blob of pixels that differ from the background)."""
    name, measured = background_of(image)
    px = np.asarray(image.convert("RGB"), np.float32)
    mask = np.linalg.norm(px - measured, axis=-1) > FOREGROUND
    labels = _label(_dilate(mask, 2))
    parts = []  # (pixel count, box)
    for i in range(1, labels.max() + 1):
        ys, xs = np.nonzero(mask & (labels == i))
        if len(ys) >= MIN_AREA:
            parts.append((len(ys), (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)))
    return name, _merge_fragments(parts)


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Grow `mask` by `steps` pixels through its 4-neighbours."""
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _label(mask: np.ndarray) -> np.ndarray:
    """4-connected components of `mask`, numbered from 1 (0: background)."""
    labels = np.zeros(mask.shape, np.int32)
    h, w = mask.shape
    count = 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        count += 1
        labels[y0, x0] = count
        stack = [(y0, x0)]
        while stack:
            y, x = stack.pop()
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = count
                    stack.append((ny, nx))
    return labels


def _merge_fragments(parts: list[tuple[int, tuple]]) -> list[tuple[int, int, int, int]]:
    """A blob within 5 px of a bigger one (the world keeps icons 7 px apart), or under a fifth of the largest
    one's pixels and within 8 px, is a piece of that icon (a rocket's flame, a pencil's tip): its box joins the
    nearest bigger blob's."""
    parts = sorted(parts, key=lambda p: -p[0])
    kept: list[list] = []
    for area, box in parts:
        reach = 8 if area < 0.2 * parts[0][0] else 5
        near = [k for k in kept if _gap(k[1], box) <= reach]
        if near:
            k = min(near, key=lambda k: _gap(k[1], box))
            k[1] = (min(k[1][0], box[0]), min(k[1][1], box[1]), max(k[1][2], box[2]), max(k[1][3], box[3]))
        else:
            kept.append([area, box])
    return [tuple(int(v) for v in box) for _, box in kept]


def _gap(a, b) -> float:
    """Pixels between two boxes (0 when they touch or overlap)."""
    return max(0, max(a[0], b[0]) - min(a[2], b[2]), max(a[1], b[1]) - min(a[3], b[3]))


def crop(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """A square crop around `box` with a 1 px margin (the background fills what lies outside), at CROP px."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) + 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    return image.crop((left, top, left + side, top + side)).resize((CROP, CROP), Image.BILINEAR)


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    arrays = np.stack([np.asarray(im.convert("RGB"), np.float32) for im in images])
    return torch.from_numpy(arrays / 127.5 - 1).permute(0, 3, 1, 2)


@functools.cache
def classifier(path: str = str(CLASSIFIER)) -> IconClassifier:
    return IconClassifier.from_pretrained(path).eval()


@torch.inference_mode()
def find_icons(image: Image.Image, model: IconClassifier | None = None) -> tuple[str, list[Found]]:
    """(background name, the icons found, left to right) in a world picture."""
    model = model or classifier()
    background, boxes = blobs(image)
    if not boxes:
        return background, []
    image = image.convert("RGB")
    probs = model(to_tensor([crop(image, b) for b in boxes])).softmax(-1)
    conf, idx = probs.max(-1)
    found = [Found(model.config.names[i], float(c), b) for i, c, b in zip(idx.tolist(), conf.tolist(), boxes)]
    return background, sorted(found, key=lambda f: f.box[0])


def relation_holds(relation: str, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Centre `a` is `relation` centre `b`: further along that axis than across it."""
    return world.relation_holds(relation, a, b, margin=0.0)


def judge(scene: world.Scene, image: Image.Image, model: IconClassifier | None = None) -> dict[str, bool]:
    """Does `image` show `scene`? {"icons": right icons (and relation, count), "background": right colour}."""
    background, found = find_icons(image, model)
    named = [f.name for f in found]
    if scene.kind == "relation":
        ok = len(found) == 2 and sorted(named) == sorted(scene.icons)
        if ok:
            a = next(f for f in found if f.name == scene.icons[0])
            b = next(f for f in found if f.name == scene.icons[1] and f is not a)
            ok = relation_holds(scene.relation, a.center, b.center)
    else:  # single, pair, count: the icons as a multiset
        ok = sorted(named) == sorted(scene.icons)
    return {"icons": ok, "background": background == scene.background}


# ----------------------------------------------------------------------------------------------------
# Training the classifier on crops of rendered scenes


# ----------------------------------------------------------------------------------------------------
# Evaluation sets and scores

# category -> the scene kind it draws; "synonym": a single icon named by a held-out name; "background": any
# kind, scored on the background colour only
CATEGORIES = {"single": "single", "pair": "relation", "count": "count", "background": None, "synonym": "single"}


@dataclass(frozen=True)
class EvalItem:
    category: str  # a key of CATEGORIES
    scene: world.Scene
    prompt: str
    seed: int  # layout seed for clean renders; generation seed for models


def eval_set(split: str = "combos", *, per_category: int = 100, seed: int = 1234) -> list[EvalItem]:
    """Fixed evaluation items. "combos": held-out combinations in training templates; "templates": training
    combinations in held-out templates. The "synonym" items name a single icon by a held-out name
    ("a puppy on a pink background"): words no training caption uses."""
    if split not in ("combos", "templates"):
        raise ValueError(f"split must be 'combos' or 'templates', got {split!r}")
    rng = random.Random(f"{seed}-{split}")
    combo_split, template_split = ("heldout", "train") if split == "combos" else ("train", "heldout")
    with_synonyms = [n for n, icon in world.icons().items() if icon.heldout]
    items = []
    for category, kind in CATEGORIES.items():
        for _ in range(per_category):
            if category == "synonym":
                scene = _synonym_scene(rng, with_synonyms)
                word = rng.choice(world.icons()[scene.icons[0]].heldout)
                prompt = f"{world.article(word)} on a {scene.background} background"
            else:
                scene = world.sample_split_scene(rng, split=combo_split, kind=kind or rng.choice(world.KINDS))
                prompt = world.caption(scene, rng, template_split=template_split)
                if category == "background" and scene.background not in prompt:
                    prompt += f" on a {scene.background} background"
            items.append(EvalItem(category, scene, prompt, rng.getrandbits(31)))
    return items


def _synonym_scene(rng: random.Random, pool: list[str]) -> world.Scene:
    while True:
        scene = world.Scene("single", (rng.choice(pool),), rng.choice(list(world.BACKGROUNDS)))
        if world.visible_on(scene.icons[0], scene.background):
            return scene


def score(items: list[EvalItem], images: list[Image.Image], model: IconClassifier | None = None) -> dict[str, float]:
    """Pass rate per category and their mean ("overall"): icons right (with relation and count) for every
    category but "background", which asks for the background colour only."""
    if len(items) != len(images):
        raise ValueError(f"{len(items)} items but {len(images)} images; they must match")
    passed: dict[str, list[bool]] = {c: [] for c in CATEGORIES}
    for item, image in zip(items, images):
        verdict = judge(item.scene, image, model)
        passed[item.category].append(verdict["background" if item.category == "background" else "icons"])
    rates = {c: float(np.mean(v)) for c, v in passed.items() if v}
    rates["overall"] = float(np.mean(list(rates.values())))
    return rates


def clean_images(items: list[EvalItem]) -> list[Image.Image]:
    """Each item's scene rendered exactly: the evaluator's ceiling."""
    return [world.render_scene(item.scene, item.seed)[0] for item in items]


# ----------------------------------------------------------------------------------------------------
# Inpainting: one icon of a held-out scene painted over, another asked for in its place

MASK_MARGIN = 3  # px the painted mask reaches past the replaced icon's box (icons are 7 px apart: never the other)


@dataclass(frozen=True)
class InpaintCase:
    image: Image.Image  # a held-out one- or two-icon scene
    mask: np.ndarray  # (64, 64) bool: the replaced icon's box grown by MASK_MARGIN
    want: str  # the icon asked for in the mask
    prompt: str  # "a dog"
    expected: world.Scene  # the scene with `want` in the replaced icon's place
    layout: world.Layout  # the scene's boxes (the replacement takes the replaced icon's box)
    index: int  # which of the scene's icons is replaced


def inpaint_cases(n: int, seed: int = 0) -> list[InpaintCase]:
    """n held-out scenes ("replace the cat with a dog"): one icon's box is masked and another icon, one that
    stands out from the background and is not in the scene, is asked for there."""
    rng = random.Random(f"inpaint-{seed}")
    side = world.RESOLUTION
    cases = []
    for _ in range(n):
        scene = world.sample_split_scene(rng, split="heldout", kind=rng.choice(("single", "pair")))
        image, layout = world.render_scene(scene, rng.getrandbits(31))
        index = rng.randrange(len(scene.icons))
        want = rng.choice([x for x in world.names() if x not in scene.icons and world.visible_on(x, scene.background)])
        x0, y0, x1, y1 = layout.boxes[index]
        mask = np.zeros((side, side), bool)
        m = MASK_MARGIN
        mask[
            max(0, int(y0) - m) : min(side, int(np.ceil(y1)) + m), max(0, int(x0) - m) : min(side, int(np.ceil(x1)) + m)
        ] = True
        icons = tuple(want if i == index else name for i, name in enumerate(scene.icons))
        expected = replace(scene, icons=icons)
        cases.append(InpaintCase(image, mask, want, world.article(want), expected, layout, index))
    return cases


def icon_in_mask(case: InpaintCase, image: Image.Image, model: IconClassifier | None = None) -> bool:
    """Is the asked icon found in `image` with its centre inside the painted mask?"""
    _, found = find_icons(image, model)
    return any(f.name == case.want and case.mask[int(f.center[1]), int(f.center[0])] for f in found)


def scene_of(image, background: str | None = None) -> tuple[str, Plan] | None:
    """What an icons picture (RGB, the model's 64 px) shows, for restyling a picture that carries no recipe: a
    caption ("a cat to the left of a pizza") and a plan with each thing's box where it is, found by the
    icon finder (`find_icons`: blobs on the border's colour, named by the classifier). None
    when it finds no icon or more than MAX_ICONS. `background`: the plan's (the restyle's), not the picture's."""

    found = sorted(find_icons(image)[1], key=lambda f: f.box[0])
    if not found or len(found) > MAX_ICONS:
        return None
    things = tuple(f.name for f in found)
    boxes = []
    for f in found:  # the square box the world would draw the sprite in: its blob's side (emoji fill their boxes:
        side, (cx, cy) = f.side, f.center  # a blob's side over its sprite box's, median 1.00 over 200 renders)
        boxes.append((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
    relation = None
    if len(found) == 2 and things[0] != things[1]:
        (ax, ay), (bx, by) = found[0].center, found[1].center
        relation = (
            ("left of" if ax < bx else "right of")
            if abs(bx - ax) >= abs(by - ay)
            else ("above" if ay < by else "below")
        )
    if len(set(things)) == 1 and len(things) > 1:
        caption = f"{'two' if len(things) == 2 else 'three'} {plural(things[0])}"
    elif relation is not None:
        said = {"left of": "to the left of", "right of": "to the right of"}.get(relation, relation)
        caption = f"{_a(things[0])} {said} {_a(things[1])}"
    else:
        caption = " and ".join(_a(t) for t in things)
    return caption, Plan(Request(things, relation, None, background), tuple(boxes))


def _a(name: str) -> str:
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
