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


# The two tiers. `pytest` runs the fast, in-process tier; `pytest -m ""` (the README's test command, .ci/run) runs
# everything. A test is in the integration tier when it is marked `integration` (a test whose fixture starts a
# process carries the mark itself) or `slow`, when its module drives a live server, a browser or an install, or
# when its own code starts a process.
INTEGRATION_MODULES = {"test_abuse", "test_browser", "test_install", "test_server"}
STARTS_A_PROCESS = ("subprocess.", "Popen", "_cli(", "_launch(", "running_app(")


def pytest_collection_modifyitems(config, items):
    import inspect

    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        source = inspect.getsource(item.function) if hasattr(item, "function") else ""
        slow = item.get_closest_marker("slow") is not None
        if slow or module in INTEGRATION_MODULES or any(s in source for s in STARTS_A_PROCESS):
            item.add_marker(pytest.mark.integration)
