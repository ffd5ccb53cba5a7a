"""Coordinate inputs: a UNet that reads x and y maps (so "above" has somewhere to go), widened from one that
does not without changing what it draws, and the training options that teach it relations."""

import collections
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline import diffusion
from pipeline.encoders import load_encoder
from tests.tiny import TINY_DIFFUSION
from train.diffusion import build_pool, pool_examples

ROOT = Path(__file__).resolve().parent.parent
NO_COORDS = dataclasses.replace(TINY_DIFFUSION, coords=False)


def test_coordinate_maps_say_where_each_pixel_is():
    maps = diffusion.coord_maps(2, 4, "cpu", torch.float32)
    assert maps.shape == (2, 2, 4, 4)
    x, y = maps[0]
    assert torch.allclose(x[0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))  # grows to the right
    assert torch.allclose(y[:, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))  # grows downwards
    assert torch.equal(x[0], x[3]) and torch.equal(y[:, 0], y[:, 3])


def test_input_width_says_which_extra_channels_a_unet_reads():
    plain = diffusion.build_unet(NO_COORDS)
    coords = diffusion.with_coords(plain)
    unets = (plain, coords, diffusion.inpainting_unet(plain), diffusion.inpainting_unet(coords))
    widths = {u.config.in_channels: (diffusion.reads_coords(u), diffusion.is_inpainting(u)) for u in unets}
    assert widths == {3: (False, False), 5: (True, False), 7: (False, True), 9: (True, True)}
    with pytest.raises(ValueError, match="without coordinate inputs"):
        diffusion.with_coords(coords)


def test_a_unet_widened_to_read_coordinates_draws_exactly_as_before_with_zero_weights():
    torch.manual_seed(0)
    plain = diffusion.build_unet(NO_COORDS).eval()
    wide = diffusion.with_coords(plain).eval()
    encoder = load_encoder("minilm")
    cond, uncond = encoder.encode(["a red circle above a blue square", "two green stars"]), encoder.encode([""])
    before = diffusion.sample(plain, NO_COORDS, cond, uncond, seeds=[1, 2], steps=3)
    after = diffusion.sample(wide, TINY_DIFFUSION, cond, uncond, seeds=[1, 2], steps=3)
    torch.testing.assert_close(before, after)
    with torch.no_grad():  # and the new channels are live: once their weights move, the drawing does
        wide.conv_in.weight[:, 3:5] = 0.5
    assert not torch.allclose(before, diffusion.sample(wide, TINY_DIFFUSION, cond, uncond, seeds=[1, 2], steps=3))


def test_kind_weights_shape_the_caption_pool():
    encoder = load_encoder("minilm")
    even = collections.Counter(e.scene.kind for e in build_pool(encoder, size=200, seed=0).examples)
    pool = build_pool(encoder, size=200, seed=0, kind_weights={"relation": 6.0})
    heavy = collections.Counter(e.scene.kind for e in pool.examples)
    assert heavy["relation"] > 100 > even["relation"]  # 6 / 9 of the pool against about a quarter
    assert pool.states.shape[0] == 200 and set(heavy) == set(even)
    # bench/relations.py --seen rebuilds a run's captions without the encoder: they must be the pool's
    again = pool_examples(size=200, seed=0, kind_weights={"relation": 6.0})
    assert [e.caption for e in again] == [e.caption for e in pool.examples]


def test_cli_widens_an_init_model_that_lacks_coordinates(tmp_path):
    init = tmp_path / "old"
    torch.manual_seed(0)
    diffusion.save(init, diffusion.build_unet(NO_COORDS), NO_COORDS, encoder="minilm", card={})
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "train",
        "diffusion",
        "--out",
        str(out),
        "--size",
        "tiny",
        "--init",
        str(init),
        "--kind-weights",
        "relation=2,count=1.5",
        "--batch-size",
        "4",
        "--pool-size",
        "16",
        "--steps",
        "1",
        "--lr",
        "0",
        "--checkpoint-every",
        "1",
        "--eval-every",
        "0",
        "--eval-per-category",
        "1",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "widened to read coordinate maps" in done.stdout + done.stderr
    unet, cfg, _ = diffusion.load(out / "model")
    assert cfg.coords and diffusion.reads_coords(unet)
    old, _, _ = diffusion.load(init)
    assert torch.allclose(unet.conv_in.weight[:, :3], old.conv_in.weight, atol=1e-3)  # lr 0: the init's weights
    assert 0.04 < unet.conv_in.weight[:, 3:].float().std() < 0.06  # the new ones from N(0, 0.05), the default

    bad_cmd = [
        sys.executable,
        "-m",
        "train",
        "diffusion",
        "--out",
        str(tmp_path / "bad"),
        "--kind-weights",
        "relations=2",
    ]
    bad = subprocess.run(bad_cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "KIND one of single, pair, relation, count" in bad.stderr


def test_high_noise_share_draws_that_share_from_the_noisiest_fifth():
    from train.diffusion import LAYOUT_FROM, timesteps

    torch.manual_seed(0)
    plain, heavy = timesteps(20000, 1000, 0.0, "cpu"), timesteps(20000, 1000, 0.5, "cpu")
    assert plain.min() >= 0 and heavy.max() <= 999
    noisy = int(LAYOUT_FROM * 1000)
    assert abs((plain >= noisy).float().mean() - 0.2) < 0.02  # uniform: a fifth
    assert abs((heavy >= noisy).float().mean() - 0.6) < 0.02  # half the batch, plus a fifth of the other half


def test_the_training_loss_draws_its_timesteps_with_the_high_noise_share():
    from train.diffusion import LAYOUT_FROM, DiffusionTask

    encoder = load_encoder("minilm")
    pool = build_pool(encoder, size=8, seed=0)
    task = DiffusionTask(diffusion.build_unet(TINY_DIFFUSION), TINY_DIFFUSION, encoder, pool, high_noise=1.0)
    seen = []
    add_noise = task.noise.add_noise
    task.noise.add_noise = lambda x0, noise, t: seen.append(t) or add_noise(x0, noise, t)
    idx, images = next(task.batches(0, 16, torch.device("cpu")))
    loss = task.loss(task.unet, (idx, images))
    assert torch.isfinite(loss) and len(seen) == 1
    assert seen[0].min() >= LAYOUT_FROM * TINY_DIFFUSION.train_timesteps  # every one from the noisiest fifth
