"""`aekit encode`: latent codes of every item in DATA, one row per item with its identifier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aekit.core import distributed
from aekit.core.errors import AekitError
from aekit.data import LoadedData, Skipped, load_data
from aekit.data.stream import is_stream_source
from aekit.inference.model import Autoencoder, check_batch_size, load
from aekit.inference.streamed import stream_pass, wants_stream
from aekit.inference.vectors import check_output, write_vectors


def read_for_model(
    model: Autoencoder,
    data: Any,
    *,
    verbose: bool = True,
    cache_dir: str | Path | None = "default",
    stream: bool = True,
    layout: str | None = None,
    id_column: str | None = None,
) -> LoadedData:
    """Read DATA with the model's own preprocessing (channels, size, bit depth), through the cache;
    a cached folder stays memory-mapped (one pass over it needs no copy in memory). A table model
    reads the columns it was trained on, rows keyed by `id_column` (default: the training's
    identifier column when DATA has it)."""
    if is_stream_source(data):  # encode and score read tar shards before they get here (streamed.py)
        raise AekitError(
            f"{data} holds tar shards: aekit train, encode and score read them; for this command extract "
            "them into a folder (tar -xf) or pass a folder of images"
        )
    c, h, w = model.input_shape
    high = model.meta["input"]["dtype"] == "uint16"
    table = model.columns is not None
    raster = None
    if "raster" in model.meta:  # the training run's bands, nodata and patch size, on a regular grid
        from aekit.data.rasters import RasterOptions

        raster = RasterOptions.from_meta(model.meta["raster"])
        raster.required = True
        if raster.patch_size is None and h == w:
            raster.patch_size = h  # a model of whole tiles cuts larger rasters into tiles of its size
    items = load_data(
        data,
        channels=None if table else c,
        image_size=None if table else (h, w),
        high=None if table else high,
        show_progress=verbose,
        cache_dir=cache_dir,
        stream=stream,
        layout=layout,
        columns=model.columns,
        id_column=id_column,
        prefer_id=model.id_column,
        raster=raster,
        grid=True,
    )
    if table != (items.columns is not None):
        kinds = ("a table", "images") if table else ("images", "a table")
        raise AekitError(
            f"the model was trained on {kinds[0]} and {items.source} holds {kinds[1]}; pass data like its training data"
        )
    if id_column and not table:
        raise AekitError("--id-column applies to tables; the model was trained on images")
    return items


def encode_items(
    run: str | Path,
    data: Any,
    *,
    batch_size: int = 256,
    device: str = "auto",
    precision: str = "auto",
    verbose: bool = True,
    cache_dir: str | Path | None = "default",
    layout: str | None = None,
    id_column: str | None = None,
) -> tuple[list[str], np.ndarray, list[Skipped], str]:
    """(ids, latent codes, skipped, id_name) of every item of DATA under the model in RUN; id_name
    says what the ids are: "path", a table's id column, or "row" for row numbers.

    `precision` "auto" computes as the run trained: with its `--precision` (by default bf16
    autocast where the CPU/GPU has native bf16: about 1.5x faster, codes within ~0.5% of fp32's;
    else fp32). Codes feed search, clustering and maps, where that is noise; scores stay fp32 by
    default, as they are compared with a threshold set in fp32. "fp32" gives the exported
    encoder's codes exactly."""
    check_batch_size(batch_size)
    if precision == "auto":
        precision = training_precision(run)
    ctx, model = load_on_rank(run, device, precision)  # under torchrun each rank encodes its share
    if wants_stream(model, data):  # tar shards: read on the fly, one batch at a time
        got = stream_pass(
            model,
            data,
            lambda x: model.encode(x, layout="NCHW", batch_size=batch_size),
            batch_size=batch_size,
            ctx=ctx,
            verbose=verbose and ctx.main,
        )
        return got.ids, got.values, got.skipped, got.id_name
    with distributed.local_rank_first(ctx):
        items = read_for_model(
            model, data, verbose=verbose and ctx.main, cache_dir=cache_dir, layout=layout, id_column=id_column
        )

    def encode_rows(rows: slice) -> np.ndarray:
        return np.concatenate(
            [
                model.encode(items.array[i : min(i + batch_size, rows.stop)], layout="NCHW", batch_size=batch_size)
                for i in range(rows.start, rows.stop, batch_size)
            ]
        )

    z = distributed.map_rows(encode_rows, len(items), np.zeros((0, model.latent_dim), np.float32), ctx)
    return list(items.ids), z, items.skipped, items.id_name or "row"


def training_precision(run: str | Path) -> str:
    """The `precision` the run in RUN trained with ("auto" when it does not say)."""
    from aekit.config.train import load_yaml
    from aekit.core.rundir import resolve_run

    try:
        return str((load_yaml(resolve_run(run) / "config.yaml") or {}).get("precision", "auto"))
    except (AekitError, OSError, ValueError):
        return "auto"  # a folder that is not a run: load() says so


def load_on_rank(run: str | Path, device: str, precision: str) -> tuple[distributed.Context, Autoencoder]:
    """The process group (under torchrun) and the model on this rank's device."""
    ctx = distributed.start(device)
    return ctx, load(run, device=distributed.rank_device(device, ctx), precision=precision)


def encode_to_file(
    run: str | Path, data: Any, output: str | Path, **options: Any
) -> tuple[list[Path], int, list[Skipped]]:
    """Encode DATA with the model in RUN (`options` as for `encode_items`) and write `output`;
    returns (files written, items, skipped)."""
    check_output(output)  # fail on a bad path or extension before any work
    ids, z, skipped, id_name = encode_items(run, data, **options)
    if not distributed.context().main:
        return [], len(ids), skipped  # rank 0 writes the merged output
    return write_vectors(output, ids, z, id_name=id_name), len(ids), skipped
