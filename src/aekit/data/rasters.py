"""Rasters (GeoTIFF and other GDAL formats) read with rasterio: bands, nodata, tiles and patches.

When rasterio reads the data rather than Pillow (images.py), see `use_rasterio`:
- a raster option is given (`bands`, `patch_size`, `stride`, `nodata`), or
- the data holds a GDAL-only format (.jp2 .img .vrt .nc .hdf ...), or
- rasterio is installed and a .tif/.tiff (up to 8 sampled) is one Pillow cannot read faithfully:
  more than 4 bands, a type other than uint8 (1, 3 or 4 bands) or single-band uint16, a CRS or
  geotransform, or a nodata value. Other TIFFs (8-bit photos, 16-bit gray scans) stay images.
A folder with at least as many other images (.png .jpg ...) as raster files stays a folder of
images unless a raster option is given.

Reading:
- Bands: `bands` (1-based, as in GDAL) or every band. All files must share band count, data type
  and CRS (files without a CRS may sit beside each other); a mix is an error naming the file.
- Items: whole tiles when no patch size is given and every file has one size of at most 512
  pixels a side; otherwise square patches of `patch_size` (default 64). Training patches are drawn
  at seeded random positions, as many per file as a grid of `stride` holds (default: the patch
  size), once: the same patches serve every epoch (flips still vary). Inference (`grid=True`) uses
  the regular grid, its last row and column flush with the raster's edge. Every patch is read
  through a window: a large raster is never read whole. Files smaller than a patch are skipped.
- Nodata: the file's nodata value, or `nodata` when given; NaN and +-Inf in float rasters are
  always nodata. A pixel is nodata when any of its selected bands is. Items with more than 50%
  nodata pixels are skipped (counted in a note). The others keep a mask (LoadedData.mask) and their
  nodata pixels are filled from the nearest valid pixels (`fill_patch`): a constant fill would put
  a sharp edge at every nodata border, which the model then blurs into the valid pixels beside it.
- Units: uint8 rasters keep full scale 255, like images; every other type stays in its own units
  (scale 1) and is normalised by the per-band mean and std of the valid training pixels, never
  divided by a fixed 255.
- Storage (memory and the decode-once cache): the native type (uint8, uint16, int16, int32);
  float rasters as float32 (float16 would round elevations to metres and overflow above 65504).
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aekit.core.errors import AekitError
from aekit.core.progress import track
from aekit.data.base import LoadedData, Skipped
from aekit.data.images import _WORKERS, IMAGE_EXTENSIONS, _rel, list_files, walk

TIFF_SUFFIXES = (".tif", ".tiff")
GDAL_SUFFIXES = (".jp2", ".img", ".vrt", ".nc", ".hdf", ".asc", ".bil", ".dem", ".ers", ".rst", ".kea")
RASTER_SUFFIXES = TIFF_SUFFIXES + GDAL_SUFFIXES
MAX_TILE = 512  # files up to this side are whole items when no patch size is given
DEFAULT_PATCH = 64
MAX_NODATA = 0.5  # items with more than this fraction of nodata pixels are skipped
PROBE_SAMPLE = 8  # TIFFs probed to decide between Pillow and rasterio
STORAGE = {  # file type -> stored type
    "uint8": "uint8",
    "int8": "int16",
    "uint16": "uint16",
    "int16": "int16",
    "uint32": "int64",
    "int32": "int32",
    "float32": "float32",
    "float64": "float32",
}
INSTALL = "pip install 'aekit[geo]'"


def has_rasterio() -> bool:
    return importlib.util.find_spec("rasterio") is not None


def rasterio_module() -> Any:
    """rasterio, or a one-line error saying how to install it."""
    try:
        import rasterio
    except ImportError:
        raise AekitError(f"reading rasters needs rasterio, which is not installed: {INSTALL}") from None
    return rasterio


@dataclass
class RasterOptions:
    """How rasters are read; the training run stores these in model.json (`raster`)."""

    bands: list[int] | None = None
    patch_size: int | None = None
    stride: int | None = None
    nodata: float | None = None
    seed: int = 0
    required: bool = False  # read as rasters whatever the files look like (a raster model's data)

    def given(self) -> bool:
        return any(v is not None for v in (self.bands, self.patch_size, self.stride, self.nodata))

    @classmethod
    def from_meta(cls, raster: dict) -> RasterOptions:
        """The options a trained model was read with, for reading new data the same way."""
        patch = raster.get("patch_size")
        return cls(
            bands=raster.get("bands"),
            patch_size=patch[0] if patch else None,
            stride=raster.get("stride"),
            nodata=raster.get("nodata"),
        )


@dataclass
class RasterInfo:
    """What a raster's header says."""

    count: int
    height: int
    width: int
    dtype: str
    crs: str | None
    nodata: float | None
    georeferenced: bool
    descriptions: list[str | None]

    def pillow_friendly(self) -> bool:
        """True for the TIFFs Pillow reads as well as rasterio: plain 8-bit gray/RGB/RGBA, 16-bit gray."""
        if self.georeferenced or self.nodata is not None:
            return False
        return (self.dtype == "uint8" and self.count in (1, 3, 4)) or (self.dtype == "uint16" and self.count == 1)


def open_raster(path: Path) -> Any:
    """rasterio dataset for `path`, without the warning plain (non-georeferenced) TIFFs give."""
    rasterio = rasterio_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        return rasterio.open(path)


def probe_raster(path: Path) -> RasterInfo:
    """Read the header; raise ValueError with a user-readable reason for files to skip."""
    rasterio = rasterio_module()
    try:
        if path.stat().st_size == 0:
            raise ValueError("empty file (0 bytes)")
        with open_raster(path) as src:
            identity = src.transform.is_identity if hasattr(src.transform, "is_identity") else True
            return RasterInfo(
                count=src.count,
                height=src.height,
                width=src.width,
                dtype=str(src.dtypes[0]),
                crs=src.crs.to_string() if src.crs else None,
                nodata=None if src.nodata is None else float(src.nodata),
                georeferenced=bool(src.crs) or not identity or bool(src.gcps[0]),
                descriptions=list(src.descriptions),
            )
    except ValueError:
        raise
    except PermissionError:
        raise ValueError("cannot read file: permission denied") from None
    except rasterio.errors.RasterioError as e:
        raise ValueError(f"not a readable raster ({str(e).splitlines()[0]})") from None


def use_rasterio(data: str | Path, opts: RasterOptions) -> bool:
    """Whether DATA is read as rasters (rasterio) rather than images (Pillow); see the module policy.

    Raises the install hint when rasters need rasterio and it is missing."""
    path = Path(data)
    if not path.exists() or path.suffix.lower() in (".npy", ".npz"):
        return False
    if opts.given() or opts.required:
        rasterio_module()
        return True
    tiffs, gdal, images = [], 0, 0
    for dirpath, name in _walk(path):
        suffix = os.path.splitext(name)[1].lower()
        gdal += suffix in GDAL_SUFFIXES
        images += suffix in IMAGE_EXTENSIONS and suffix not in TIFF_SUFFIXES
        if suffix in TIFF_SUFFIXES:
            tiffs.append(Path(dirpath, name))
    if images >= gdal + len(tiffs):  # mostly photos: a stray .img or .tif does not turn them into rasters
        return False
    if gdal:
        rasterio_module()
        return True
    if not tiffs or not has_rasterio():
        return False
    tiffs.sort()
    step = max(1, len(tiffs) // PROBE_SAMPLE)
    for f in tiffs[::step][:PROBE_SAMPLE]:
        try:
            if not probe_raster(f).pillow_friendly():
                return True
        except ValueError:
            continue
    return False


def _walk(path: Path):
    """(folder, file name) of every visible file under `path` (strings: no pathlib per file)."""
    if path.is_file():
        yield str(path.parent), path.name
        return
    for dirpath, _, filenames in walk(str(path)):  # links to folders followed, loops not
        for name in filenames:
            if not name.startswith("."):
                yield dirpath, name


def grid_positions(size: int, patch: int, stride: int) -> list[int]:
    """Offsets of a regular grid along one axis; the last patch is flush with the edge."""
    if size <= patch:
        return [0]
    pos = list(range(0, size - patch + 1, stride))
    if pos[-1] != size - patch:
        pos.append(size - patch)
    return pos


def valid_mask(values: np.ndarray, nodata: float | None) -> np.ndarray:
    """(h, w) True where no band of (C, h, w) `values` is nodata (the value, or NaN/Inf in floats)."""
    valid = np.ones(values.shape[1:], bool)
    if nodata is not None and not math.isnan(nodata):
        valid &= (values != nodata).all(axis=0)
    if values.dtype.kind == "f":
        valid &= np.isfinite(values).all(axis=0)
    return valid


def effective_nodata(opts: RasterOptions, file_nodata: float | None) -> float | None:
    return opts.nodata if opts.nodata is not None else file_nodata


def scan_rasters(root: Path) -> tuple[list[Path], list[Skipped]]:
    if not root.exists():
        raise AekitError(f"data path not found: {root}; pass a raster file or a folder of rasters that exists")
    files, others = list_files(root, RASTER_SUFFIXES)
    others = [Skipped(s.path, s.reason.replace("not an image file", "not a raster file")) for s in others]
    if not files:
        raise AekitError(f"no raster files under {root}; looked for {' '.join(RASTER_SUFFIXES)}")
    return files, others


def check_consistent(infos: list[tuple[str, RasterInfo]], bands: list[int] | None) -> None:
    """One band count (or the requested bands in every file), one data type, one CRS."""
    first_name, first = infos[0]
    crs_name, crs = next(((n, i.crs) for n, i in infos if i.crs), (None, None))
    for name, info in infos:
        if bands is None and info.count != first.count:
            raise AekitError(
                f"{name} has {info.count} bands but {first_name} has {first.count}; pass --bands to choose "
                "bands every file has, or keep files with one band count in the folder"
            )
        if bands is not None and max(bands) > info.count:
            raise AekitError(
                f"{name} has {info.count} bands; --bands asks for band {max(bands)}. Bands count from 1 (as in GDAL)"
            )
        if info.dtype != first.dtype:
            raise AekitError(
                f"{name} holds {info.dtype} values but {first_name} holds {first.dtype}; convert the files to "
                f"one data type (e.g. gdal_translate -ot {_gdal_type(first.dtype)})"
            )
        if info.crs and info.crs != crs:
            raise AekitError(
                f"{name} is in {info.crs} but {crs_name} is in {crs}; reproject the rasters to one CRS "
                f"(e.g. gdalwarp -t_srs {crs})"
            )
        if info.dtype not in STORAGE:
            raise AekitError(f"{name} holds {info.dtype} values, which aekit cannot train on; convert to float32")


def _gdal_type(dtype: str) -> str:
    return {"uint8": "Byte", "float32": "Float32", "float64": "Float64"}.get(dtype, dtype.capitalize())


@dataclass
class _Layout:
    """How read_rasters cuts files into items: whole `ph` x `pw` tiles, or patches of that size
    every `stride` pixels (None for tiles)."""

    tiles: bool
    ph: int
    pw: int
    stride: int | None

    def noun(self, plural: bool = False) -> str:
        return ("tiles" if plural else "tile") if self.tiles else ("patches" if plural else "patch")


@dataclass
class _Items:
    """read_rasters' output arrays while files are read into them: row `offsets[k] + j` holds
    position j of plan k; `kept` marks the rows not skipped for nodata."""

    array: Any
    mask: Any
    kept: np.ndarray
    offsets: np.ndarray

    @property
    def total(self) -> int:
        return len(self.kept)


def read_rasters(
    root: str | Path,
    opts: RasterOptions,
    *,
    grid: bool = False,
    show_progress: bool = True,
    listing: tuple[list[Path], list[Skipped]] | None = None,
    allocate: Any = np.empty,
) -> LoadedData:
    """Read the rasters under `root` into (N, C, H, W) items (tiles or patches); see the module policy.

    `grid=True` cuts patches on the regular grid (inference), else at seeded random positions
    (training). `allocate(shape, dtype)` makes the output arrays (memory maps for the cache)."""
    root = Path(root)
    files, others = listing or scan_rasters(root)
    skipped = list(others)
    infos = _probe_files(files, root, skipped)
    check_consistent([(_rel(f, root), i) for f, i in infos], opts.bands)
    first = infos[0][1]
    bands = opts.bands or list(range(1, first.count + 1))
    store = np.dtype(STORAGE[first.dtype])
    notes = [f"rasters: {len(infos)} file(s), {first.count} band(s) of {first.dtype}, using bands {_ranges(bands)}"]
    layout = _choose_layout(infos, opts, grid, notes)
    plans = _plan_items(infos, layout, grid, opts.seed, root, skipped)
    items = _allocate_items(plans, len(bands), layout, store, allocate)
    unread = _read_items(plans, items, bands, layout, opts, store, show_progress)
    skipped += [Skipped(_rel(plans[k][0], root), reason) for k, reason in unread.items()]
    array, mask = _drop_mostly_nodata(items, layout, root, notes, sum(len(plans[k][2]) for k in unread), skipped)
    any_nodata = not bool(np.all(mask))
    notes += _value_notes(opts, first, store, any_nodata)
    skipped.sort(key=lambda s: s.path)
    return LoadedData(
        array=array,
        ids=_item_ids(plans, items, layout, root),
        scale=255.0 if first.dtype == "uint8" else 1.0,
        source=str(root.resolve()),
        skipped=skipped,
        n_found=len(files) + len(others),
        notes=notes,
        mask=mask if any_nodata else None,
        raster=_raster_meta(infos, opts, bands, layout),
    )


def _probe_files(files: list[Path], root: Path, skipped: list[Skipped]) -> list[tuple[Path, RasterInfo]]:
    """(file, header) of every readable raster; the others join `skipped` with their reason."""
    infos: list[tuple[Path, RasterInfo]] = []
    for f in files:
        try:
            infos.append((f, probe_raster(f)))
        except ValueError as e:
            skipped.append(Skipped(_rel(f, root), str(e)))
    if not infos:
        raise AekitError(f"no readable raster under {root} (first: {skipped[-1].path}: {skipped[-1].reason})")
    return infos


def _choose_layout(infos: list[tuple[Path, RasterInfo]], opts: RasterOptions, grid: bool, notes: list[str]) -> _Layout:
    """Whole tiles when every file has one small size (or exactly the patch size), else patches."""
    sizes = {(i.height, i.width) for _, i in infos}
    one = next(iter(sizes)) if len(sizes) == 1 else None
    tiles = one is not None and (
        (opts.patch_size is None and max(one) <= MAX_TILE) or one == (opts.patch_size, opts.patch_size)
    )
    if tiles:
        ph, pw = next(iter(sizes))
        notes.append(f"items: whole tiles of {ph}x{pw}")
        return _Layout(tiles=True, ph=ph, pw=pw, stride=None)
    ph = pw = opts.patch_size or DEFAULT_PATCH
    stride = opts.stride or ph
    how = "a regular grid" if grid else "seeded random positions"
    default = "" if opts.patch_size else " (the default; pass --patch-size to change)"
    notes.append(f"items: patches of {ph}x{pw}{default}, stride {stride}, at {how}")
    return _Layout(tiles=False, ph=ph, pw=pw, stride=stride)


def _plan_items(
    infos: list[tuple[Path, RasterInfo]],
    layout: _Layout,
    grid: bool,
    seed: int,
    root: Path,
    skipped: list[Skipped],
) -> list[tuple[Path, RasterInfo, list[tuple[int, int]]]]:
    """(path, header, [(y, x), ...]) of every file at least a patch in size; smaller ones are skipped."""
    ph, pw = layout.ph, layout.pw
    rng = np.random.default_rng(seed)
    plans = []
    for f, info in infos:
        if info.height < ph or info.width < pw:
            skipped.append(Skipped(_rel(f, root), f"smaller ({info.height}x{info.width}) than the patch {ph}x{pw}"))
            continue
        plans.append((f, info, _positions(info, layout, grid, rng)))
    if not plans:
        raise AekitError(f"every raster under {root} is smaller than the patch {ph}x{pw}; pass a smaller --patch-size")
    return plans


def _positions(info: RasterInfo, layout: _Layout, grid: bool, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Top-left corners of one file's items: the tile, the grid, or as many seeded random patches."""
    if layout.tiles:
        return [(0, 0)]
    ph, pw, stride = layout.ph, layout.pw, layout.stride
    ys, xs = grid_positions(info.height, ph, stride), grid_positions(info.width, pw, stride)
    if grid:
        return [(y, x) for y in ys for x in xs]
    n = len(ys) * len(xs)
    return sorted(  # row order: neighbouring windows share GDAL's cached blocks
        zip(
            rng.integers(0, info.height - ph + 1, n).tolist(),
            rng.integers(0, info.width - pw + 1, n).tolist(),
        )
    )


def _allocate_items(plans: list, c: int, layout: _Layout, store: np.dtype, allocate: Any) -> _Items:
    """Output arrays for every planned item, or a one-line error when they do not fit in memory."""
    ph, pw = layout.ph, layout.pw
    total = sum(len(p) for _, _, p in plans)
    try:
        array = allocate((total, c, ph, pw), store)
        mask = allocate((total, 1, ph, pw), np.dtype(bool))
    except MemoryError:
        raise AekitError(
            f"{total} patches of {c}x{ph}x{pw} do not fit in memory; pass a larger --stride or fewer --bands"
        ) from None
    offsets = np.cumsum([0] + [len(p) for _, _, p in plans])
    return _Items(array=array, mask=mask, kept=np.zeros(total, bool), offsets=offsets)


def _read_items(
    plans: list,
    items: _Items,
    bands: list[int],
    layout: _Layout,
    opts: RasterOptions,
    store: np.dtype,
    show_progress: bool,
) -> dict[int, str]:
    """Read every planned item into `items`, files in parallel (GDAL reads release the GIL). Returns
    {plan index: reason} of the files whose pixels could not be read (a corrupt tile or strip: a
    header that opens is no promise); none of their items is kept."""
    rasterio = rasterio_module()

    def read_file(k: int) -> str | None:
        first_row = int(items.offsets[k])
        try:
            _read_file(plans[k], items, first_row, bands, layout, opts, store)
        except rasterio.errors.RasterioError as e:
            items.kept[first_row : int(items.offsets[k + 1])] = False
            return f"unreadable pixels ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        return None

    with ThreadPoolExecutor(min(_WORKERS, len(plans))) as pool:
        reasons = list(track(pool.map(read_file, range(len(plans))), len(plans), "reading rasters", show_progress))
    return {k: reason for k, reason in enumerate(reasons) if reason is not None}


def _read_file(
    plan: tuple, items: _Items, first_row: int, bands: list[int], layout: _Layout, opts: RasterOptions, store: np.dtype
) -> None:
    """One file's items, each through its own window, into rows `first_row`, `first_row` + 1, ...;
    items that are mostly nodata stay not kept, the others get their nodata filled and their mask."""
    f, info, positions = plan
    ph, pw = layout.ph, layout.pw
    nodata = effective_nodata(opts, info.nodata)
    with open_raster(f) as src:
        window_cls = rasterio_module().windows.Window
        for j, (y, x) in enumerate(positions):
            values = src.read(bands, window=window_cls(x, y, pw, ph))  # (C, ph, pw), only this window
            valid = valid_mask(values, nodata)
            if 1.0 - valid.mean() > MAX_NODATA:
                continue
            row = first_row + j
            if not valid.all():
                values = fill_patch(values, valid)
                if store.kind in "iu":
                    values = np.rint(values)
            items.array[row] = values.astype(store, copy=False)
            items.mask[row, 0] = valid
            items.kept[row] = True


def _drop_mostly_nodata(
    items: _Items, layout: _Layout, root: Path, notes: list[str], unread: int, skipped: list[Skipped]
) -> tuple[Any, Any]:
    """(array, mask) of the kept items only, the gaps closed in place; an error when none is kept.
    `unread` items belong to files that could not be read (listed in `skipped`), not to nodata."""
    rows = np.flatnonzero(items.kept)
    total = items.total - unread
    n_mostly = total - len(rows)
    if not total:
        raise AekitError(f"no readable raster under {root} (first: {skipped[-1].path}: {skipped[-1].reason})")
    if not len(rows):
        raise AekitError(
            f"every {layout.noun()} under {root} is more than {MAX_NODATA:.0%} nodata; "
            "check --nodata, or pass --bands to leave out an empty band"
        )
    if n_mostly:
        notes.append(f"{n_mostly} of {total} {layout.noun(plural=True)} skipped: more than 50% nodata")
    array, mask = items.array, items.mask
    if len(rows) < total:  # close the gaps, in place
        array[: len(rows)] = array[rows]
        mask[: len(rows)] = mask[rows]
    return array[: len(rows)], mask[: len(rows)]


def _item_ids(plans: list, items: _Items, layout: _Layout, root: Path) -> list[str]:
    """The kept items' names: the file's path for a tile, `path[y0:y1,x0:x1]` for a patch."""
    ph, pw = layout.ph, layout.pw
    ids = []
    for k, (f, _, positions) in enumerate(plans):
        rel = _rel(f, root)
        for j, (y, x) in enumerate(positions):
            if items.kept[items.offsets[k] + j]:
                ids.append(rel if layout.tiles else f"{rel}[{y}:{y + ph},{x}:{x + pw}]")
    return ids


def _value_notes(opts: RasterOptions, first: RasterInfo, store: np.dtype, any_nodata: bool) -> list[str]:
    """The notes on nodata and on units."""
    nodata_note = effective_nodata(opts, first.nodata)
    notes = [
        f"nodata: {nodata_note if nodata_note is not None else 'none set'}"
        + (" (and NaN)" if store.kind == "f" else "")
        + ("; nodata pixels left out of statistics, loss and metrics" if any_nodata else "; no nodata pixel found")
    ]
    if store != np.uint8:
        notes.append(f"{first.dtype} values kept in their own units, normalised per band (no /255)")
    return notes


def _raster_meta(infos: list[tuple[Path, RasterInfo]], opts: RasterOptions, bands: list[int], layout: _Layout) -> dict:
    """LoadedData.raster: how the files were read (stored in model.json by training)."""
    first = infos[0][1]
    return {
        "bands": bands,
        "file_band_count": first.count,
        "dtype": first.dtype,
        "nodata": opts.nodata,
        "file_nodata": first.nodata,
        "patch_size": None if layout.tiles else [layout.ph, layout.pw],
        "stride": layout.stride,
        "crs": next((i.crs for _, i in infos if i.crs), None),
        "descriptions": [first.descriptions[b - 1] for b in bands],
    }


def fill_patch(values: np.ndarray, valid: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    """float32 copy of (C, h, w) `values` whose nodata pixels (~`valid`) take the mean of their
    valid 4-neighbours, growing inwards up to half the patch; pixels further away take the patch's
    mean of valid pixels (`fallback`, e.g. the training means, when it has none). The model then
    sees no artificial edge at a nodata border; the loss, metrics and scores ignore these pixels."""
    x = np.where(valid, values, 0).astype(np.float32)
    if valid.all():
        return x
    if not valid.any():
        x[:] = 0.0 if fallback is None else np.asarray(fallback, np.float32).reshape(-1, 1, 1)
        return x
    known = valid.copy()
    for _ in range(max(valid.shape) // 2):
        k = known.astype(np.float32)
        total, count = _neighbour_sum(x), _neighbour_sum(k)  # x is 0 where not known yet
        new = ~known & (count > 0)
        if not new.any():
            break
        x[:, new] = total[:, new] / count[new]
        known |= new
    if not known.all():
        x[:, ~known] = x[:, valid].mean(axis=1)[:, None]
    return x


def _neighbour_sum(a: np.ndarray) -> np.ndarray:
    """Sum of the 4 neighbours of every pixel of (..., h, w), zero beyond the edges."""
    out = np.zeros_like(a)
    out[..., 1:, :] += a[..., :-1, :]
    out[..., :-1, :] += a[..., 1:, :]
    out[..., :, 1:] += a[..., :, :-1]
    out[..., :, :-1] += a[..., :, 1:]
    return out


def _ranges(bands: list[int]) -> str:
    if bands == list(range(1, len(bands) + 1)) and len(bands) > 2:
        return f"1-{len(bands)}"
    return ",".join(map(str, bands))


def options_key(opts: RasterOptions, grid: bool) -> dict:
    """What decides a raster cache entry besides the files themselves."""
    key = asdict(opts)
    key.pop("required")
    key["grid"] = grid
    if grid:
        key.pop("seed")  # the grid does not depend on it
    return key
