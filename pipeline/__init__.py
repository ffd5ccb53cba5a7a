"""Wordbrush's pipeline: a language-model prompt encoder chained into GAN or diffusion generators."""

from pipeline.core import Wordbrush
from pipeline.loader import load_pipeline
from pipeline.protocol import Capabilities, ImagePipeline, Result
from pipeline.recipe import Recipe

__all__ = ["Capabilities", "ImagePipeline", "Recipe", "Result", "Wordbrush", "load_pipeline"]
