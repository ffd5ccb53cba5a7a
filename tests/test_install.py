"""The project installs as a package: `pip install .` puts pipeline/, train/, app and the shipped weights where
the `wordbrush-generate` command finds them, from any working folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipeline.recipe import read_recipe

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_pip_install_gives_a_working_generate_command(tmp_path):
    target, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target)]
    subprocess.run([*pip, str(ROOT)], check=True, capture_output=True)  # dependencies: this venv's
    for model in ("icons-diffusion", "shapes-diffusion"):
        assert (target / "assets" / model / "wordbrush.json").is_file()
    assert not (target / "assets" / "screenshots").exists()
    env = {**os.environ, "PYTHONPATH": str(target)}
    command = [sys.executable, str(target / "bin" / "wordbrush-generate"), "a frog", "--out", "x.png"]  # icons
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    image = Image.open(work / "x.png")
    recipe = read_recipe(image)
    assert recipe.prompt == "a frog" and recipe.model == "icons" and image.size == (64, 64)  # the default model
