"""The variational autoencoder, around any backbone (models/wrapper.py).

`VariationalAutoencoder` (Kingma & Welling): the backbone's code is the posterior mean, a
linear head on the same features gives the log-variance (soft-clamped to [-10, 10] so exp()
never overflows); training samples z = mu + sigma * eps. Its loss is summed over the pixels of a
sample and averaged over the batch (so the balance with the KL term does not depend on image
size): Gaussian with the variance that maximises the likelihood (the batch MSE: "optimal
sigma", Rybkin et al. 2021) in normalised units, or Bernoulli (`bce`, data in [0, 1])
with the decoder's output read as logits of the pixel value; plus beta * KL, the KL weight
rising linearly over `kl_warmup_epochs` and each dimension's KL floored at `free_bits` nats.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from aekit.core.errors import AekitError
from aekit.models.base import AEOutput
from aekit.models.registry import register_variant
from aekit.models.wrapper import BackboneWrapper

LOGVAR_LIMIT = 10.0


class VariationalAutoencoder(BackboneWrapper):
    stochastic = True  # validation scores the sampled objective, not just the posterior mean

    def __init__(
        self,
        backbone: nn.Module,
        latent_dim: int,
        beta: float = 1.0,
        kl_warmup_epochs: float = 5.0,
        free_bits: float = 0.0,
        recon_loss: str = "mse",
    ):
        super().__init__(backbone)
        if recon_loss not in ("mse", "bce"):
            raise AekitError(f"unknown recon_loss {recon_loss!r}; choose mse or bce")
        self.beta, self.kl_warmup_epochs, self.free_bits = beta, kl_warmup_epochs, free_bits
        self.recon_loss = recon_loss
        self.to_logvar = nn.Linear(backbone.feature_dim, latent_dim)
        nn.init.zeros_(self.to_logvar.weight)
        nn.init.zeros_(self.to_logvar.bias)

    def init_from_pca(self, mean: torch.Tensor, components: torch.Tensor, variance=None) -> None:
        """Start at PCA with whitened codes, which the prior N(0, I) fits (probabilistic PCA):
        unwhitened codes would leave samples from the prior near the mean image."""
        if self.recon_loss == "bce" or not hasattr(self.backbone, "init_from_pca"):
            return  # Bernoulli logits are not PCA's pixel units: train from scratch
        std = variance.sqrt() if variance is not None else None
        self.backbone.init_from_pca(mean, components, code_std=std)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, feat = self.backbone.encode_features(x)
        logvar = LOGVAR_LIMIT * torch.tanh(self.to_logvar(feat) / LOGVAR_LIMIT)  # smooth clamp
        return mu, logvar

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean: the embedding."""
        return self.posterior(x)[0]

    def _decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.backbone.decode(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self._decode_logits(z)
        return self.from_unit(torch.sigmoid(out.float())) if self.recon_loss == "bce" else out

    def forward(self, x: torch.Tensor) -> AEOutput:
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        out = self._decode_logits(z)
        recon = self.from_unit(torch.sigmoid(out.float())) if self.recon_loss == "bce" else out
        kl = 0.5 * (mu.float() ** 2 + logvar.float().exp() - 1.0 - logvar.float())  # (B, latent), nats
        return AEOutput(recon, mu, stats={"kl": kl, "logits": out})

    def kl_weight(self, epoch: float) -> float:
        if self.kl_warmup_epochs <= 0:
            return self.beta
        return self.beta * min(1.0, epoch / self.kl_warmup_epochs)

    def loss_terms(self, out: AEOutput, target: torch.Tensor, mask=None, epoch: float = math.inf) -> dict:
        """Negative ELBO per sample (summed over pixels and latent dimensions), batch mean."""
        if self.recon_loss == "bce":
            per_pixel = F.binary_cross_entropy_with_logits(
                out.stats["logits"].float(), self.to_unit(target).clamp(0, 1), reduction="none"
            )
            if mask is not None:
                per_pixel = per_pixel * mask
        else:
            sq = (out.recon.float() - target) ** 2
            if mask is not None:
                sq = sq * mask
            # Gaussian likelihood with the variance that maximises it: the batch's mean squared
            # error (the "optimal sigma" of Rybkin et al. 2021). A fixed unit variance would say
            # the noise is as large as the data's spread and let the KL term wash details out.
            var = (sq.sum() / (mask.expand_as(sq).sum() if mask is not None else sq.numel())).detach()
            var = var.clamp_min(1e-6)
            per_pixel = 0.5 * (sq / var + var.log() + math.log(2 * math.pi))
            if mask is not None:
                per_pixel = per_pixel * mask
        recon = per_pixel.flatten(1).sum(1).mean()
        kl_dims = out.stats["kl"].mean(0)  # (latent,)
        kl = kl_dims.sum()
        kl_used = kl_dims.clamp(min=self.free_bits).sum() if self.free_bits > 0 else kl
        loss = recon + self.kl_weight(epoch) * kl_used
        return {"loss": loss, "recon": recon.detach(), "kl": kl.detach(), "elbo": -(recon + kl).detach()}


@register_variant("vae")
def vae(backbone: nn.Module, latent_dim: int, **options) -> VariationalAutoencoder:
    return VariationalAutoencoder(backbone, latent_dim, **options)
