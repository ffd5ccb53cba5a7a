"""The one-step GAN generators: an image in one pass, one generator for each world.

- `TextToImageGAN` (shapes, 32 px): noise and the language model's states in. A learned 4 x 4 start, three
  upsampling blocks whose normalization is modulated by a style vector w (made from noise and the pooled prompt
  vector, as in StyleGAN), and cross-attention from image positions to the prompt's per-token states at 8 and
  16 px (as in StyleGAN-T / GigaGAN), so that "left of" and "three" reach the layout.
- `LayoutGAN` (icons, 64 px): noise and the icons layout stage's map in (`generate_layout_step`).

The discriminators (train/gan.py, train/icons_gan.py) are not shipped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn import functional as F

from pipeline.encoders import EncodedPrompts
from pipeline.worlds.icons.layout import (
    LAYOUT_FILE,
    LAYOUT_INPUTS,
    LayoutEncoder,
    load_layout_encoder,
    save_layout_encoder,
)


@dataclass(frozen=True)
class GANConfig:
    resolution: int = 32  # output pixels (square)
    z_dim: int = 64  # noise size
    cond_dim: int = 384  # the prompt encoder's hidden size
    w_dim: int = 256  # style vector size
    channels: tuple[int, ...] = (192, 128, 64, 32)  # at 4, 8, 16, 32 px: narrow where pixels are many
    attention: tuple[bool, ...] = (False, True, True, False)  # cross-attention to the prompt at each size
    heads: int = 4


GAN_SIZES: dict[str, GANConfig] = {
    "small": GANConfig(),
    "tiny": GANConfig(z_dim=16, w_dim=32, channels=(32, 32, 16, 16), attention=(False, True, False, False), heads=2),
}


class TextCrossAttention(nn.Module):
    """Image positions attend to the prompt's token states; residual. Written out (not SDPA) so the
    discriminator's R1 penalty can differentiate through it twice."""

    def __init__(self, channels: int, cond_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(8, channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(cond_dim, 2 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(self.norm(x).flatten(2).transpose(1, 2))  # (B, HW, C)
        k, v = self.kv(states).chunk(2, dim=-1)  # (B, T, C) each
        q, k, v = (t.reshape(b, -1, self.heads, c // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, *, hs)
        scores = q @ k.transpose(-1, -2) / (c // self.heads) ** 0.5  # (B, nh, HW, T)
        scores = scores.masked_fill((mask == 0)[:, None, None, :], float("-inf"))
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, h * w, c)
        return x + self.out(out).transpose(1, 2).reshape(b, c, h, w)


class ModulatedBlock(nn.Module):
    """Upsample x2, two 3x3 convs whose group-normalized activations are scaled and shifted by w."""

    def __init__(self, c_in: int, c_out: int, w_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm1 = nn.GroupNorm(8, c_out, affine=False)
        self.norm2 = nn.GroupNorm(8, c_out, affine=False)
        self.style = nn.Linear(w_dim, 4 * c_out)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s1, b1, s2, b2 = self.style(w)[:, :, None, None].chunk(4, dim=1)
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.silu(self.norm1(self.conv1(x)) * (1 + s1) + b1)
        return F.silu(self.norm2(self.conv2(x)) * (1 + s2) + b2)


class TextToImageGAN(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        resolution: int = 32,
        z_dim: int = 64,
        cond_dim: int = 384,
        w_dim: int = 256,
        channels: tuple[int, ...] = (192, 128, 64, 32),
        attention: tuple[bool, ...] = (False, True, True, False),
        heads: int = 4,
    ):
        super().__init__()
        self.mapping = nn.Sequential(
            nn.Linear(z_dim + cond_dim, w_dim), nn.SiLU(), nn.Linear(w_dim, w_dim), nn.SiLU(), nn.Linear(w_dim, w_dim)
        )
        self.start = nn.Parameter(torch.randn(1, channels[0], 4, 4))
        self.start_style = nn.Linear(w_dim, channels[0])
        self.attn = nn.ModuleList(
            [TextCrossAttention(c, cond_dim, heads) if a else nn.Identity() for c, a in zip(channels, attention)]
        )
        self.blocks = nn.ModuleList([ModulatedBlock(a, b, w_dim) for a, b in zip(channels[:-1], channels[1:])])
        self.to_rgb = nn.Conv2d(channels[-1], 3, 1)

    def forward(self, z: torch.Tensor, cond: EncodedPrompts) -> torch.Tensor:
        """z: (B, z_dim) noise -> images (B, 3, R, R) in [-1, 1]."""
        states, mask = cond.states.to(z.dtype), cond.mask
        w = self.mapping(torch.cat([z, cond.pooled.to(z.dtype)], dim=1))  # (B, w_dim)
        x = self.start.expand(len(z), -1, -1, -1) * (1 + self.start_style(w)[:, :, None, None])  # (B, C0, 4, 4)
        for i, attn in enumerate(self.attn):
            if i > 0:
                x = self.blocks[i - 1](x, w)  # (B, C_i, 4 * 2^i, 4 * 2^i)
            if not isinstance(attn, nn.Identity):
                x = attn(x, states, mask)
        return torch.tanh(self.to_rgb(x))


class StyledResBlock(nn.Module):
    """Two 3x3 convs whose group-normalized activations are scaled and shifted by the style w; residual."""

    def __init__(self, c_in: int, c_out: int, w_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm1 = nn.GroupNorm(8, c_in, affine=False)
        self.norm2 = nn.GroupNorm(8, c_out, affine=False)
        self.style = nn.Linear(w_dim, 2 * (c_in + c_out))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.splits = (c_in, c_in, c_out, c_out)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s1, b1, s2, b2 = self.style(w)[:, :, None, None].split(self.splits, dim=1)
        h = self.conv1(F.silu(self.norm1(x) * (1 + s1) + b1))
        h = self.conv2(F.silu(self.norm2(h) * (1 + s2) + b2))
        return self.skip(x) + h


class LayoutGAN(ModelMixin, ConfigMixin):
    """The icons world's one-step GAN: noise and the layout stage's map (pipeline/worlds/icons/layout.py: each thing's
    code and sketch in its box, the background's code) in, a 64 px image out. An image-to-image generator in the
    manner of pix2pix / SPADE: the map says what goes where, the style vector made from the noise says what the
    map leaves open (the background when the prompt does not name one). A small UNet over the map's grid: 32 ->
    16 -> 32 cells, each cell unfolded into `patch` x `patch` pixels at the end."""

    @register_to_config
    def __init__(
        self,
        resolution: int = 64,
        patch: int = 2,
        layout_inputs: int = LAYOUT_INPUTS,
        z_dim: int = 64,
        w_dim: int = 128,
        channels: tuple[int, ...] = (64, 128),
    ):
        super().__init__()
        c0, c1 = channels
        self.mapping = nn.Sequential(
            nn.Linear(z_dim, w_dim), nn.SiLU(), nn.Linear(w_dim, w_dim), nn.SiLU(), nn.Linear(w_dim, w_dim)
        )
        self.conv_in = nn.Conv2d(layout_inputs + 2, c0, 3, padding=1)  # + the cells' x, y
        self.encode = StyledResBlock(c0, c0, w_dim)
        self.down = nn.Conv2d(c0, c1, 4, 2, 1)
        self.middle = nn.ModuleList([StyledResBlock(c1, c1, w_dim), StyledResBlock(c1, c1, w_dim)])
        self.up = nn.Conv2d(c1, c0, 3, padding=1)
        self.decode = StyledResBlock(2 * c0, c0, w_dim)
        self.to_rgb = nn.Conv2d(c0, 3 * patch**2, 3, padding=1)

    def forward(self, z: torch.Tensor, layout_map: torch.Tensor) -> torch.Tensor:
        """z: (B, z_dim) noise, layout_map: (B, layout_inputs, R / patch, R / patch) -> (B, 3, R, R) in [-1, 1]."""
        w = self.mapping(z)
        n = layout_map.shape[-1]
        line = (torch.arange(n, device=z.device, dtype=z.dtype) + 0.5) / n * 2 - 1
        y, x = torch.meshgrid(line, line, indexing="ij")
        coords = torch.stack([x, y]).expand(len(z), -1, -1, -1)
        h0 = self.encode(self.conv_in(torch.cat([layout_map.to(z.dtype), coords], dim=1)), w)  # (B, C0, n, n)
        h = self.down(h0)  # (B, C1, n / 2, n / 2)
        for block in self.middle:
            h = block(h, w)
        h = self.up(F.interpolate(h, scale_factor=2, mode="nearest"))  # (B, C0, n, n)
        h = self.decode(torch.cat([h, h0], dim=1), w)
        return torch.tanh(F.pixel_shuffle(self.to_rgb(F.silu(h)), self.config.patch))


def seeded_z(seeds: list[int], z_dim: int, device) -> torch.Tensor:
    """One noise vector per seed, each from its own generator: an image depends on its seed only."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds]).to(device)


@torch.inference_mode()
def generate_step(gan: TextToImageGAN, cond: EncodedPrompts, seeds: list[int]) -> torch.Tensor:
    """The GAN's one step: images (B, 3, R, R) in [0, 1] for B prompts and seeds."""
    if len(seeds) != cond.states.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {cond.states.shape[0]} prompts; give one seed per prompt")
    device, dtype = gan.device, gan.dtype
    cond = EncodedPrompts(cond.states.to(device, dtype), cond.mask.to(device), cond.pooled.to(device, dtype), [])
    x = gan(seeded_z(seeds, gan.config.z_dim, device).to(dtype), cond)
    return ((x.float().clamp(-1, 1) + 1) / 2).cpu()


@torch.inference_mode()
def generate_layout_step(gan: LayoutGAN, layout_map: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """The icons GAN's one step: images (B, 3, R, R) in [0, 1] for B layout maps and seeds."""
    device, dtype = gan.device, gan.dtype
    x = gan(seeded_z(seeds, gan.config.z_dim, device).to(dtype), layout_map.to(device, dtype))
    return ((x.float().clamp(-1, 1) + 1) / 2).cpu()


def build_gan(cfg: GANConfig) -> TextToImageGAN:
    return TextToImageGAN(**asdict(cfg))


def save(
    folder: str | Path,
    gan: TextToImageGAN | LayoutGAN,
    *,
    encoder: str,
    card: dict,
    layout_encoder: LayoutEncoder | None = None,
) -> None:
    """The generator (fp16 safetensors under gan/) and, for the icons GAN, the layout encoder whose map it reads."""
    folder = Path(folder)
    gan.to(torch.float16).save_pretrained(folder / "gan", max_shard_size="9MB")
    gan.to(torch.float32)
    meta = {"generator": "gan", "encoder": encoder, "card": card}
    if layout_encoder is not None:
        save_layout_encoder(layout_encoder, folder)
        meta["world"] = "icons"
    (folder / "wordbrush.json").write_text(json.dumps(meta, indent=2) + "\n")


def load(folder: str | Path, *, device: str = "cpu", dtype: torch.dtype = torch.float32) -> TextToImageGAN | LayoutGAN:
    kind = LayoutGAN if (Path(folder) / LAYOUT_FILE).is_file() else TextToImageGAN  # it draws from a layout map
    gan = kind.from_pretrained(Path(folder) / "gan", use_safetensors=True)
    # channels_last: oneDNN's faster convolutions on the CPU, the same pixels
    return gan.to(device, dtype, memory_format=torch.channels_last).eval()


def load_generator(folder: str | Path, *, device: str = "cpu") -> GANGenerator:
    """The GAN generator a model folder holds: the shapes world's text-to-image GAN, or the icons world's
    layout GAN with its layout encoder."""
    model, world = load(folder, device=device), json.loads((Path(folder) / "wordbrush.json").read_text()).get("world")
    if isinstance(model, LayoutGAN):
        return GANGenerator(model, layout_encoder=load_layout_encoder(folder, device=device), world=world)
    return GANGenerator(model, world=world or "shapes")


# ----------------------------------------------------------------------------------------------------
# The generator: what the embedded pipeline (pipeline/core.py) calls


class GANGenerator:
    """The one-step GAN behind the same call; steps and guidance do not apply (it runs once, unguided)."""

    kind = "gan"
    default_steps = 1
    default_guidance = 0.0
    plans_layout = False  # no cross-attention to steer: the shapes layout stage does not apply

    def __init__(
        self, model: TextToImageGAN | LayoutGAN, *, layout_encoder: LayoutEncoder | None = None, world: str = "shapes"
    ):
        self.model = model
        self.resolution = model.config.resolution
        self.world = world  # the embedded world it draws
        self.layout_encoder = layout_encoder  # the icons GAN's: it draws from the layout stage's map alone
        self.plans_background = layout_encoder is not None  # and the layout stage picks an unsaid background

    def generate(
        self,
        cond,
        uncond,
        *,
        seeds,
        steps,
        guidance,
        callback=None,
        init=None,
        strength=1.0,
        mask=None,
        resample=1,
        regions=None,
        layout=None,
    ) -> torch.Tensor:
        if regions is not None:
            raise ValueError("the GAN generator has no cross-attention for a layout; plan layouts for diffusion only")
        if init is not None:
            raise ValueError(
                "the GAN generator draws from text alone; use the diffusion generator for style transfer and inpainting"
            )
        # Image by image: oneDNN picks its convolution by batch size, and its kernels round differently, so a request
        # gets the same bits alone as in any batch only when each image runs alone (docs/speed.md has the cost).
        if self.layout_encoder is not None:
            if layout is None:
                raise ValueError("the icons GAN draws from the layout stage's map; give it the prompts' layout")
            grid = self.resolution // self.model.config.patch
            maps = self.layout_encoder.per_image(layout.to(self.model.device), grid, self.resolution)
            x = torch.cat([generate_layout_step(self.model, m, [seed]) for m, seed in zip(maps, seeds)])
        else:
            x = torch.cat([generate_step(self.model, cond[i : i + 1], [seed]) for i, seed in enumerate(seeds)])
        if callback is not None:
            callback(1, 1, x)
        return x
