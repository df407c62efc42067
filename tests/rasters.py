"""Tiny seeded GeoTIFFs written with rasterio, for the raster tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

CRS = "EPSG:32633"
ORIGIN = (500000.0, 4600000.0)  # UTM zone 33N, metres
PIXEL = 10.0


def smooth_bands(c: int, h: int, w: int, seed: int = 0, dtype=np.uint16, base: float = 500, gain: float = 3000):
    """(c, h, w) smooth blobs shared by all bands with a per-band gain: learnable, not noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = np.zeros((c, h, w))
    for _ in range(3):
        cy, cx, s = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.15, 0.35)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        out += blob[None] * rng.uniform(0.5, 1.5, (c, 1, 1))
    out = out * gain + base
    return out.astype(dtype) if np.dtype(dtype).kind == "f" else np.rint(out).astype(dtype)


def write_raster(path: Path, arr: np.ndarray, *, nodata=None, crs: str | None = CRS, georef: bool = True) -> Path:
    """Write (C, H, W) `arr` as a GeoTIFF (or a plain TIFF when `georef` is False)."""
    import rasterio
    from affine import Affine

    c, h, w = arr.shape
    profile = {"driver": "GTiff", "height": h, "width": w, "count": c, "dtype": arr.dtype.name, "nodata": nodata}
    if georef:
        profile.update(crs=crs, transform=Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(arr)
    return path


def tile_folder(folder: Path, n: int = 12, c: int = 13, size: int = 32, nodata: int | None = 0) -> Path:
    """`n` c-band uint16 tiles; with `nodata`, a corner of each tile is nodata."""
    for i in range(n):
        arr = smooth_bands(c, size, size, seed=i)
        if nodata is not None:
            arr[:, : size // 4, : size // 3] = nodata
        write_raster(folder / f"tile_{i:02d}.tif", arr, nodata=nodata)
    return folder
