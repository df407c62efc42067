"""The `mse+latent` anomaly score: how badly an item is reconstructed AND how far its code lies from
the codes of the training items.

A reconstruction error alone misses items that the model still reconstructs well because they lie
on the learned manifold but far out along it (in tables: every value of a row too large together).
The latent term catches those: the squared Mahalanobis distance of the code from the training
codes (a Gaussian fitted to them). Each term is divided by its typical value on the training items,
so that both weigh the same:

    score = MSE / mean training MSE + Mahalanobis(z)^2 / latent_dim

(1 for a typical training item on each term). benchmarks/anomaly.py measures it against the
reconstruction error alone.
"""

from __future__ import annotations

import torch

from aekit.core.transfer import HostGather
from aekit.data.kind import DataKind
from aekit.measures.item_errors import item_errors

METRIC = "mse+latent"
LATENT_UNITS = "each term 1 for a typical training item"
MAX_ITEMS = 20000  # training items the statistics are taken from (a fixed spread-out subset beyond that)
RIDGE = 1e-6  # added to the covariance's diagonal, relative to its mean variance


@torch.no_grad()
def latent_statistics(model, normalizer, x_all, idx, device, batch_size: int, kind: DataKind, m_all=None) -> dict:
    """The statistics the score needs, from at most MAX_ITEMS training items `idx`: the mean code,
    the inverse covariance of the codes and the mean reconstruction MSE (JSON-ready lists)."""
    if len(idx) > MAX_ITEMS:
        idx = idx[torch.linspace(0, len(idx) - 1, MAX_ITEMS).round().long()]
    zs, mses = [], []
    xs, ms = HostGather(x_all, device), None if m_all is None else HostGather(m_all, device)
    model.eval()
    for i in range(0, len(idx), batch_size):
        part = idx[i : i + batch_size]
        xb, mb = xs(part), None if ms is None else ms(part)
        out = model(normalizer.normalize(xb))
        recon, target = kind.measured(normalizer, out.recon, xb)
        mses.append(item_errors(recon, target, "mse", mb).cpu().double())  # MPS: no float64
        zs.append(out.z.cpu().double())
    model.train()
    z = torch.cat(zs)
    mean = z.mean(0)
    cov = torch.cov(z.T, correction=0).reshape(z.shape[1], z.shape[1]) if len(z) > 1 else torch.eye(z.shape[1])
    ridge = RIDGE * max(float(cov.diagonal().mean()), 1e-12)
    precision = torch.linalg.pinv(cov + ridge * torch.eye(len(cov)), hermitian=True)
    return {
        "mean": mean.tolist(),
        "precision": precision.tolist(),
        "mse_scale": max(float(torch.cat(mses).mean()), 1e-12),
        "n": len(z),
    }


def combined(mse: torch.Tensor, z: torch.Tensor, stats: dict) -> torch.Tensor:
    """The score of items with per-item `mse` (N,) and codes `z` (N, latent_dim), float64 on the CPU
    (whatever the device of the inputs: MPS has no float64)."""
    d = z.cpu().double() - torch.tensor(stats["mean"], dtype=torch.float64)
    precision = torch.tensor(stats["precision"], dtype=torch.float64)
    distance = (d @ precision * d).sum(1) / d.shape[1]
    return mse.cpu().double() / stats["mse_scale"] + distance
