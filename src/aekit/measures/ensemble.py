"""The `ensemble` anomaly score: several ways an item can be unlike the training items, each put on
a common scale by its distribution over held-out normal items, combined. The default score of
`aekit score` for images and tables.

A reconstruction error alone misses what the model reconstructs well although it never saw it (a
well-trained autoencoder of one digit also reconstructs others), and a distance alone misses a
defect that changes few pixels. Each part looks at the item another way:

- images: `mse` and `ssim` (1 - SSIM) of the reconstruction; `local`, the largest mean squared
  error over windows of a side of an eighth of the image's smaller side (a scratch or a stain
  that the whole image's mean dilutes); `code_knn`, the mean distance of the item's code to its K
  nearest training codes, in the space whitened by the training codes' covariance (the latent
  statistics of mse+latent); `input_knn`, the same for the normalised input, average-pooled to at
  most MAX_VIEW values. SSIM is left out for data in their own units (no fixed range), the input
  view for rasters with nodata (filled pixels would count as data).
- tables: `mse` of the reconstruction in standardised units; `code_distance`, the Mahalanobis
  distance of the code from the training codes (over latent_dim); `spread`, the row's mean squared
  standardised value: how far it lies from the typical row, which rows unlike the training ones but
  on the same manifold (a benign tumour for a model of malignant ones) show where the others do not.

Combination (`combine` in model.json "ensemble"):
- "max" (images): each part as a robust z-score, (part - its median) / its interquartile range
  over the calibration items, and the item's score is the largest of them: an item is as
  anomalous as its most anomalous part, so one part that fires (a local defect) is not averaged
  away by the others. About 0 for a typical normal item.
- "sum" (tables, and the images of earlier runs, which have no `combine`): each part over its
  mean on the calibration items, summed: about the number of parts for a typical normal item. On
  tables the maximum was worse.
The K-nearest-neighbour references are at most MAX_REFERENCES training items (a seeded sample),
stored in RUN/reference.safetensors; the calibration, in model.json ("ensemble").
benchmarks/oneclass.py measured each part and their combinations against the baselines
(BENCHMARKS.md, "One-class detection").
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from aekit.core.transfer import HostGather
from aekit.data.kind import DataKind
from aekit.measures.item_errors import item_errors

METRIC = "ensemble"
UNITS = "robust z: the largest over its parts of (part - median) / interquartile range on held-out normal items"
SUM_UNITS = "each part 1 for a typical normal item"  # combine "sum": tables, and images of earlier runs
K_NEIGHBOURS = 5
MAX_REFERENCES = 2048  # training items the kNN parts compare with
MAX_VIEW = 1024  # values of the pooled input view
REFERENCE_FILE = "reference.safetensors"


def parts_of(kind: DataKind) -> tuple[str, ...]:
    """The parts of the score for data of this kind (see the module's docstring)."""
    if kind.table:
        return ("mse", "code_distance", "spread")
    parts = ["mse"] + (["ssim"] if kind.bounded else []) + ["local", "code_knn"]
    return (*parts, *([] if kind.masked else ["input_knn"]))


def input_view(xn: torch.Tensor) -> torch.Tensor:
    """(N, D) the normalised input average-pooled in f x f windows so that D <= about MAX_VIEW
    (the last window of a side that f does not divide averages what it holds), float32."""
    c, h, w = xn.shape[1:]
    f = max(1, math.ceil(math.sqrt(c * h * w / MAX_VIEW)))
    if f > 1:
        xn = F.avg_pool2d(xn.float(), f, f, ceil_mode=True, count_include_pad=False)
    return xn.float().flatten(1)


def window_of(h: int, w: int) -> int:
    """The side of the `local` part's windows for H x W images: an eighth of the smaller side, rounded
    half up, at least 1 (4 for 28x28 and 32x32, 1 for 8x8, 16 for 128x128)."""
    return max(1, (min(h, w) + 4) // 8)


def local_errors(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) the largest mean squared error over windows of `window_of(H, W)` pixels a side (stride the
    same; the last window of a side that it does not divide averages what it holds), over valid
    pixels only where `mask` (N, 1, H, W) is given."""
    e = (recon.float() - target.float()) ** 2
    k = window_of(int(e.shape[-2]), int(e.shape[-1]))  # int(): a constant in a traced export (fixed shape)
    if mask is None:
        return F.avg_pool2d(e.mean(1, keepdim=True), k, k, ceil_mode=True, count_include_pad=False).flatten(1).amax(1)
    m = mask.float()
    num = F.avg_pool2d((e * m).mean(1, keepdim=True), k, k, ceil_mode=True, count_include_pad=False)
    den = F.avg_pool2d(m, k, k, ceil_mode=True, count_include_pad=False)
    return (num / den.clamp_min(1e-6)).flatten(1).amax(1)


def whitening(latent: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, W) with |(z - mean) @ W|^2 the Mahalanobis distance under the latent statistics
    (computed in float64 on the CPU, returned in float32)."""
    mean = torch.tensor(latent["mean"], dtype=torch.float64)
    vals, vecs = torch.linalg.eigh(torch.tensor(latent["precision"], dtype=torch.float64))
    return mean.float(), (vecs * vals.clamp_min(0).sqrt()).float()


def knn_mean(queries: torch.Tensor, refs: torch.Tensor, k: int, skip: int = 0) -> torch.Tensor:
    """(N,) mean distance of each query to its k nearest references, the `skip` nearest left out
    (queries that are references themselves). |q|^2 - 2 q.r + |r|^2 as matrix products: what
    torch.cdist computes for these sizes, written out so that ONNX exports it."""
    d2 = (queries * queries).sum(1, keepdim=True) - 2 * queries @ refs.T + (refs * refs).sum(1)[None]
    return d2.clamp_min(0).sqrt().topk(k + skip, dim=1, largest=False).values[:, skip:].mean(1)


class EnsembleScorer(nn.Module):
    """The ensemble score of a batch, as one module: training calibrates it (`parts` of the
    validation items), `Autoencoder.score` and the exported ONNX/TorchScript file compute it (the
    same operations, float32, on any device)."""

    def __init__(
        self,
        names,
        latent: dict,
        refs: dict,
        scales: dict | None = None,
        skip_self: bool = False,
        centers: dict | None = None,
        combine: str = "max",
    ):
        super().__init__()
        self.names = tuple(names)
        mean, w = whitening(latent)
        self.register_buffer("mean", mean)
        self.register_buffer("white", w)
        self.register_buffer("codes", refs["codes"].float())
        self.register_buffer("inputs", refs["inputs"].float())
        self.skip = int(skip_self and len(refs["codes"]) > 1)  # a single reference is the only neighbour there is
        self.k = max(1, min(K_NEIGHBOURS, len(refs["codes"]) - self.skip))
        self.scales = dict(scales or {})
        self.centers = dict(centers or dict.fromkeys(self.scales, 0.0))
        self.combine = combine

    def parts(self, z, recon, target, xn, mask=None) -> dict[str, torch.Tensor]:
        """The raw parts (N,) of a batch: `z` its codes, `recon` and `target` in the kind's units, `xn`
        the normalised input, `mask` (N, 1, H, W) True where valid (rasters with nodata)."""
        got = {}
        w = (z.float() - self.mean) @ self.white
        for name in self.names:
            if name in ("mse", "ssim"):
                got[name] = item_errors(recon, target, name, mask).float()
            elif name == "local":
                got[name] = local_errors(recon, target, mask)
            elif name == "code_knn":
                got[name] = knn_mean(w, self.codes, self.k, self.skip)
            elif name == "input_knn":
                got[name] = knn_mean(input_view(xn), self.inputs, self.k, self.skip)
            elif name == "code_distance":
                got[name] = (w**2).sum(1) / w.shape[1]
            elif name == "spread":
                got[name] = (xn.float() ** 2).mean(dim=(1, 2, 3))
        return got

    def forward(self, z, recon, target, xn, mask=None) -> torch.Tensor:
        """(N,) float32: the largest of the parts' robust z-scores ("max"), or the sum of each part
        over its scale ("sum", earlier runs)."""
        return combined(self.parts(z, recon, target, xn, mask), self.centers, self.scales, self.combine)


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
        codes.append(((model.encode(xn).float() - white[0].to(xn.device)) @ white[1].to(xn.device)).cpu())
        inputs.append(input_view(xn).cpu().half())
    model.train()
    return {"codes": torch.cat(codes).contiguous(), "inputs": torch.cat(inputs).contiguous(), "items": idx}


def combined(raw: dict, centers: dict, scales: dict, combine: str):
    """The score of the parts `raw` (name -> (N,) tensor) under a calibration: the largest of
    (part - center) / scale ("max"), or the sum of part / scale ("sum"). Either float32 tensors on
    their device (scoring, export) or float64 on the CPU (calibration)."""
    if combine == "sum":
        return sum(raw[name] / scales[name] for name in scales)
    return torch.stack([(raw[name] - centers[name]) / scales[name] for name in scales]).amax(0)


def combine_of(kind: DataKind) -> str:
    """How the parts are combined for data of this kind: "max" for images, "sum" for tables (where
    the benchmark found the maximum worse: BENCHMARKS.md, "One-class detection")."""
    return "sum" if kind.table else "max"


def calibration(raw: dict, combine: str = "max") -> dict:
    """model.json's "ensemble" calibration from the parts of held-out normal items. "max": each
    part's median (`centers`) and interquartile range (`scales`; its standard deviation where the
    range is 0, never below 1e-12). "sum": each part's mean (`scales`), centers 0."""
    centers, scales = {}, {}
    for name, v in raw.items():
        v = v.cpu().double()
        if combine == "sum":
            centers[name], scales[name] = 0.0, max(float(v.mean()), 1e-12)
            continue
        q1, q2, q3 = (float(q) for q in torch.quantile(v, torch.tensor([0.25, 0.5, 0.75], dtype=v.dtype)))
        spread = q3 - q1 if q3 > q1 else float(v.std()) if len(v) > 1 else 0.0
        centers[name], scales[name] = q2, max(spread, 1e-12)
    return {"combine": combine, "centers": centers, "scales": scales}


def score_of(raw: dict, cal: dict) -> torch.Tensor:
    """(N,) float64 on the CPU: the ensemble score of the parts `raw` under the calibration `cal`."""
    parts = {name: v.cpu().double() for name, v in raw.items()}  # MPS: no float64
    return combined(parts, cal.get("centers", {}), cal["scales"], cal.get("combine", "sum"))


def scorer_of(meta: dict, refs: dict) -> EnsembleScorer:
    """The ensemble score of a saved run (model.json `ensemble`, RUN/reference.safetensors); runs
    without `combine` (earlier versions) keep their sum."""
    cal = meta["ensemble"]
    scales = cal["scales"]
    return EnsembleScorer(
        scales, meta["latent_score"], refs, scales, centers=cal.get("centers"), combine=cal.get("combine", "sum")
    ).eval()
