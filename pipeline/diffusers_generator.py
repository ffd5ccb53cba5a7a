"""A diffusers pipeline family as a Wordbrush generator: one checkpoint's text-to-image, image-to-image and
inpainting pipelines, built with `from_pipe` so that they share one set of components in memory."""

from __future__ import annotations

import inspect

import torch
from PIL import Image

TASK_PIPELINES = {"style_transfer": "image-to-image", "inpaint": "inpainting"}


class DiffusersGenerator:
    """One diffusers pipeline family behind the generator protocol's attributes (kind, defaults,
    resolution); `generate` runs one of its pipelines on a batch, halving the batch on CUDA out-of-memory."""

    kind = "diffusers"

    def __init__(self, t2i, *, default_steps: int, default_guidance: float, resolution: int):
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

        self.pipes = {"text_to_image": t2i}
        self.missing: dict[str, str] = {}  # task -> why this checkpoint cannot do it
        unet = getattr(t2i, "unet", None)
        if unet is not None and unet.config.in_channels == 9:  # an inpainting checkpoint: masked input only
            self.pipes = {"inpaint": AutoPipelineForInpainting.from_pipe(t2i)}
            for task in ("text_to_image", "style_transfer"):
                self.missing[task] = "it is an inpainting checkpoint (9-channel UNet); use it in the Inpainting tab"
        for task, auto in (("style_transfer", AutoPipelineForImage2Image), ("inpaint", AutoPipelineForInpainting)):
            if task in self.pipes or task in self.missing:
                continue
            try:
                self.pipes[task] = auto.from_pipe(t2i)  # shares the denoiser, VAE and text encoder in memory
            except ValueError:  # AutoPipeline knows no such pipeline for this family
                self.missing[task] = f"diffusers has no {TASK_PIPELINES[task]} pipeline for {type(t2i).__name__}"
        for pipe in self.pipes.values():
            pipe.set_progress_bar_config(disable=True)
        # each pipeline's call arguments, read once: the progress hook and resolution binning differ by family
        self.accepts = {task: frozenset(inspect.signature(p.__call__).parameters) for task, p in self.pipes.items()}
        self.base = t2i  # holds the shared components (LoRA, devices)
        self.default_steps, self.default_guidance, self.resolution = default_steps, default_guidance, resolution
        self.oom_retries = 0  # batches split after a CUDA out-of-memory error (for tests and logs)

    def generate(
        self, task: str, prompts: list[str], seeds: list[int], *, callback=None, **kwargs
    ) -> list[Image.Image]:
        """Images for `prompts`, image i drawn from torch.Generator(seed_i): the same seed gives the same
        image whatever else is in the batch."""
        if task in self.missing:
            raise ValueError(f"this model cannot do {task.replace('_', ' ')}: {self.missing[task]}")
        try:
            return self._call(task, prompts, seeds, callback, kwargs)
        except torch.OutOfMemoryError as err:
            torch.cuda.empty_cache()
            if len(prompts) == 1:
                raise ValueError(
                    "out of GPU memory for a single image; lower the resolution or steps, or start the app "
                    "with --offload (model CPU offload)"
                ) from err
            self.oom_retries += 1
            half = len(prompts) // 2  # retry as two smaller batches
            return self.generate(task, prompts[:half], seeds[:half], callback=callback, **kwargs) + self.generate(
                task, prompts[half:], seeds[half:], callback=callback, **kwargs
            )

    def _call(self, task, prompts, seeds, callback, kwargs) -> list[Image.Image]:
        gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]  # CPU generators: same on any device
        pipe, accepts = self.pipes[task], self.accepts[task]
        if "use_resolution_binning" in accepts:  # PixArt, Sana: sizes are chosen here (HubPipeline._fit)
            kwargs["use_resolution_binning"] = False
        if callback is not None and "callback_on_step_end" in accepts:

            def on_step_end(p, step, timestep, tensors):
                callback(step + 1, p.num_timesteps, None)
                return tensors

            kwargs["callback_on_step_end"] = on_step_end
        elif callback is not None and "callback" in accepts:  # PixArt's older per-step hook
            total = kwargs.get("num_inference_steps", 0)
            kwargs["callback"] = lambda step, timestep, latents: callback(step + 1, total, None)
        return pipe(prompt=prompts, generator=gens, **kwargs).images


DEFAULT_RESOLUTION = 1024  # the pipelines that record no native size (Z-Image) draw at this side by default


def native_resolution(pipe) -> int:
    """The pipeline's native image side: the denoiser's sample size times the VAE's scale factor; a pipeline whose
    transformer records no sample size (FLUX.2, Qwen-Image) has its own `default_sample_size` in latent pixels,
    and one with neither draws at DEFAULT_RESOLUTION."""
    denoiser = pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer  # a module has no truth value
    sample = getattr(denoiser.config, "sample_size", None)
    if isinstance(sample, (tuple, list)):
        sample = sample[0]
    if not isinstance(sample, int):
        sample = getattr(pipe, "default_sample_size", None)
    if not isinstance(sample, int):
        return DEFAULT_RESOLUTION
    return int(sample * pipe.vae_scale_factor)


def size_multiple(pipe) -> int:
    """Image sides must be multiples of this: the VAE's factor times the denoiser's own down-sampling, and at
    least 8 (some diffusers pipelines check for 8 whatever the VAE)."""
    unet = getattr(pipe, "unet", None)
    if unet is not None:
        return max(8, pipe.vae_scale_factor * 2 ** (len(unet.config.block_out_channels) - 1))
    return max(8, pipe.vae_scale_factor * getattr(pipe.transformer.config, "patch_size", 1))
