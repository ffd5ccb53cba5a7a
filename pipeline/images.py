"""Image input and output for the editing tasks: load safely, fit to the model, fit back to the input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

MAX_SIDE = 4096  # larger inputs are refused before their pixels are decoded
MAX_OUTPUT_SIDE = 512  # results are returned at the input's aspect ratio, long side at most this


def refuse_image_bombs() -> None:
    """Make Pillow refuse, when it reads a file's header, any image of more than MAX_SIDE x MAX_SIDE pixels,
    whoever opens it (gradio's own upload handling decodes some images before a handler runs): a 20 KB 1-bit
    PNG of 13000 x 13000 pixels would otherwise decode to 500 MB."""
    Image.MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE
    warnings.simplefilter("error", Image.DecompressionBombWarning)  # above the limit, not only above twice it


def open_image(source: str | Path | Image.Image) -> Image.Image:
    """An RGB image from a path or a PIL image (any mode: RGBA on white, greyscale, palette...).
    Refuses files that are not images and images larger than MAX_SIDE, before decoding them."""
    if isinstance(source, Image.Image):
        image = source
    else:
        try:
            image = Image.open(source)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:  # a small file, huge pixels
            raise ValueError(f"{Path(source).name} is too large to open ({err})") from None
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{Path(source).name} is not an image Pillow can read ({err.__class__.__name__})") from err
    w, h = image.size
    if max(w, h) > MAX_SIDE:
        raise ValueError(f"image is {w}x{h}; the largest accepted is {MAX_SIDE}x{MAX_SIDE}, downscale it first")
    if w < 1 or h < 1:
        raise ValueError(f"image is {w}x{h}; it has no pixels")
    try:
        image.load()
    except OSError as err:  # truncated or corrupt data
        raise ValueError(f"the image data is corrupt or truncated ({err})") from err
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any mode; transparent parts become white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(flat, rgba).convert("RGB")
    return image.convert("RGB")


def open_mask(source: str | Path | Image.Image, size: tuple[int, int]) -> np.ndarray:
    """A boolean mask (H, W), True = regenerate: white (>= 50% grey, any mode) is True, black False.
    Its size must equal the image's."""
    if isinstance(source, Image.Image):
        mask = source
    else:
        try:
            mask = Image.open(source)
            mask.load()
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"the mask is not an image Pillow can read ({err.__class__.__name__})") from err
    if mask.size != size:
        raise ValueError(f"mask is {mask.size[0]}x{mask.size[1]}, image is {size[0]}x{size[1]}; they must match")
    if mask.mode in ("RGBA", "LA"):  # a brush layer: painted where opaque
        return np.asarray(mask.getchannel("A")) >= 128
    return np.asarray(mask.convert("L")) >= 128


def to_model(image: Image.Image, resolution: int) -> torch.Tensor:
    """(1, 3, R, R) in [0, 1]: the whole image squeezed to the model's square (aspect restored later)."""
    small = image.resize((resolution, resolution), Image.BOX if min(image.size) >= resolution else Image.BICUBIC)
    return torch.from_numpy(np.asarray(small, np.float32) / 255).permute(2, 0, 1)[None]


def mask_to_model(mask: np.ndarray, resolution: int) -> torch.Tensor:
    """(1, 1, R, R) in {0, 1}: a model pixel is regenerated if any input pixel under it is."""
    m = Image.fromarray(mask.astype(np.uint8) * 255).resize((resolution, resolution), Image.BOX)
    return torch.from_numpy((np.asarray(m) > 0).astype(np.float32))[None, None]


def inpaint_area(region: np.ndarray, *, padding: float = 0.15, max_fraction: float = 0.8) -> tuple | None:
    """The square (left, top, right, bottom) around the mask that inpainting redraws at the model's full
    resolution, AUTOMATIC1111's "inpaint only masked": a small mask gets the model's whole canvas, so an
    object asked for there is drawn at the scale the model learned, then fitted back. The mask's bounding
    box grows by `padding` of its side (at least 2 px) for context. None (use the whole image) when that
    square would cover more than `max_fraction` of the image's shorter side anyway."""
    ys, xs = np.nonzero(region)
    h, w = region.shape
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = max(x1 - x0, y1 - y0)
    side = int(side + 2 * max(2, round(padding * side)))
    if side > max_fraction * min(w, h):
        return None
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(min(max(0, round(cx - side / 2)), w - side))  # shifted inside the image, never shrunk
    top = int(min(max(0, round(cy - side / 2)), h - side))
    return left, top, left + side, top + side


def crop_area(source: Image.Image, region: np.ndarray, box: tuple | None) -> tuple[Image.Image, np.ndarray]:
    """The image and mask inside `box` (from inpaint_area); both whole when box is None."""
    if box is None:
        return source, region
    return source.crop(box), region[box[1] : box[3], box[0] : box[2]]


def paste_area(source: Image.Image, area: Image.Image, box: tuple | None) -> Image.Image:
    """`area` (a redrawn crop) put back into a copy of `source` at `box`; `area` itself when box is None."""
    if box is None:
        return area
    whole = source.copy()
    whole.paste(area, box[:2])
    return whole


def output_size(size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """The input's aspect ratio, long side between the model's resolution and MAX_OUTPUT_SIDE."""
    w, h = size
    long_side = min(max(w, h, resolution), MAX_OUTPUT_SIDE)
    scale = long_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def from_model(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image.resize(size, Image.LANCZOS)


def composite(generated: Image.Image, source: Image.Image, region: np.ndarray, *, match: bool = True) -> Image.Image:
    """Generated pixels inside `region` (resized to the source), the source's own pixels outside, bit for bit.
    match: where the mask's inner edge was redrawn as the same surface as just outside it (pixels within
    48 levels of the outside's median colour), shift the generated pixels by the median difference, so no
    halo of a slightly different tone shows where the redrawn area meets the kept one."""
    inside = np.asarray(generated.convert("RGB").resize(source.size, Image.LANCZOS))
    kept = np.asarray(source)
    if match:
        inner, outer = region & _grow(~region, 2), _grow(region, 2) & ~region
        if inner.any() and outer.any():
            ref = np.median(kept[outer].astype(np.int16), 0)
            edge = inside[inner].astype(np.int16)
            same = np.abs(edge - ref).max(1) < 48  # the edge pixels that continue the outside surface
            if same.sum() >= 0.25 * len(edge):
                offset = np.round(ref - np.median(edge[same], 0)).astype(np.int16)
                inside = np.clip(inside.astype(np.int16) + offset, 0, 255).astype(np.uint8)
    return Image.fromarray(np.where(region[..., None], inside, kept))


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """`mask` dilated by `pixels` (8-neighbourhood)."""
    out = mask.copy()
    for _ in range(pixels):
        padded = np.pad(out, 1)
        h, w = out.shape
        out = np.logical_or.reduce([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])
    return out


def to_pil(x) -> list[Image.Image]:
    """(B, 3, H, W) tensor in [0, 1] -> RGB images."""
    arr = (x.permute(0, 2, 3, 1).float().numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return [Image.fromarray(a) for a in arr]
