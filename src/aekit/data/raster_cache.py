"""Decode once, for rasters: the items read from rasters are kept on disk and reused.

An entry is `<cache_dir>/<key>/` with `data.npy` (N, C, H, W in the stored type, see rasters.py),
`mask.npy` (N, 1, H, W bool, True = valid) and `index.json`. The key is a fingerprint of the raster
files (paths, sizes, modification times), the raster options (bands, patch size, stride, nodata,
grid or random patches and their seed), the cache format and the rasterio/GDAL versions. Builds are
atomic, checked by checksums on first read, and a failing disk falls back to reading into memory, as
for images (cache.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from aekit.core.progress import console
from aekit.data.base import LoadedData, Skipped
from aekit.data.cache import (
    UNUSABLE,
    CorruptEntry,
    default_cache_dir,
    entry_allocator,
    index_of,
    listing_digest,
    memory_limit,
    not_cached,
    start_entry,
    verify,
    write_entry,
)
from aekit.data.rasters import RasterOptions, options_key, rasterio_module, read_rasters, scan_rasters

CACHE_VERSION = 3  # 2: index.json holds the checksums of the arrays; 3: and one of itself
READ = "read into memory"


def fingerprint(root: Path, listing: str, options: dict) -> str:
    rasterio = rasterio_module()
    head = {
        "v": CACHE_VERSION,
        "kind": "raster",
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "root": str(root.resolve()),
        "options": options,
    }
    return hashlib.sha256((json.dumps(head, sort_keys=True) + listing).encode()).hexdigest()[:32]


def read_rasters_cached(
    root: str | Path,
    opts: RasterOptions,
    *,
    grid: bool = False,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
    in_memory_limit: int | None = None,
) -> LoadedData:
    """`read_rasters` through the cache: read on the first call, reuse afterwards."""
    root = Path(root)
    files, others = scan_rasters(root)
    base = Path(cache_dir) if cache_dir else default_cache_dir()
    key = fingerprint(root, listing_digest(files, others), options_key(opts, grid))
    entry = base / key
    limit = memory_limit() if in_memory_limit is None else in_memory_limit
    if (entry / "index.json").is_file():
        try:
            return _load(entry, limit)
        except CorruptEntry as e:
            console.print(f"{e}; rebuilding it", style="yellow", markup=False, soft_wrap=True)
            shutil.rmtree(entry, ignore_errors=True)
        except UNUSABLE:
            shutil.rmtree(entry, ignore_errors=True)
    read = dict(opts=opts, grid=grid, show_progress=show_progress, listing=(files, others))
    try:
        tmp = start_entry(base, key)
    except OSError as e:
        return _uncached(root, read, e)
    names = iter(("data.npy", "mask.npy"))
    allocate = entry_allocator(tmp, limit)
    try:
        data = read_rasters(root, allocate=lambda shape, dtype: allocate(shape, dtype, next(names)), **read)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        return _uncached(root, read, e)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    index = index_of(data, has_mask=data.mask is not None, raster=data.raster)
    arrays = {"data.npy": data.array, "mask.npy": data.mask}  # mask None: every pixel valid, no file kept
    if not write_entry(tmp, entry, data, arrays, index, READ):
        return data
    data.notes.append(f"raster items cached in {entry}")
    return data


def _load(entry: Path, limit: int) -> LoadedData:
    index = json.loads((entry / "index.json").read_text())
    verify(entry, index, {name: np.load(entry / name, mmap_mode="r") for name in _arrays(index)})
    n = index["n_valid"]
    mapped = np.load(entry / "data.npy", mmap_mode="r")
    in_memory = mapped.nbytes <= limit
    mode = "r" if in_memory else "c"

    def get(name: str) -> np.ndarray:
        a = np.load(entry / name, mmap_mode=mode)[:n]
        return np.array(a) if in_memory else a

    return LoadedData(
        array=get("data.npy"),
        ids=index["ids"],
        scale=index["scale"],
        source=index["source"],
        skipped=[Skipped(**s) for s in index["skipped"]],
        n_found=index["n_found"],
        notes=[*index["notes"], f"raster items reused from the cache ({'in memory' if in_memory else 'mapped'})"],
        mask=get("mask.npy") if index["has_mask"] else None,
        raster=index["raster"],
    )


def _arrays(index) -> list[str]:
    """The .npy files of an entry: data.npy and, when its index says so, mask.npy; a damaged index
    that says neither is caught by its checksum."""
    has_mask = index.get("has_mask") if isinstance(index, dict) else None
    return ["data.npy", "mask.npy"] if has_mask is True else ["data.npy"]


def _uncached(root: Path, read: dict, error: Exception) -> LoadedData:
    data = read_rasters(root, **read)
    data.notes.append(not_cached(error, READ))
    return data
