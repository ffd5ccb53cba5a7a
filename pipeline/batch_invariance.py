"""A request's image must not depend on the requests batched with it: the same prompt and seed give the same
bits alone and in any batch (docs/share-link.md).

A BLAS picks its matrix-product kernel by the number of rows, and kernels round differently. The layers that
see one row per image (a diffusion UNet's time and prompt embeddings) so changed in the last bit with the
batch size, and the odd pixel by one level after sampling. `rowwise_linears` runs those layers row by row.
The UNet's other layers' row count is pixels or tokens times images, computed in one kernel whatever the
batch; prompts are encoded one by one and padded to one length (pipeline/encoders.py). The one-step GAN runs
image by image instead (its small convolutions are chosen by batch size too; pipeline/gan.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


class RowwiseLinear(torch.nn.Linear):
    """A Linear that multiplies each row on its own: a row's result does not depend on the rows beside it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.linear(row, self.weight, self.bias) for row in x.split(1)])


def rowwise_linears(model: torch.nn.Module, per_image: Callable[[str], bool]) -> torch.nn.Module:
    """Make the Linear layers of `model` whose names `per_image` picks `RowwiseLinear`s (the same weights and
    state-dict keys). Returns `model`."""
    for name, module in list(model.named_modules()):
        if type(module) is torch.nn.Linear and per_image(name):
            rowwise = RowwiseLinear(module.in_features, module.out_features, module.bias is not None, device="meta")
            rowwise.weight, rowwise.bias = module.weight, module.bias
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, rowwise)
    return model
