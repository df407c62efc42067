"""What every model returns, and the loss a plain autoencoder trains on.

The trainer never asks which kind of model it has: it calls `loss_terms(model)` on the model's
output, which uses the model's own `loss_terms` method when it has one (VAE, DAE) and the mean
squared error otherwise.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class AEOutput(NamedTuple):
    """recon: (B, C, H, W) in normalised units; z: (B, latent), the embedding; stats: what the
    model's loss needs besides (e.g. a VAE's per-dimension KL)."""

    recon: torch.Tensor
    z: torch.Tensor
    stats: dict[str, torch.Tensor] = {}


def mse_terms(out: AEOutput, target: torch.Tensor, mask: torch.Tensor | None = None, epoch: float = math.inf) -> dict:
    """Mean squared error over the (valid, where `mask` is given) values, in normalised units."""
    sq = (out.recon.float() - target) ** 2
    if mask is None:
        return {"loss": sq.mean()}
    mask = mask.expand_as(sq)
    return {"loss": (sq * mask).sum() / mask.sum().clamp_min(1)}


def loss_fn(model: torch.nn.Module):
    """The model's `loss_terms(out, target, mask=None, epoch=inf) -> {"loss": ..., other terms}`."""
    inner = getattr(model, "module", model)  # DistributedDataParallel wraps the module,
    inner = getattr(inner, "_orig_mod", inner)  # and torch.compile too
    return getattr(inner, "loss_terms", mse_terms)
