"""Principal components: the linear baseline every run is compared with, and the default model's
starting point (its linear path is initialised from them, so it starts where PCA ends)."""

from __future__ import annotations

from typing import NamedTuple

import torch

MAX_VALUES = 25_000_000  # PCA is fitted on a seeded subsample of at most this many values (and 8192 items)


class PCA(NamedTuple):
    mean: torch.Tensor  # (D,)
    components: torch.Tensor  # (D, k), orthonormal columns
    variance: torch.Tensor | None = None  # (k,) variance of the data along each component

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.mean) @ self.components  # (N, k)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return (self.encode(x) @ self.components.T + self.mean).view_as(x)


def fit_pca(x: torch.Tensor, k: int, seed: int = 0) -> PCA:
    """PCA of (N, ...) float data with k components (randomised SVD; exact enough for k << D)."""
    flat = x.flatten(1)
    return fit_pca_flat(flat, k, seed)


def pca_rows(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """Indices of the seeded subsample of n items (of d values each) that PCA is fitted on."""
    rows = max(min(512, n), min(8192, MAX_VALUES // max(d, 1), n))
    if rows >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:rows].sort().values


def fit_pca_flat(flat: torch.Tensor, k: int, seed: int = 0) -> PCA:
    n, d = flat.shape
    small = min(n, d) <= 2048  # exact SVD in float64; else randomised SVD in float32 (one copy)
    flat = flat.double() if small else flat.float()
    mean = flat.mean(0, dtype=torch.float64).to(flat.dtype)
    centered = flat - mean
    k_eff = min(k, n, d)
    if small:
        _, sv, vh = torch.linalg.svd(centered, full_matrices=False)
        comps = vh[:k_eff].T
    else:
        with torch.random.fork_rng():  # seeded, without touching the caller's random state
            torch.manual_seed(seed)
            _, sv, v = torch.svd_lowrank(centered, q=min(k_eff + 16, n, d), niter=6)
        comps = v[:, :k_eff]
    variance = sv[:k_eff] ** 2 / max(n - 1, 1)
    if k_eff < k:  # fewer items than components: pad with zero columns (unused directions)
        comps = torch.cat([comps, torch.zeros(d, k - k_eff, dtype=comps.dtype)], 1)
        variance = torch.cat([variance, torch.zeros(k - k_eff, dtype=variance.dtype)])
    return PCA(mean.float(), comps.float(), variance.float())
