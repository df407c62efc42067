"""What every model returns, so the trainer never asks which kind of model it has."""

from __future__ import annotations

from typing import NamedTuple

import torch


class AEOutput(NamedTuple):
    """recon: (B, C, H, W) in normalised units; z: (B, latent); extra_loss: terms added to the
    reconstruction loss (empty for a plain autoencoder, e.g. {"kl": ...} for a VAE)."""

    recon: torch.Tensor
    z: torch.Tensor
    extra_loss: dict[str, torch.Tensor] = {}
