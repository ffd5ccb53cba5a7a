"""The embedded worlds, by the name a model folder records (`DiffusionConfig.world`). Adding a world is a new
folder beside these two and a line here."""

from __future__ import annotations

from pipeline.worlds.base import World
from pipeline.worlds.icons import ICONS
from pipeline.worlds.shapes import SHAPES

WORLDS: dict[str, World] = {"shapes": SHAPES, "icons": ICONS}


def world_named(name: str) -> World:
    """The world a model folder (or a command line) names; a ValueError that lists them for any other name."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; choose one of {', '.join(WORLDS)}")
    return WORLDS[name]
