"""Reconstruction metrics in [0, 1] pixel units: MSE, PSNR and SSIM, overall and per channel.

SSIM is the standard one (Wang et al. 2004): Gaussian window of 11 pixels, sigma 1.5,
K1 = 0.01, K2 = 0.03, data range 1, computed per channel on the valid region and averaged.
Images smaller than the window use a window as large as the image (odd), sigma scaled with it.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

C1, C2 = 0.01**2, 0.03**2


def gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    ax = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()  # (C, 1, k, k)


def ssim_per_channel(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """SSIM of (N, C, H, W) images in [0, 1]; returns (N, C). With a (N, 1, H, W) `mask`, the SSIM
    map is averaged over windows centred on valid pixels (NaN for an image with none)."""
    n, c, h, w = x.shape
    size = min(11, h, w)
    size -= 1 - size % 2  # odd
    win = gaussian_window(size, 1.5 * size / 11, c, x.device, torch.float32)
    x, y = x.float(), y.float()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win, groups=c)  # (N, C, H-k+1, W-k+1)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx * mx + my * my + C1) * (sxx + syy + C2))
    if mask is None:
        return s.mean(dim=(2, 3))
    r = size // 2
    m = mask[..., r : r + s.shape[-2], r : r + s.shape[-1]].float()  # window centres
    return (s * m).sum(dim=(2, 3)) / m.sum(dim=(2, 3))


def squared_error(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> tuple:
    """(sum of squared errors, number of values) of (B, C, H, W) tensors, as tensors; with a
    (B, 1, H, W) `mask` (True = valid) only valid pixels count (rasters with nodata)."""
    if mask is None:
        return F.mse_loss(recon, target, reduction="sum"), torch.tensor(float(target.numel()))
    m = mask.to(recon.dtype)
    return ((recon - target) ** 2 * m).sum(), m.sum() * target.shape[1]


def psnr(mse: float, data_range: float = 1.0) -> float | None:
    """PSNR in dB for data spanning `data_range` (1 for pixels in [0, 1]); None where it has no
    finite value (a perfect reconstruction, an MSE that is not finite, data without a range)."""
    ok = 0 < mse < math.inf and 0 < data_range < math.inf
    return float(10 * math.log10(data_range**2 / mse)) if ok else None


class Metrics:
    """Accumulates squared error and SSIM over batches of (recon, target) in [0, 1] units.

    `image_metrics=False` (tables, in standardised units): MSE only; PSNR and SSIM are None.
    `own_units` (float data and rasters in their own units): PSNR over each channel's range in the
    targets (max - min of the valid values), never over a range of 1 (which made it negative)."""

    def __init__(self, image_metrics: bool = True, own_units: bool = False) -> None:
        self.image_metrics = image_metrics
        self.own_units = own_units
        self.low, self.high = None, None  # (C,) the targets' range, with own_units
        self.sq = None  # (C,) summed squared error
        self.ssim = None  # (C,) summed SSIM
        self.pixels = 0  # per channel
        self.images = 0

    @torch.no_grad()
    def update(self, recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add a batch; with a (N, 1, H, W) `mask` (True = valid) only valid pixels count."""
        recon, target = recon.float(), target.float()
        if mask is not None:
            mask = mask.to(recon.device)
            recon = torch.where(mask, recon, target)  # nodata: no error
        sq = ((recon - target) ** 2).sum(dim=(0, 2, 3)).cpu().double()  # float64 on the host (MPS has none)
        if self.own_units:
            valid = target if mask is None else torch.where(mask, target, target.new_tensor(float("nan")))
            flat = valid.transpose(0, 1).reshape(target.shape[1], -1).cpu().double()
            lo, hi = flat.nan_to_num(math.inf).amin(1), flat.nan_to_num(-math.inf).amax(1)
            self.low = lo if self.low is None else torch.minimum(self.low, lo)
            self.high = hi if self.high is None else torch.maximum(self.high, hi)
        self.sq = sq if self.sq is None else self.sq + sq
        if self.image_metrics:
            if mask is None:
                ss, n_images = ssim_per_channel(recon, target).sum(0), target.shape[0]
            else:
                per_image = ssim_per_channel(recon, target, mask)
                counted = per_image[:, 0].isfinite()  # images with a valid window centre
                ss, n_images = per_image[counted].sum(0), int(counted.sum())
            ss = ss.cpu().double()
            self.ssim = ss if self.ssim is None else self.ssim + ss
            self.images += n_images
        self.pixels += target.shape[0] * target.shape[2] * target.shape[3] if mask is None else int(mask.sum())

    def result(self) -> dict:
        mse_c = (self.sq / max(self.pixels, 1)).tolist()
        mse = float(sum(mse_c) / len(mse_c))
        if not self.image_metrics:
            return {"mse": mse, "psnr": None, "ssim": None, "per_channel": {"mse": mse_c, "psnr": None, "ssim": None}}
        ssim_c = (self.ssim / max(self.images, 1)).tolist()
        ranges = (self.high - self.low).tolist() if self.own_units and self.low is not None else [1.0] * len(mse_c)
        return {
            "mse": mse,
            "psnr": psnr(mse, max(ranges)),
            "ssim": float(sum(ssim_c) / len(ssim_c)),
            "per_channel": {"mse": mse_c, "psnr": [psnr(m, r) for m, r in zip(mse_c, ranges)], "ssim": ssim_c},
        }


def verdict(mse: float, reference: float, tolerance: float = 0.005) -> str:
    """'better', 'equal' (within 0.5%) or 'worse' than the reference MSE."""
    if mse < reference * (1 - tolerance):
        return "better"
    return "equal" if mse <= reference * (1 + tolerance) else "worse"
