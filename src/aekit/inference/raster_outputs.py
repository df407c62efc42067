"""GeoTIFF out: a model's reconstruction of a raster, or its per-pixel error map, of any size.

The raster is tiled with the model's patch on a regular grid (stride: half the patch by default,
so patches overlap), every patch is reconstructed, and overlaps are blended with a smooth window
(sin^2 along each axis: with half-patch overlap the weights add up to one, so no seam shows),
times the patch's fraction of valid pixels (a patch that is mostly nodata saw little context).
The raster is read and written one strip of patch rows at a time: memory stays at a few strips
whatever the raster's size. Preprocessing is the training run's (model.json `raster`): the same
bands, nodata value (the file's own unless the run set --nodata; NaN/Inf in floats) and
normalisation; nodata pixels are filled from their valid neighbours as in training (rasters.py).

Outputs keep the source's CRS, transform, width and height, and have one band per model band:
- reconstruction: the source's data type (integers rounded and clipped to the type's range) and
  nodata value; nodata pixels of the source stay nodata.
- error map: float32, one band: per pixel, the mean over bands of the squared error in the
  model's normalised units (each band divided by its training std, so every band weighs the
  same); nodata (NaN) where the source pixel is nodata.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aekit.core.errors import AekitError
from aekit.core.rundir import atomic_write
from aekit.core.transfer import host_cast
from aekit.data.rasters import (
    RASTER_SUFFIXES,
    RasterOptions,
    effective_nodata,
    fill_patch,
    grid_positions,
    open_raster,
    rasterio_module,
    scan_rasters,
    valid_mask,
)
from aekit.inference.model import Autoencoder, load

KINDS = {"reconstruction": "_recon", "error": "_error"}


def blend_window(h: int, w: int) -> np.ndarray:
    """(h, w) weights, highest at the centre, small but positive at the edges (sin^2 per axis)."""

    def axis(n: int) -> np.ndarray:
        return np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2

    return np.outer(axis(h), axis(w)).astype(np.float32)


def _model(model: Autoencoder | str | Path, device: str) -> Autoencoder:
    m = model if isinstance(model, Autoencoder) else load(model, device=device)
    if "raster" not in m.meta:
        raise AekitError(
            "this model was trained on images, not rasters; train one on rasters (aekit train RASTERS) "
            "to reconstruct or score a raster"
        )
    return m


def _check_source(src: Any, name: str, model: Autoencoder) -> list[int]:
    """The model's bands, checked against the file's band count and type."""
    raster = model.meta["raster"]
    bands, trained_count = raster["bands"], raster["file_band_count"]
    every_band = bands == list(range(1, trained_count + 1))
    if max(bands) > src.count or (every_band and src.count != trained_count):
        raise AekitError(
            f"{name} has {src.count} bands, the model was trained on bands {bands} of "
            f"{raster['file_band_count']}-band rasters; pass a raster with the same bands"
        )
    if str(src.dtypes[0]) != raster["dtype"]:
        raise AekitError(
            f"{name} holds {src.dtypes[0]} values but the model was trained on {raster['dtype']} rasters; "
            "convert it to that type (gdal_translate -ot) so that its units match"
        )
    return bands


@torch.no_grad()
def _predict(model: Autoencoder, x: np.ndarray, kind: str, batch_size: int) -> np.ndarray:
    """(n, C, h, w) raw values (nodata already filled) -> reconstructions in raw units, or the
    (n, 1, h, w) per-pixel error in normalised units."""
    norm, scale = model.normalizer, model.scale
    outs = []
    for i in range(0, len(x), batch_size):
        xb = host_cast(torch.from_numpy(x[i : i + batch_size]), model.device).to(model.device)
        xn = norm.normalize(xb)
        with model.compute.autocast():
            y = model.model(xn).recon.float()
        if kind == "error":
            out = ((y - xn) ** 2).mean(dim=1, keepdim=True)
        else:
            out = norm.to_unit(y, clamp=scale > 1) * scale
        outs.append(out.cpu().numpy())
    return np.concatenate(outs)


@dataclass
class _Stitch:
    """What stitch_raster needs to write one output: the open source, how it is read, the grid of
    patches and the output's GeoTIFF profile."""

    src: Any
    kind: str
    bands: list[int]
    height: int
    width: int
    nodata: float | None  # the source's, as the model was trained with
    fill: np.ndarray  # raw band means, for patches with no valid pixel
    dtype: np.dtype
    out_nodata: float | None
    profile: dict
    descriptions: list[str | None]
    ph: int
    pw: int
    ys: list[int]
    xs: list[int]


def stitch_raster(
    model: Autoencoder | str | Path,
    src_path: str | Path,
    dst_path: str | Path,
    *,
    kind: str = "reconstruction",
    stride: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
) -> dict:
    """Write the model's `kind` ("reconstruction" or "error") of the raster `src_path` to the
    GeoTIFF `dst_path`; returns a summary (path, size, valid pixels, mean error over them)."""
    if kind not in KINDS:
        raise AekitError(f"unknown output kind {kind!r}; use one of {', '.join(KINDS)}")
    model = _model(model, device)
    rasterio = rasterio_module()
    src_path, dst_path = Path(src_path), Path(dst_path)
    _, ph, pw = model.input_shape
    stride = stride or max(1, min(ph, pw) // 2)
    if stride > min(ph, pw):
        raise AekitError(f"stride {stride} is larger than the patch ({ph}x{pw}): pixels would be missed")
    opts = RasterOptions.from_meta(model.meta["raster"])
    fill = (np.asarray(model.normalizer.to_dict()["mean"]) * model.scale).astype(np.float32)  # raw band means
    try:
        src = open_raster(src_path)
    except rasterio.errors.RasterioError as e:
        raise AekitError(f"cannot read {src_path} as a raster ({str(e).splitlines()[0]})") from None
    with src:
        plan = _plan_stitch(src, str(src_path), model, kind, stride, opts, fill)
        stats = {"sq": 0.0, "n": 0}
        atomic_write(dst_path, lambda tmp: _write_stitched(tmp, plan, model, batch_size, stats))
    result = {
        "source": str(src_path),
        "output": str(dst_path),
        "kind": kind,
        "height": plan.height,
        "width": plan.width,
    }
    result["bands"] = plan.bands
    if kind == "error":
        result["valid_pixels"] = stats["n"]
        result["mean_error"] = stats["sq"] / stats["n"] if stats["n"] else None
    return result


def _plan_stitch(
    src: Any, name: str, model: Autoencoder, kind: str, stride: int, opts: RasterOptions, fill: np.ndarray
) -> _Stitch:
    """Check the source against the model; the output's type, nodata and profile; the patch grid."""
    _, ph, pw = model.input_shape
    bands = _check_source(src, name, model)
    height, width = src.height, src.width
    nodata = effective_nodata(opts, src.nodata)
    c_out = len(bands) if kind == "reconstruction" else 1
    dtype = np.dtype(src.dtypes[0]) if kind == "reconstruction" else np.dtype(np.float32)
    if kind == "error" or (nodata is None and dtype.kind == "f"):
        out_nodata = float("nan")
    else:
        out_nodata = nodata  # None for an integer raster without nodata: every pixel is valid
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": c_out,
        "dtype": dtype.name,
        "crs": src.crs,
        "transform": src.transform,
        "nodata": out_nodata,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    descriptions = [src.descriptions[b - 1] for b in bands] if kind == "reconstruction" else ["squared error"]
    return _Stitch(
        src=src,
        kind=kind,
        bands=bands,
        height=height,
        width=width,
        nodata=nodata,
        fill=fill,
        dtype=dtype,
        out_nodata=out_nodata,
        profile=profile,
        descriptions=descriptions,
        ph=ph,
        pw=pw,
        ys=grid_positions(height, ph, stride),
        xs=grid_positions(width, pw, stride),
    )


def _write_stitched(tmp: Path, plan: _Stitch, model: Autoencoder, batch_size: int, stats: dict) -> None:
    """Write the output GeoTIFF to `tmp` one strip of patch rows at a time; adds the squared
    error and the valid pixel count of error maps to `stats`."""
    rasterio = rasterio_module()
    window_cls = rasterio.windows.Window
    ph, pw, height, width, ys = plan.ph, plan.pw, plan.height, plan.width, plan.ys
    weight = blend_window(ph, pw)
    strip_w = max(width, pw)
    acc = np.zeros((plan.profile["count"], ph, strip_w), np.float64)  # rows [top, top + ph) of the blended sums
    wsum = np.zeros((ph, strip_w), np.float64)
    with rasterio.open(tmp, "w", **plan.profile) as dst:
        for k, desc in enumerate(plan.descriptions, 1):
            if desc:
                dst.set_band_description(k, desc)
        for i, y in enumerate(ys):
            strip, valid = _read_strip(plan, y, strip_w)
            patches = np.stack(  # (n, C, ph, pw), nodata filled as in training
                [fill_patch(strip[:, :, x0 : x0 + pw], valid[:, x0 : x0 + pw], plan.fill) for x0 in plan.xs]
            )
            pred = _predict(model, patches, plan.kind, batch_size)
            for x0, p in zip(plan.xs, pred):
                # a patch mostly of nodata saw little context: it counts less where patches overlap
                wp = weight * max(float(valid[:, x0 : x0 + pw].mean()), 1e-3)
                acc[:, :, x0 : x0 + pw] += p * wp
                wsum[:, x0 : x0 + pw] += wp
            done = (ys[i + 1] - y) if i + 1 < len(ys) else min(ph, height - y)  # rows no later patch touches
            rows = acc[:, :done, :width] / wsum[None, :done, :width]
            ok = valid[:done, :width]
            if plan.kind == "error":
                stats["sq"] += float(rows[0][ok].sum())
                stats["n"] += int(ok.sum())
            dst.write(_finish(rows, ok, plan.dtype, plan.out_nodata), window=window_cls(0, y, width, done))
            acc[:, : ph - done] = acc[:, done:]
            acc[:, ph - done :] = 0
            wsum[: ph - done] = wsum[done:]
            wsum[ph - done :] = 0


def _read_strip(plan: _Stitch, y: int, strip_w: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, ph, strip_w) values of the source's rows [y, y + ph) and their (ph, strip_w) valid mask;
    only these rows are read, and pixels beyond the raster's edge are not valid."""
    window_cls = rasterio_module().windows.Window
    boundless = y + plan.ph > plan.height or plan.pw > plan.width
    with warnings.catch_warnings():  # rasterio's boundless reads use a deprecated Affine op
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        strip = plan.src.read(plan.bands, window=window_cls(0, y, strip_w, plan.ph), boundless=boundless, fill_value=0)
    valid = valid_mask(strip, plan.nodata)
    if boundless:
        valid[max(0, plan.height - y) :] = False
        valid[:, plan.width :] = False
    return strip, valid


def _finish(values: np.ndarray, valid: np.ndarray, dtype: np.dtype, nodata: float | None) -> np.ndarray:
    """Blended float values -> the output type (rounded and clipped for integers), nodata where
    the source pixel was nodata."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    if nodata is not None:
        values = np.where(valid[None], values, nodata)
    return values.astype(dtype)


def reconstruct_raster(model, src: str | Path, dst: str | Path, **kw: Any) -> dict:
    """The model's reconstruction of raster `src` as a GeoTIFF `dst`; see the module docstring."""
    return stitch_raster(model, src, dst, kind="reconstruction", **kw)


def error_map_raster(model, src: str | Path, dst: str | Path, **kw: Any) -> dict:
    """The model's per-pixel error map of raster `src` as a float32 GeoTIFF `dst`."""
    return stitch_raster(model, src, dst, kind="error", **kw)


def is_raster_path(data: Any) -> bool:
    """True for a raster file, or a folder holding one: what the raster outputs take."""
    if not isinstance(data, (str, Path)):
        return False
    path = Path(data)
    if path.is_file():
        return path.suffix.lower() in RASTER_SUFFIXES
    return path.is_dir() and any(p.suffix.lower() in RASTER_SUFFIXES for p in path.rglob("*") if p.is_file())


def wants_error_maps(data: Any, output: str | Path | None) -> bool:
    """`aekit score` on rasters writes error maps unless asked for a table (.csv/.parquet)."""
    return output is not None and Path(output).suffix.lower() not in (".csv", ".parquet") and is_raster_path(data)


def raster_outputs(
    model: Autoencoder | str | Path,
    data: str | Path,
    output: str | Path,
    *,
    kind: str,
    stride: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    verbose: bool = True,
) -> dict:
    """`kind` outputs for every raster in `data` (a file or a folder). `output` is a .tif file for
    one raster, else a folder: reconstructions mirror the input tree (`a/b.tif` -> `DIR/a/b.tif`),
    error maps are named `DIR/a/b_error.tif`. Returns a summary with one entry per raster."""
    from aekit.core.progress import console

    model = _model(model, device)
    root = Path(data)
    files, others = scan_rasters(root)
    out = Path(output)
    single = out.suffix.lower() in (".tif", ".tiff")
    if single and len(files) > 1:
        raise AekitError(f"{root} holds {len(files)} rasters; pass a folder as -o to write one file per raster")
    if not single and out.exists() and not out.is_dir():
        raise AekitError(f"output {out} is a file; pass a folder, or a .tif name for one raster")
    results = []
    for f in files:
        rel = Path(f.name if f == root else f.relative_to(root))
        if single:
            dst = out
        elif kind == "reconstruction":
            dst = out / rel.with_suffix(".tif")
        else:
            dst = out / rel.parent / f"{rel.stem}{KINDS[kind]}.tif"
        if dst.resolve() == f.resolve():
            raise AekitError(f"{dst} is the input raster; pass another -o (aekit never writes over your data)")
        results.append(stitch_raster(model, f, dst, kind=kind, stride=stride, batch_size=batch_size))
    summary = {"data": str(root), "kind": kind, "rasters": results, "skipped": [vars(s) for s in others]}
    if kind == "error":
        summary["mean_error"] = mean_error(results)
    if verbose:
        what = "reconstructed" if kind == "reconstruction" else "error maps of"
        where = out if single else f"{out}/"
        extra = (
            f" (per pixel: the squared error of each band over its training spread, the mean over bands; mean "
            f"{summary['mean_error']:.6g} over valid pixels)"
            if summary.get("mean_error") is not None
            else ""
        )
        console.print(f"{what} {len(results)} raster(s) into {where} as GeoTIFF{extra}")
    return summary


def mean_error(results: list[dict]) -> float | None:
    n = sum(r.get("valid_pixels", 0) for r in results)
    if not n:
        return None
    return math.fsum(r["mean_error"] * r["valid_pixels"] for r in results if r.get("valid_pixels")) / n
