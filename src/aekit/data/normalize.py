"""Per-channel normalisation, stored with the model so raw pixels go in and raw pixels come out."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Normalizer(nn.Module):
    """raw -> (raw / scale - mean) / std, and back. mean and std are per channel, in [0, 1] units."""

    def __init__(self, scale: float, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        # (raw / scale - mean) / std as one fused multiply-add on the batch
        gain = 1.0 / (self.scale * self.std)
        return torch.addcmul(-self.mean / self.std, raw.float(), gain)

    def to_unit(self, y: torch.Tensor, clamp: bool = False) -> torch.Tensor:
        """Normalised values back to [0, 1] units (pixels / scale); `clamp` to the valid range
        (integer images, whose pixels cannot leave [0, 1])."""
        unit = y * self.std + self.mean
        return unit.clamp(0, 1) if clamp else unit

    def to_dict(self) -> dict:
        return {
            "scale": float(self.scale),
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
        }


def channel_stats(
    array: np.ndarray,
    scale: float,
    idx: np.ndarray | None = None,
    chunk: int = 4096,
    min_std: float = 1e-3,
    mask: np.ndarray | None = None,
    constant_std: float | None = None,
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of rows `idx` of (N, C, H, W) raw data in [0, 1] units, read in
    chunks so that memory stays bounded for memory-mapped data. Sums are taken around the first
    chunk's mean (exact for columns far from zero, such as years or prices). The std is at least
    `min_std` (1e-3 for images; tables pass a tiny one) and 1e-6 of the mean's magnitude, so a
    constant channel maps to 0 instead of dividing by zero; with `constant_std` (tables: 1.0, as
    scikit-learn's StandardScaler does) a channel constant in these rows is only centred, so that a
    new value there is measured in its own units rather than blown up a millionfold. With a
    (N, 1, H, W) `mask` (True = valid), only valid pixels count: nodata never shifts the statistics."""
    c = array.shape[1]
    idx = np.arange(len(array)) if idx is None else np.asarray(idx)
    if mask is None and array.dtype in (np.uint8, np.uint16):
        mean, std = _integer_stats(array, scale, idx, chunk)
        return _floored(mean, std, min_std, constant_std)
    total, total_sq, count, shift = np.zeros(c), np.zeros(c), 0, None
    for i in range(0, len(idx), chunk):
        x = array[idx[i : i + chunk]].astype(np.float64) / scale
        if shift is None:
            shift = x.mean(axis=(0, 2, 3))
        x -= shift[None, :, None, None]
        if mask is not None:
            m = mask[idx[i : i + chunk]]
            x *= m
            count += int(m.sum())
        else:
            count += x.shape[0] * x.shape[2] * x.shape[3]
        total += x.sum(axis=(0, 2, 3))
        total_sq += (x**2).sum(axis=(0, 2, 3))
    offset = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - offset**2, 0.0))
    mean = offset + shift
    return _floored(mean, std, min_std, constant_std)


def _floored(mean: np.ndarray, std: np.ndarray, min_std: float, constant_std: float | None) -> tuple[list, list]:
    """The std at least `min_std` and 1e-6 of the mean's magnitude; `constant_std` where the channel
    is constant (its spread within rounding of its mean)."""
    floored = np.maximum(std, np.maximum(min_std, 1e-6 * np.abs(mean)))
    if constant_std is not None:
        floored = np.where(std <= 1e-9 * np.maximum(np.abs(mean), 1.0), constant_std, floored)
    return mean.tolist(), floored.tolist()


def _integer_stats(array: np.ndarray, scale: float, idx: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """channel_stats of uint8/uint16 data from a histogram of each channel's values: exact counts,
    then the mean and the spread around it in float64 (~10x faster than summing floats)."""
    levels = 256 if array.dtype == np.uint8 else 65536
    counts = np.zeros((array.shape[1], levels), np.int64)
    for i in range(0, len(idx), chunk):
        x = array[np.sort(idx[i : i + chunk])]  # in file order: memory-mapped data is read forward
        for ch in range(array.shape[1]):
            counts[ch] += np.bincount(x[:, ch].ravel(), minlength=levels)
    values = np.arange(levels) / scale
    n = np.maximum(counts.sum(1), 1)
    mean = (counts * values).sum(1) / n
    var = (counts * (values[None] - mean[:, None]) ** 2).sum(1) / n
    return mean, np.sqrt(var)
