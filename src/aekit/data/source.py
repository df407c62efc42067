"""The one way in for data: `open_data(data, request)` decides, once, what the user's source is and
reads it the way the caller asks; training, every command that uses a model, and the detector call
it and nothing else.

What DATA can be, in the order it is decided:
- `LoadedData` already read: used as it is;
- tar shards (a folder of .tar, one .tar, a brace pattern, a URL; data/stream.py): never decoded
  here in full. Training gets the plan and the first sample (the rest is decoded on the fly);
  inference gets only the plan (the model's) and reads the shards one batch at a time;
- a table: .csv/.tsv/.parquet, or a 2-D array (tables.py);
- an array file .npy/.npz, a numpy array or torch tensor of images (memory.py);
- rasters (GeoTIFF and other GDAL formats, rasters.py), in patches: at seeded random positions to
  train, on a regular grid (`Request.grid`) to use a model;
- a folder or file of images (images.py), decoded once into the cache (cache.py); under torchrun
  a training run reads an image folder in node shards (shards.py), and the other commands let one
  process per machine build the cache while the others wait;
- a `torch.utils.data.Dataset` yielding tensors, tuples or dicts (memory.py).

`Request` says how: what training asks for (`Request.for_training(cfg)`) or what a trained model
takes (`Request.for_model(meta)`), with the cache and output choices of the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aekit.config.train import TrainConfig, parse_columns
from aekit.core import distributed
from aekit.core.errors import AekitError
from aekit.data.base import LoadedData


@dataclass(frozen=True)
class Request:
    """How to read DATA: the preprocessing (None: inferred from the data) and the reading choices."""

    channels: int | None = None  # images: 1, 3 or 4
    image_size: tuple[int, int] | None = None  # images: (H, W), resized to cover and center-cropped
    high: bool | None = None  # images: keep 16 bits (None: as the files are)
    extensions: tuple[str, ...] = ()  # images: extra file extensions
    layout: str | None = None  # array files: NHW, NHWC or NCHW (None: inferred)
    columns: list[str] | None = None  # tables: the feature columns (None: every numeric column)
    id_column: str | None = None  # tables: the column that identifies rows
    prefer_id: str | None = None  # tables: the identifier column to use when DATA has it (a model's)
    raster: Any = None  # RasterOptions: bands, patches, nodata (None: rasters read with the defaults)
    grid: bool = False  # rasters: patches on a regular grid (a model's use) rather than at random positions
    cache_dir: str | Path | None = "default"  # "default": $AEKIT_CACHE_DIR or ~/.cache/aekit; None: no cache
    mapped: bool = False  # leave a cached folder memory-mapped (one pass over it) instead of in memory
    training: bool = True  # tar shards: read a first sample to train on (else only their plan)
    table: bool | None = None  # a model's kind: True a table, False images (None: whatever DATA is)

    @classmethod
    def for_training(cls, cfg: TrainConfig) -> Request:
        """What `aekit train` asks of its data (the preprocessing options of `cfg`)."""
        from aekit.data.rasters import RasterOptions

        return cls(
            channels=cfg.channels,
            image_size=None if cfg.image_size is None else (int(cfg.image_size[0]), int(cfg.image_size[-1])),
            extensions=tuple(cfg.extensions),
            layout=cfg.layout,
            columns=cfg.columns,
            id_column=cfg.id_column,
            raster=RasterOptions(cfg.bands, cfg.patch_size, cfg.stride, cfg.nodata, cfg.seed),
            cache_dir=cfg.cache_dir,
        )

    @classmethod
    def for_model(cls, meta: dict, **choices: Any) -> Request:
        """What a trained model (its model.json) takes: its channels, size and bit depth, a table's
        columns, a raster model's bands, nodata and patches on a grid; `choices` (cache_dir, layout,
        id_column, mapped) are the call's."""
        c, h, w = meta["input"]["channels"], meta["input"]["height"], meta["input"]["width"]
        table = meta.get("table")
        raster = None
        if "raster" in meta:  # the training run's bands, nodata and patch size
            from aekit.data.rasters import RasterOptions

            raster = RasterOptions.from_meta(meta["raster"])
            raster.required = True
            if raster.patch_size is None and h == w:
                raster.patch_size = h  # a model of whole tiles cuts larger rasters into tiles of its size
        if table:
            return cls(
                columns=table["columns"], prefer_id=table.get("id_column"), training=False, table=True, **choices
            )
        high = meta["input"]["dtype"] == "uint16"
        return cls(
            channels=c, image_size=(h, w), high=high, raster=raster, grid=True, training=False, table=False, **choices
        )


def open_data(data: Any, request: Request = Request(), *, ctx=None, verbose: bool = True) -> LoadedData:
    """DATA read as `request` says (see the module's docstring for what DATA can be). Under torchrun
    (`ctx` active) every process calls it: training reads an image folder in node shards, the other
    commands let local rank 0 build the cache first. A model's data of the wrong kind (a table for
    an image model, or the reverse) is a one-line error."""
    from aekit.data.stream import is_stream_source

    if isinstance(data, LoadedData):
        return data
    if is_stream_source(data):
        return _check_kind(_shards(data, request, verbose), request)
    ctx = ctx or distributed.context()
    if ctx.active and request.training and _image_folder(data, request, ctx):
        from aekit.data.shards import read_folder_shared

        r = request
        return read_folder_shared(
            data,
            ctx,
            cache_dir=r.cache_dir,
            channels=r.channels,
            image_size=r.image_size,
            extensions=r.extensions,
            show_progress=verbose,
        )
    with distributed.local_rank_first(ctx):  # one process per machine decodes into the cache
        return _check_kind(_read(data, request, verbose), request)


def reachable(source: str) -> bool:
    """Whether a run's recorded data (config.yaml `data`) can be opened here: a path that exists, or
    tar shards by URL or brace pattern."""
    from aekit.data.stream import is_stream_source

    return Path(source).exists() or "://" in source or is_stream_source(source)


def load_data(data: Any, *, show_progress: bool = True, stream: bool = False, **request: Any) -> LoadedData:
    """`open_data` in one process with the fields of `Request` as keywords (`stream=True`: leave a
    cached folder memory-mapped)."""
    if "columns" in request:
        request["columns"] = parse_columns(request["columns"])
    if request.get("image_size") is not None:
        size = request["image_size"]
        request["image_size"] = (int(size[0]), int(size[-1]))
    return open_data(data, Request(mapped=stream, **request), ctx=distributed.Context(), verbose=show_progress)


def _read(data: Any, r: Request, verbose: bool) -> LoadedData:
    """Tables, arrays, rasters, image folders and Datasets, decided in that order."""
    import numpy as np
    import torch

    from aekit.data.memory import ARRAY_SUFFIXES, from_array, from_dataset, read_array_file
    from aekit.data.rasters import RasterOptions, use_rasterio
    from aekit.data.tables import TABLE_SUFFIXES, read_table_file

    suffix = Path(data).suffix.lower() if isinstance(data, (str, Path)) else ""
    if suffix in TABLE_SUFFIXES:
        return read_table_file(Path(data), columns=r.columns, id_column=r.id_column, prefer_id=r.prefer_id)
    if suffix in ARRAY_SUFFIXES:
        return read_array_file(Path(data), layout=r.layout, columns=r.columns, id_column=r.id_column)
    if isinstance(data, (np.ndarray, torch.Tensor)):
        return from_array(data, layout=r.layout, columns=r.columns, id_column=r.id_column)
    if isinstance(data, (str, Path)) and use_rasterio(data, r.raster or RasterOptions()):
        return _rasters(data, r, verbose)
    if isinstance(data, (str, Path)):
        return _images(data, r, verbose)
    if isinstance(data, torch.utils.data.Dataset):
        return from_dataset(data, layout=r.layout, columns=r.columns, id_column=r.id_column)
    raise AekitError(f"cannot read data of type {type(data).__name__}; pass a folder path, an array or a Dataset")


def _images(data: str | Path, r: Request, verbose: bool) -> LoadedData:
    """A folder or file of images, through the decode cache unless `cache_dir` is None."""
    from aekit.data.cache import read_images_cached
    from aekit.data.images import read_images

    opts = dict(
        channels=r.channels, image_size=r.image_size, extensions=r.extensions, high=r.high, show_progress=verbose
    )
    if r.cache_dir is None:
        return read_images(data, **opts)
    cache = None if r.cache_dir == "default" else r.cache_dir
    return read_images_cached(data, cache_dir=cache, in_memory_limit=0 if r.mapped else None, **opts)


def _rasters(data: str | Path, r: Request, verbose: bool) -> LoadedData:
    """Rasters in patches, never converted or resized: channels and size may only restate what
    they are (as a run's config.yaml does)."""
    from aekit.data.raster_cache import read_rasters_cached
    from aekit.data.rasters import RasterOptions, read_rasters

    opts = r.raster or RasterOptions()
    if r.cache_dir is None:
        items = read_rasters(data, opts, grid=r.grid, show_progress=verbose)
    else:
        cache = None if r.cache_dir == "default" else r.cache_dir
        mapped = 0 if r.mapped else None
        items = read_rasters_cached(
            data, opts, grid=r.grid, cache_dir=cache, show_progress=verbose, in_memory_limit=mapped
        )
    c, h, w = items.shape
    if r.channels is not None and r.channels != c:
        raise AekitError(
            f"{items.source} is read as rasters with {c} bands, never converted: instead of --channels "
            f"{r.channels}, pass --bands to choose bands"
        )
    if r.image_size is not None and tuple(r.image_size) != (h, w):
        raise AekitError(
            f"{items.source} is read as rasters in {h}x{w} items, never resized: instead of --image-size, "
            "pass --patch-size to cut patches"
        )
    return items


def _shards(data: Any, r: Request, verbose: bool) -> LoadedData:
    """Tar shards: to train, their plan and first sample (read_stream); to use a model, the
    model's plan and no item (the commands read them one batch at a time)."""
    from aekit.data.stream import expand_shards, read_stream, source_name

    if r.training:
        return read_stream(data, channels=r.channels, image_size=r.image_size, show_progress=verbose)
    if r.table or r.raster is not None:
        raise AekitError(
            f"{data} holds tar shards of images, and the model was trained on "
            f"{'a table' if r.table else 'rasters'}; pass data like its training data"
        )
    import numpy as np

    from aekit.data.images import _Plan

    c, (h, w) = r.channels, r.image_size
    empty = np.zeros((0, c, h, w), np.uint16 if r.high else np.uint8)
    items = LoadedData(empty, ids=[], scale=65535.0 if r.high else 255.0, source=source_name(data), id_name="key")
    items.stream = {"shards": expand_shards(str(data)), "plan": _Plan(c, (h, w), bool(r.high))}
    return items


def _check_kind(items: LoadedData, r: Request) -> LoadedData:
    """Table options only for tables; a model's data of its kind (a table for a table model, images
    for an image model)."""
    table = items.columns is not None
    if r.training and not table and (r.columns or r.id_column):
        flag = "--columns" if r.columns else "--id-column"
        raise AekitError(f"{flag} applies to tables (.csv, .parquet, 2-D arrays); {items.source} holds images")
    if r.table is False and r.id_column:
        raise AekitError("--id-column applies to tables; the model was trained on images")
    if r.table is not None and r.table != table:
        kinds = ("a table", "images") if r.table else ("images", "a table")
        raise AekitError(
            f"the model was trained on {kinds[0]} and {items.source} holds {kinds[1]}; pass data like its training data"
        )
    return items


def _image_folder(data: Any, r: Request, ctx) -> bool:
    """Whether DATA is read as image files rather than rasters, decided by rank 0 alone (which
    looks through the folder) for every rank; rank 0's error raised on every rank."""
    from aekit.data.rasters import RasterOptions, use_rasterio
    from aekit.data.shards import is_image_path

    if not is_image_path(data):
        return False
    answer: bool | str | None = None
    if ctx.main:
        try:
            answer = not use_rasterio(data, r.raster or RasterOptions())
        except AekitError as e:
            answer = str(e)
    answer = distributed.broadcast(answer, ctx)
    if isinstance(answer, str):
        raise AekitError(answer)
    return bool(answer)
