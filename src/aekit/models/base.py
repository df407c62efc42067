"""The model protocol: what every model is, returns, and may tell the trainer.

The trainer never asks which kind of model it has. Every registered model is an `AEModule`: a
plain `nn.Module` whose `forward` returns an `AEOutput` and whose `loss_terms` (mean squared error
unless the model says otherwise, e.g. a VAE's ELBO) is what training minimises. The optional
hooks below have neutral defaults; a model overrides those it needs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn


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


class AEModule(nn.Module):
    """Base of every model. Required: `encode(x) -> z` (B, latent), `decode(z) -> recon` and
    `forward(x) -> AEOutput`, all in normalised units (B, C, H, W). Optional, with defaults:

    - `loss_terms(out, target, mask=None, epoch=inf) -> {"loss": ..., other terms}`: the
      objective; every term is logged per epoch (train_*, val_*);
    - `stochastic`: True when the objective is random (a sampled code, input noise), so that
      validation scores it with a fixed seed;
    - `lr_scales() -> {parameter-name prefix: factor}`: slower learning rates for some parameters;
    - `use_normalizer(normalizer)`: called once before training, for models that also work in
      pixel units (noise in [0, 1] units, a Bernoulli likelihood);
    - `init_from_pca(mean, components, variance)`: called once before training with the PCA of the
      training data, so that training starts where the linear baseline ends;
    - `out.stats["kl"]` (B, latent): a posterior's KL per dimension, reported as kl_per_dim.
    """

    stochastic: bool = False

    def loss_terms(self, out: AEOutput, target: torch.Tensor, mask=None, epoch: float = math.inf) -> dict:
        return mse_terms(out, target, mask, epoch)

    def lr_scales(self) -> dict[str, float]:
        return {}

    def use_normalizer(self, normalizer) -> None:
        return None

    def init_from_pca(self, mean: torch.Tensor, components: torch.Tensor, variance=None) -> None:
        return None


def loss_fn(model: torch.nn.Module):
    """The model's `loss_terms(out, target, mask=None, epoch=inf) -> {"loss": ..., other terms}`."""
    inner = getattr(model, "module", model)  # DistributedDataParallel wraps the module,
    inner = getattr(inner, "_orig_mod", inner)  # and torch.compile too
    return getattr(inner, "loss_terms", mse_terms)
