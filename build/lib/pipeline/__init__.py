"""Wordbrush's pipeline: a language-model prompt encoder chained into GAN or diffusion generators."""

from pipeline.core import Result, Wordbrush
from pipeline.recipe import Recipe

__all__ = ["Recipe", "Result", "Wordbrush"]
