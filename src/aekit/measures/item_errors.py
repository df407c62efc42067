"""Per-item reconstruction errors: the anomaly scores (units: data/kind.py).

Scores are in [0, 1] pixel units (as the metrics are): `mse` (default), `mae`, or `ssim`
(1 - SSIM, structural dissimilarity). Tables are scored in standardised units (each column: mean
0, std 1 on the training rows), by `mse` or `mae`.
"""

from __future__ import annotations

import torch

from aekit.config.choices import METRICS
from aekit.core.errors import AekitError
from aekit.measures.metrics import ssim_per_channel

METRIC_WORDS = {
    "mse": "reconstruction MSE",
    "mae": "mean absolute reconstruction error",
    "ssim": "structural dissimilarity (1 - SSIM)",
    "mse+latent": "reconstruction MSE plus latent distance (each over its training mean)",
    "ensemble": "ensemble score of the reconstruction error and the distances from the training items",
}


def item_errors(
    recon: torch.Tensor, target: torch.Tensor, metric: str = "mse", mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-item error (N,) of (N, C, H, W) reconstructions against targets, both in [0, 1] units;
    over the valid pixels of `mask` (N, 1, H, W) when given (rasters with nodata)."""
    recon, target = recon.float(), target.float()
    if mask is not None:
        m = mask.to(recon.device)
        n = (m.sum(dim=(1, 2, 3)) * recon.shape[1]).clamp_min(1)
        if metric == "mse":
            return (((recon - target) ** 2) * m).sum(dim=(1, 2, 3)) / n
        if metric == "mae":
            return ((recon - target).abs() * m).sum(dim=(1, 2, 3)) / n
        if metric == "ssim":
            return 1.0 - ssim_per_channel(torch.where(m, recon, target), target, m).mean(dim=1)
    if metric == "mse":
        return ((recon - target) ** 2).mean(dim=(1, 2, 3))
    if metric == "mae":
        return (recon - target).abs().mean(dim=(1, 2, 3))
    if metric == "ssim":
        return 1.0 - ssim_per_channel(recon, target).mean(dim=1)
    raise AekitError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
