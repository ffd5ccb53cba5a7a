import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny random diffusion model saved as a Wordbrush model folder (tests/tiny.py)."""
    from tests.tiny import make_tiny_diffusion

    return make_tiny_diffusion(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def wb(tiny_folder):
    """That model loaded through the real loading code."""
    from pipeline import Wordbrush

    return Wordbrush.load(str(tiny_folder))
