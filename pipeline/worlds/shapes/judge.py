"""A GenEval-style evaluator for the shapes world.

Each evaluation item is (category, scene, prompt). An image passes an item when the objects found in it
answer the category's question about the scene:

    single_object       exactly one object, of the right colour and shape
    two_objects         exactly two objects, of the right shapes
    counting            exactly n objects, all of the right shape
    colors              exactly one object, of the right colour
    position            both objects, right colours and shapes, in the right relation
    color_attribution   exactly two objects, each shape bearing its own colour
    style               the style classifier names the scene's style

Objects are found by rules: the background is the median border colour; pixels far from it are
foreground; 4-connected components (holes filled) are objects, a component in which two palette colours
each hold a good share of the pixels split by colour when the parts are convex shapes and the whole is
not (touching objects); the colour is the majority palette colour of a component's strongest pixels;
the shape comes from its fill ratio and taper.
Overall = the mean of the categories.
"""

from __future__ import annotations

import functools
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image
from scipy import ndimage
from torch import nn

from pipeline.worlds.shapes import scenes as world

CATEGORIES = ("single_object", "two_objects", "counting", "colors", "position", "color_attribution", "style")
KIND_OF_CATEGORY = {
    "single_object": "single",
    "two_objects": "pair",
    "counting": "count",
    "colors": "single",
    "position": "relation",
    "color_attribution": "pair",
    "style": None,  # any kind
}
FOREGROUND_DISTANCE = 45.0  # RGB distance from the background that makes a pixel foreground
MIN_AREA = 10  # components smaller than this (pixels at 32 px) are noise
SPLIT_SHARE = 0.25  # a colour with this share of a component's near-palette pixels is an object of its own
STAR_SOLIDITY = 0.78  # area over convex-hull area below which a shape has a star's notches
PURE_DISTANCE = 60.0  # RGB distance to a palette colour within which a pixel counts as that colour
MAX_AREA_FRACTION = 0.45  # the biggest object (18 x 18 px) covers 32% of the frame
STYLE_CLASSIFIER = Path(__file__).resolve().parents[3] / "assets" / "evaluator" / "style-classifier"
PALETTE_NAMES = list(world.COLORS)
PALETTE = np.array([world.COLORS[c] for c in PALETTE_NAMES], np.float32)


@dataclass(frozen=True)
class Found:
    """An object the evaluator found."""

    color: str
    shape: str
    center: tuple[float, float]  # (x, y) in pixels, y down
    area: int


@dataclass(frozen=True)
class EvalItem:
    category: str  # one of CATEGORIES
    scene: world.Scene
    prompt: str
    seed: int  # layout seed for clean renders; generation seed for models


# ----------------------------------------------------------------------------------------------------
# Finding objects


def find_objects(image: Image.Image) -> list[Found]:
    """The objects in a shapes-world image, by rules (any size; judged at the native resolution)."""
    image = image.convert("RGB")
    if image.size != (world.RESOLUTION, world.RESOLUTION):
        image = image.resize((world.RESOLUTION, world.RESOLUTION), Image.BICUBIC)
    px = np.asarray(image, np.float32)
    border = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
    background = np.median(border, axis=0)
    distance = np.linalg.norm(px - background, axis=-1)  # (H, W)
    foreground = distance > FOREGROUND_DISTANCE
    labels, n = ndimage.label(foreground)  # 4-connected
    found = []
    for i in range(1, n + 1):
        component = labels == i
        if component.sum() < MIN_AREA:
            continue
        # Touching objects of different colours (an object inpainted beside another) are one component:
        # split it by colour when two or more palette colours each hold a good share of its pixels and
        # the parts are convex shapes where the whole is not.
        colors = _strong_colors(px[component])
        parts = [component] if len(colors) < 2 else _split_by_color(px, component, colors)
        for part in parts:
            obj = _object_of(px, distance, part)
            if obj is not None:
                found.append(obj)
    return found


def _palette_distances(pixels: np.ndarray, palette: np.ndarray = PALETTE) -> np.ndarray:
    """(N, K) RGB distances of N pixels to K palette colours."""
    return np.linalg.norm(pixels[:, None, :] - palette[None], axis=-1)


def _nearest_palette(pixels: np.ndarray) -> np.ndarray:
    return _palette_distances(pixels).argmin(1)


def _strong_colors(pixels: np.ndarray) -> list[int]:
    """Palette indices that each hold at least SPLIT_SHARE of a component's near-palette pixels (within
    PURE_DISTANCE of a palette colour: object cores, not the blends at soft or anti-aliased edges)."""
    d = _palette_distances(pixels)
    pure = d.min(1) < PURE_DISTANCE
    counts = Counter(d[pure].argmin(1).tolist())
    return [c for c, k in counts.items() if k >= SPLIT_SHARE * pure.sum() and k >= MIN_AREA]


def _split_by_color(px: np.ndarray, component: np.ndarray, colors: list[int]) -> list[np.ndarray]:
    """The component's pixels given to the nearest of `colors`, one part per colour, when that explains it
    better: the whole is no single convex shape (it would read as a star) while each colour's part is one.
    Else the component whole: one object whose colour bleeds or mixes is not two objects."""
    if _solidity(ndimage.binary_fill_holes(component)) >= STAR_SOLIDITY:
        return [component]
    ys, xs = np.nonzero(component)
    nearest = _palette_distances(px[ys, xs], PALETTE[colors]).argmin(1)
    parts = []
    for k in range(len(colors)):
        piece = np.zeros_like(component)
        piece[ys[nearest == k], xs[nearest == k]] = True
        labels, n = ndimage.label(piece)
        sizes = ndimage.sum(piece, labels, range(1, n + 1))
        part = labels == 1 + int(sizes.argmax())
        if _solidity(ndimage.binary_fill_holes(part)) < STAR_SOLIDITY:
            return [component]
        parts.append(part)
    return parts


def _object_of(px: np.ndarray, distance: np.ndarray, component: np.ndarray) -> Found | None:
    """The object a component shows: its colour, shape, centre and area; None for noise."""
    if component.sum() < MIN_AREA:
        return None
    # Shape from the contour at 35% of the peak: close to the drawn outline for soft (blurred) objects.
    filled = ndimage.binary_fill_holes(component & (distance >= 0.35 * distance[component].max()))
    if not filled.any():
        return None
    ys, xs = np.nonzero(filled)
    # Colour: vote among the component's strongest pixels (the core of soft or anti-aliased edges).
    d = distance[component]
    core = px[component][d >= 0.7 * d.max()]
    ((top, votes),) = Counter(_nearest_palette(core).tolist()).most_common(1)
    if filled.sum() > MAX_AREA_FRACTION * filled.size or votes < 0.5 * len(core):
        return None  # a region that fills the frame or has no dominant colour is not an object
    return Found(PALETTE_NAMES[top], _shape_of(filled), (xs.mean() + 0.5, ys.mean() + 0.5), int(filled.sum()))


def _shape_of(mask: np.ndarray) -> str:
    """circle, square, triangle (or star) from a filled mask: a star has deep notches; a triangle tapers
    upwards; a square fills its bounding box's corners, which a circle leaves empty."""
    ys, xs = np.nonzero(mask)
    box = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = box.shape
    if _solidity(box) < STAR_SOLIDITY:  # deep notches between points: a star (<= 0.69 measured; triangles >= 0.88)
        return "star"
    widths = box.sum(1)
    if widths[int(h * 0.25)] < 0.75 * widths[min(int(h * 0.75), h - 1)]:
        return "triangle"
    u = (np.arange(w) + 0.5) / w
    v = (np.arange(h) + 0.5) / h
    du, dv = np.minimum(u, 1 - u)[None, :], np.minimum(v, 1 - v)[:, None]
    corners = (du + dv) < 0.3  # the four corner triangles of the box
    if not corners.any():  # a sliver too thin to have corners
        return "circle"
    return "square" if box[corners].mean() > 0.28 else "circle"


def _solidity(box: np.ndarray) -> float:
    """Area over convex-hull area (1 for convex shapes; about 0.5 for a five-pointed star)."""
    from scipy.spatial import ConvexHull, QhullError

    ys, xs = np.nonzero(box)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    try:
        return float(box.sum() / ConvexHull(corners).volume)
    except QhullError:  # a line of pixels
        return 1.0


def relation_holds(relation: str, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Centre `a` is `relation` centre `b`: further along the relation's axis than across it."""
    return world._relation_holds(relation, a, b, margin=0.0)


def object_pair(scene: world.Scene, found: list[Found]) -> tuple[Found, Found] | None:
    """The found objects that are the scene's first and second, or None unless `found` is exactly the
    scene's objects (right colours and shapes)."""
    want = [(o.color, o.shape) for o in scene.objects]
    if sorted((f.color, f.shape) for f in found) != sorted(want):
        return None
    a = next(f for f in found if (f.color, f.shape) == want[0])
    b = next(f for f in found if (f.color, f.shape) == want[1])
    return a, b


# ----------------------------------------------------------------------------------------------------
# Judging


@functools.cache
def _style_classifier():
    if not STYLE_CLASSIFIER.exists():
        raise FileNotFoundError(
            f"no style classifier at {STYLE_CLASSIFIER}; train it with "
            f"`python -m train style-classifier --out {STYLE_CLASSIFIER}`"
        )
    return StyleClassifier.from_pretrained(STYLE_CLASSIFIER).eval()


def judge(item: EvalItem, image: Image.Image) -> bool:
    """Does `image` pass `item`? See the module docstring for each category's question."""
    scene, cat = item.scene, item.category
    if cat == "style":
        return _style_classifier().predict([image])[0] == scene.style
    found = find_objects(image)
    want = [(o.color, o.shape) for o in scene.objects]
    got = [(f.color, f.shape) for f in found]
    if cat == "single_object":
        return got == want
    if cat == "colors":
        return len(found) == 1 and found[0].color == want[0][0]
    if cat == "two_objects":
        return sorted(s for _, s in got) == sorted(s for _, s in want)
    if cat == "color_attribution":
        return sorted(got) == sorted(want)
    if cat == "counting":
        return len(found) == len(want) and all(s == want[0][1] for _, s in got)
    if cat == "position":
        pair = object_pair(scene, found)
        return pair is not None and relation_holds(scene.relation, pair[0].center, pair[1].center)
    raise ValueError(f"unknown category {cat!r}; expected one of {CATEGORIES}")


# ----------------------------------------------------------------------------------------------------
# Evaluation sets and scoring


def eval_set(split: str, *, per_category: int = 100, seed: int = 1234) -> list[EvalItem]:
    """The fixed evaluation items of `split`.

    "combos": held-out attribute combinations, phrased with training templates.
    "templates": training combinations, phrased with held-out templates.
    """
    if split not in ("combos", "templates"):
        raise ValueError(f"split must be 'combos' or 'templates', got {split!r}")
    rng = random.Random(f"{seed}-{split}")
    combo_split, template_split = ("heldout", "train") if split == "combos" else ("train", "heldout")
    items = []
    for cat in CATEGORIES:
        for _ in range(per_category):
            kind = KIND_OF_CATEGORY[cat] or rng.choice(world.KINDS)
            style = world.STYLES[len(items) % len(world.STYLES)] if cat == "style" else None  # styles evenly
            scene = world.sample_split_scene(rng, split=combo_split, kind=kind, style=style)
            prompt = world.caption(scene, rng, template_split=template_split)
            items.append(EvalItem(cat, scene, prompt, rng.getrandbits(31)))
    return items


def score(items: list[EvalItem], images: list[Image.Image]) -> dict[str, float]:
    """Per-category pass rates and their mean ("overall")."""
    if len(items) != len(images):
        raise ValueError(f"{len(items)} items but {len(images)} images; they must match")
    return pass_rates(by_category(items, [judge(item, image) for item, image in zip(items, images)]))


def by_category(items: list[EvalItem], verdicts: list[bool]) -> dict[str, list[bool]]:
    """Each category's verdicts, in item order (categories with no items left out)."""
    passed: dict[str, list[bool]] = {c: [] for c in CATEGORIES}
    for item, verdict in zip(items, verdicts):
        passed[item.category].append(verdict)
    return {c: v for c, v in passed.items() if v}


def pass_rates(passed: dict[str, list[bool]]) -> dict[str, float]:
    """Pass rate of each category and their mean ("overall")."""
    scores = {c: float(np.mean(v)) for c, v in passed.items()}
    scores["overall"] = float(np.mean(list(scores.values())))
    return scores


def clean_images(items: list[EvalItem]) -> list[Image.Image]:
    """Each item's scene rendered exactly: the evaluator's ceiling."""
    return [world.render_scene(item.scene, item.seed)[0] for item in items]


def format_table(columns: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per category (+ overall), one column per run."""
    names = list(columns)
    lines = ["| category | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    categories = [c for c in dict.fromkeys(k for col in columns.values() for k in col) if c != "overall"]
    for cat in (*categories, "overall"):
        cells = [f"{columns[n][cat]:.3f}" if cat in columns[n] else "-" for n in names]
        label = f"**{cat}**" if cat == "overall" else cat
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sample_sheet(prompts: list[str], images: list[Image.Image], *, columns: int = 6, tile: int = 160) -> Image.Image:
    """A grid to judge by eye: each picture enlarged (nearest neighbour, so pixels stay pixels) with its
    prompt written beneath."""
    import textwrap

    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)
    label = 48  # room for three lines of prompt
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * tile, rows * (tile + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (prompt, image) in enumerate(zip(prompts, images)):
        x, y = (i % columns) * tile, (i // columns) * (tile + label)
        sheet.paste(image.convert("RGB").resize((tile - 8, tile - 8), Image.NEAREST), (x + 4, y + 4))
        text = "\n".join(textwrap.wrap(prompt, width=tile // 7)[:3])
        draw.multiline_text((x + 4, y + tile - 2), text, fill="black", font=font, spacing=2)
    return sheet


def write_manifest(items: list[EvalItem], path: Path) -> None:
    """items as JSON lines (category, scene, prompt, seed): what `--images DIR` reads back."""
    with open(path, "w") as f:
        for it in items:
            row = {"category": it.category, "scene": it.scene.to_dict(), "prompt": it.prompt, "seed": it.seed}
            f.write(json.dumps(row) + "\n")


def read_manifest(path: Path) -> list[EvalItem]:
    items = []
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        items.append(EvalItem(row["category"], world.Scene.from_dict(row["scene"]), row["prompt"], row["seed"]))
    return items


class StyleClassifier(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, styles: tuple[str, ...] = world.STYLES, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),  # 16 x 16
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),  # 8 x 8
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.SiLU(),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * w, len(styles)),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) in [-1, 1] -> logits (B, n_styles)."""
        return self.net(images)

    @torch.inference_mode()
    def predict(self, images: list[Image.Image]) -> list[str]:
        x = torch.stack([to_tensor(im) for im in images]).to(self.device, self.dtype)
        return [self.config.styles[i] for i in self.forward(x).argmax(-1).tolist()]


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image at the world's resolution -> (3, H, W) float in [-1, 1]."""
    image = image.convert("RGB")
    if image.size != (world.RESOLUTION, world.RESOLUTION):
        image = image.resize((world.RESOLUTION, world.RESOLUTION), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1).permute(2, 0, 1)
