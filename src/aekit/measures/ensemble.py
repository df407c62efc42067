"""The `ensemble` anomaly score: several ways an item can be unlike the training items, each over its
typical value on held-out normal items, summed. The default score of `aekit score` for images and tables.

A reconstruction error alone misses what the model reconstructs well although it never saw it (a
well-trained autoencoder of one digit also reconstructs others), and a distance alone misses a
defect that changes few pixels. Each part looks at the item another way:

- images: `mse` and `ssim` (1 - SSIM) of the reconstruction; `code_knn`, the mean distance of the
  item's code to its K nearest training codes, in the space whitened by the training codes'
  covariance (the latent statistics of mse+latent); `input_knn`, the same for the normalised input,
  average-pooled to at most MAX_VIEW values. SSIM is left out for data in their own units (no fixed
  range), the input view for rasters with nodata (filled pixels would count as data).
- tables: `mse` of the reconstruction in standardised units; `code_distance`, the Mahalanobis
  distance of the code from the training codes (over latent_dim); `spread`, the row's mean squared
  standardised value: how far it lies from the typical row, which rows unlike the training ones but
  on the same manifold (a benign tumour for a model of malignant ones) show where the others do not.

score = sum over parts of part / (its mean over the calibration items): about the number of parts
for a typical normal item. The K-nearest-neighbour references are at most MAX_REFERENCES training
items (a seeded sample), stored in RUN/reference.safetensors; the means, in model.json
("ensemble"). benchmarks/oneclass.py measured each part and their sums against the baselines
(BENCHMARKS.md, "One-class detection").
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from aekit.core.transfer import HostGather
from aekit.data.kind import DataKind
from aekit.measures.item_errors import item_errors

METRIC = "ensemble"
UNITS = "each part 1 for a typical normal item"
K_NEIGHBOURS = 5
MAX_REFERENCES = 2048  # training items the kNN parts compare with
MAX_VIEW = 1024  # values of the pooled input view
REFERENCE_FILE = "reference.safetensors"


def parts_of(kind: DataKind) -> tuple[str, ...]:
    """The parts of the score for data of this kind (see the module's docstring)."""
    if kind.table:
        return ("mse", "code_distance", "spread")
    parts = ["mse"] + (["ssim"] if kind.bounded else []) + ["code_knn"]
    return (*parts, *([] if kind.masked else ["input_knn"]))


def input_view(xn: torch.Tensor) -> torch.Tensor:
    """(N, D) the normalised input average-pooled so that D <= about MAX_VIEW, float32."""
    c, h, w = xn.shape[1:]
    f = max(1, math.ceil(math.sqrt(c * h * w / MAX_VIEW)))
    if f > 1:
        xn = F.adaptive_avg_pool2d(xn.float(), (max(1, math.ceil(h / f)), max(1, math.ceil(w / f))))
    return xn.float().reshape(len(xn), -1)


def whitening(latent: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, W) with |(z - mean) @ W|^2 the Mahalanobis distance under the latent statistics."""
    mean = torch.tensor(latent["mean"], dtype=torch.float64)
    vals, vecs = torch.linalg.eigh(torch.tensor(latent["precision"], dtype=torch.float64))
    return mean, vecs * vals.clamp_min(0).sqrt()


def whiten(z: torch.Tensor, white: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    mean, w = white
    return ((z.cpu().double() - mean) @ w).float()


def knn_distance(queries: torch.Tensor, refs: torch.Tensor, k: int = K_NEIGHBOURS, skip_self: bool = False):
    """(N,) mean distance of each query to its k nearest references (the nearest left out with
    `skip_self`: queries that are references themselves), on the CPU in float32."""
    q, r = queries.float().cpu(), refs.float().cpu()
    skip = int(skip_self and len(r) > 1)  # a single reference is the only neighbour there is
    k = max(1, min(k, len(r) - skip))
    d = torch.cdist(q, r).topk(k + skip, dim=1, largest=False).values
    return d[:, skip:].mean(1)


def parts(names, out, recon, target, xn, mask, white, refs: dict, skip_self: bool = False) -> dict:
    """The raw parts `names` (N,) of a batch: `out` the model's output on the normalised batch `xn`,
    `recon` and `target` in the kind's units, `white` the latent whitening, `refs` the references."""
    got = {}
    for name in names:
        if name in ("mse", "ssim"):
            got[name] = item_errors(recon, target, name, mask).float().cpu()
        elif name == "code_knn":
            got[name] = knn_distance(whiten(out.z, white), refs["codes"], skip_self=skip_self)
        elif name == "input_knn":
            got[name] = knn_distance(input_view(xn), refs["inputs"], skip_self=skip_self)
        elif name == "code_distance":
            w = whiten(out.z, white)
            got[name] = (w**2).sum(1) / w.shape[1]
        elif name == "spread":
            got[name] = (xn.float() ** 2).mean(dim=(1, 2, 3)).cpu()
    return got


def combine(raw: dict, scales: dict) -> torch.Tensor:
    """The score: each part over its scale, summed (float64, on the CPU)."""
    return sum(raw[name].cpu().double() / scales[name] for name in scales)


@torch.no_grad()
def references(model, normalizer, x_all, train_idx, device, batch_size: int, latent: dict, seed: int) -> dict:
    """The kNN references: the whitened codes and pooled inputs of at most MAX_REFERENCES training
    items (a seeded sample), on the CPU (codes float32, inputs float16: RUN/reference.safetensors)."""
    idx = train_idx
    if len(idx) > MAX_REFERENCES:
        pick = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))[:MAX_REFERENCES]
        idx = idx[pick.sort().values]
    white = whitening(latent)
    codes, inputs = [], []
    xs = HostGather(x_all, device)
    model.eval()
    for i in range(0, len(idx), batch_size):
        xn = normalizer.normalize(xs(idx[i : i + batch_size]))
        codes.append(whiten(model.encode(xn), white))
        inputs.append(input_view(xn).cpu().half())
    model.train()
    return {"codes": torch.cat(codes).contiguous(), "inputs": torch.cat(inputs).contiguous(), "items": idx}


def scales_of(raw: dict) -> dict:
    """Each part's mean over the calibration items (the divisor that makes a typical item 1)."""
    return {name: max(float(v.cpu().double().mean()), 1e-12) for name, v in raw.items()}
