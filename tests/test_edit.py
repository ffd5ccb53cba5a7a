import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.recipe import read_recipe

ROOT = Path(__file__).resolve().parent.parent


def _photo(size=(120, 80), mode="RGB"):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    return image.convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "1"])
def test_style_transfer_takes_any_mode_and_keeps_aspect(wb, mode):
    out = wb.style_transfer(_photo(mode=mode), style_prompt="in outline style", strength=0.6, seed=0, steps=4)
    image, recipe = out.images[0], out.recipes[0]
    assert image.mode == "RGB" and image.size == (120, 80)  # 3:2 in, 3:2 out
    assert recipe.task == "style_transfer" and recipe.strength == 0.6


def test_style_transfer_is_seeded_and_strength_zero_keeps_the_input(wb):
    photo = _photo((32, 32))
    a = wb.style_transfer(photo, style_prompt="striped", strength=0.5, seed=1, steps=4).images[0]
    b = wb.style_transfer(photo, style_prompt="striped", strength=0.5, seed=1, steps=4).images[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))
    same = wb.style_transfer(photo, style_prompt="striped", strength=0.0, seed=1, steps=4).images[0]
    assert np.abs(np.asarray(same, np.int16) - np.asarray(photo, np.int16)).max() <= 1


def test_small_and_tall_images_come_back_at_their_aspect(wb):
    assert wb.style_transfer(_photo((5, 20)), style_prompt="soft", seed=0, steps=2).images[0].size == (8, 32)
    big = wb.style_transfer(_photo((2000, 1000)), style_prompt="soft", seed=0, steps=2).images[0]
    assert big.size == (512, 256)


def test_inpaint_keeps_outside_pixels_bit_identical(wb):
    photo = _photo((96, 64))
    mask = np.zeros((64, 96), np.uint8)
    mask[10:40, 20:60] = 255
    out = wb.inpaint(photo, Image.fromarray(mask), prompt="a yellow triangle", seed=0, steps=4).images[0]
    before, after = np.asarray(photo), np.asarray(out)
    assert out.size == photo.size
    assert np.array_equal(before[mask == 0], after[mask == 0])
    assert not np.array_equal(before[mask > 0], after[mask > 0])


def test_inpaint_area_is_a_padded_square_inside_the_image():
    from pipeline.images import inpaint_area

    region = np.zeros((64, 96), bool)
    region[10:24, 20:34] = True  # a 14 px box
    left, top, right, bottom = inpaint_area(region)
    assert right - left == bottom - top == 18  # grown by 2 px a side
    assert left <= 20 and top <= 10 and right >= 34 and bottom >= 24
    corner = np.zeros((64, 96), bool)
    corner[0:10, 86:96] = True  # against the edge: shifted inside, never shrunk
    left, top, right, bottom = inpaint_area(corner)
    assert (right, top) == (96, 0) and right - left == bottom - top == 14
    assert inpaint_area(np.ones((64, 96), bool)) is None  # a big mask: the whole image


def test_zoomed_inpainting_redraws_only_the_masks_square(wb):
    photo = _photo((96, 64))
    mask = np.zeros((64, 96), np.uint8)
    mask[20:34, 40:54] = 255
    zoomed = wb.inpaint(photo, Image.fromarray(mask), prompt="a red circle", seed=2, steps=4).images[0]
    whole = wb.inpaint(photo, Image.fromarray(mask), prompt="a red circle", seed=2, steps=4, zoom=False).images[0]
    before, a, b = np.asarray(photo), np.asarray(zoomed), np.asarray(whole)
    assert np.array_equal(before[mask == 0], a[mask == 0])  # outside the mask: bit for bit, both ways
    assert np.array_equal(before[mask == 0], b[mask == 0])
    assert not np.array_equal(a[mask > 0], b[mask > 0])  # the 18 px square drawn on the whole canvas differs


def test_composite_matches_the_redrawn_background_to_the_kept_one():
    from pipeline.images import composite

    source = Image.new("RGB", (32, 32), (128, 128, 128))
    region = np.zeros((32, 32), bool)
    region[8:24, 8:24] = True
    drawn = np.full((32, 32, 3), 140, np.uint8)  # the redrawn background came out 12 levels lighter...
    drawn[12:20, 12:20] = (220, 30, 30)  # ...around a red object
    out = np.asarray(composite(Image.fromarray(drawn), source, region))
    assert (out[8, 8] == 128).all() and (out[15, 15] == (208, 18, 18)).all()  # the tone shift is undone
    assert (out[~region] == 128).all()
    plain = np.asarray(composite(Image.fromarray(drawn), source, region, match=False))
    assert (plain[8, 8] == 140).all()
    filled = np.full((32, 32, 3), (30, 30, 220), np.uint8)  # an object that fills the mask: nothing to match
    assert (np.asarray(composite(Image.fromarray(filled), source, region))[15, 15] == (30, 30, 220)).all()


def test_repaint_resampling_is_seeded_and_keeps_outside_pixels(wb):
    photo = _photo((64, 64))
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    steps_seen = []

    def run(resample):
        callback = (lambda i, n, _x: steps_seen.append((i, n))) if resample == 3 else None
        out = wb.inpaint(
            photo, Image.fromarray(mask), prompt="a red circle", seed=1, steps=4, resample=resample, callback=callback
        )
        return np.asarray(out.images[0])

    plain, resampled, again = run(1), run(3), run(3)
    assert np.array_equal(resampled, again)  # the extra noise is seeded too
    assert np.array_equal(resampled[mask == 0], np.asarray(photo)[mask == 0])
    assert not np.array_equal(resampled[mask > 0], plain[mask > 0])  # the redone steps changed the result
    assert steps_seen[-1] == (4, 4)  # progress still counts solver steps


def test_empty_mask_returns_the_input_and_full_mask_generates(wb):
    photo = _photo((32, 32))
    empty = wb.inpaint(photo, Image.new("L", (32, 32), 0), prompt="a red circle", seed=0, steps=2).images[0]
    assert np.array_equal(np.asarray(empty), np.asarray(photo))
    full = wb.inpaint(photo, Image.new("L", (32, 32), 255), prompt="a red circle", seed=3, steps=2).images[0]
    t2i = wb.text_to_image("a red circle", seed=3, steps=2).images[0]
    assert np.abs(np.asarray(full, np.int16) - np.asarray(t2i, np.int16)).max() <= 2  # full mask == text to image


def test_mask_modes_threshold_at_half(wb):
    photo = _photo((32, 32))
    grey = np.full((32, 32), 127, np.uint8)
    grey[:, 16:] = 128  # right half >= 50%: regenerate
    out = np.asarray(wb.inpaint(photo, Image.fromarray(grey), prompt="x", seed=0, steps=2).images[0])
    assert np.array_equal(out[:, :16], np.asarray(photo)[:, :16])
    rgb_mask = Image.fromarray(np.stack([grey] * 3, -1))
    out_rgb = np.asarray(wb.inpaint(photo, rgb_mask, prompt="x", seed=0, steps=2).images[0])
    assert np.array_equal(out, out_rgb)


def test_bad_edit_input_gets_clear_errors(wb, tmp_path):
    photo = _photo((32, 32))
    with pytest.raises(ValueError, match="mask is 16x16, image is 32x32; they must match"):
        wb.inpaint(photo, Image.new("L", (16, 16), 255), prompt="x")
    bogus = tmp_path / "not-an-image.png"
    bogus.write_bytes(b"this is text, not a PNG")
    with pytest.raises(ValueError, match="not an image"):
        wb.style_transfer(str(bogus), style_prompt="soft")
    truncated = tmp_path / "truncated.png"
    photo.save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="corrupt|not an image"):
        wb.style_transfer(str(truncated), style_prompt="soft")
    with pytest.raises(ValueError, match="strength must be between"):
        wb.style_transfer(photo, style_prompt="soft", strength=1.5)


def test_huge_image_is_refused_before_decoding(wb, tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (10_000, 10_000), 0).save(path)  # 10 kB on disk, 100 MP decoded
    with pytest.raises(ValueError, match="10000x10000; the largest accepted is 4096x4096"):
        wb.style_transfer(str(path), style_prompt="soft")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True)


def test_cli_style_and_inpaint(tiny_folder, tmp_path):
    src, mask = tmp_path / "in.png", tmp_path / "mask.png"
    _photo((48, 48)).save(src)
    m = np.zeros((48, 48), np.uint8)
    m[8:24, 8:24] = 255
    Image.fromarray(m).convert("1").save(mask)
    common = ["--seed", "0", "--model", str(tiny_folder), "--steps", "2"]
    r = _cli(
        "style",
        "--image",
        str(src),
        "--prompt",
        "in outline style",
        "--strength",
        "0.6",
        "--out",
        str(tmp_path / "s.png"),
        *common,
    )
    assert r.returncode == 0, r.stderr
    assert read_recipe(Image.open(tmp_path / "s.png")).task == "style_transfer"
    r = _cli(
        "inpaint",
        "--image",
        str(src),
        "--mask",
        str(mask),
        "--prompt",
        "a yellow triangle",
        "--out",
        str(tmp_path / "i.png"),
        *common,
    )
    assert r.returncode == 0, r.stderr
    out = np.asarray(Image.open(tmp_path / "i.png"))
    assert np.array_equal(out[m == 0], np.asarray(Image.open(src))[m == 0])
    r = _cli("inpaint", "--image", str(src), "--mask", str(tmp_path / "missing.png"), "--prompt", "x", *common)
    assert r.returncode == 2 and "error:" in r.stderr
