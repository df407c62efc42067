"""`aekit encode`: latent codes of every item in DATA, one row per item with its identifier."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aekit.config.commands import EncodeOptions, UseOptions
from aekit.core import distributed
from aekit.core.errors import AekitError
from aekit.data import LoadedData, Skipped
from aekit.data.source import Request, open_data
from aekit.inference.guard import check_data
from aekit.inference.model import Autoencoder, check_batch_size, load
from aekit.inference.shard_pass import shard_pass
from aekit.inference.vectors import check_output, write_vectors


def model_data(model: Autoencoder, data: Any, o: UseOptions, ctx=None, *, shards: bool = False) -> LoadedData:
    """DATA read the way the model takes it (data/source.py): its channels, size and bit depth, a
    table's columns (rows keyed by `o.id_column`, else the training's identifier column when DATA
    has it), a raster model's bands and patches on a grid; through the cache, a cached folder left
    memory-mapped (one pass over it needs no copy in memory). Tar shards come back with their plan
    and no item, for the commands that read them one batch at a time (`shards`: encode, score)."""
    request = Request.for_model(model.meta, cache_dir=o.cache_dir, layout=o.layout, id_column=o.id_column, mapped=True)
    items = open_data(data, request, ctx=ctx, verbose=o.verbose and (ctx is None or ctx.main))
    if items.stream is not None and not shards:
        raise AekitError(
            f"{data} holds tar shards: aekit train, encode and score read them; for this command extract "
            "them into a folder (tar -xf) or pass a folder of images"
        )
    return items


@dataclass
class Encoded:
    """The codes of every item of some data, in its order."""

    ids: list[str]
    codes: np.ndarray  # (N, latent_dim) float32
    skipped: list[Skipped]
    id_name: str  # what the ids are: "path", a table's id column, "key" (tar shards) or "row"


def encode_items(o: EncodeOptions) -> Encoded:
    """The codes of every item of `o.data` under the model in `o.run`.

    `o.precision` "auto" computes as the run trained: with its `--precision` (by default bf16
    autocast where the CPU/GPU has native bf16: about 1.5x faster, codes within ~0.5% of fp32's;
    else fp32). Codes feed search, clustering and maps, where that is noise; scores stay fp32 by
    default, as they are compared with a threshold set in fp32. "fp32" gives the exported
    encoder's codes exactly."""
    check_batch_size(o.batch_size)
    precision = training_precision(o.run) if o.precision == "auto" else o.precision
    ctx, model = load_on_rank(o.run, o.device, precision)  # under torchrun each rank encodes its share
    items = model_data(model, o.data, o, ctx, shards=True)
    if ctx.main:  # data unlike the training data: said, never silent
        check_data(model, items, o.verbose)
    batch = o.batch_size
    if items.stream is not None:  # tar shards: read on the fly, one batch at a time

        def encode(x: np.ndarray) -> np.ndarray:
            return model.encode(x, layout="NCHW", batch_size=batch)

        got = shard_pass(model, o.data, encode, batch_size=batch, ctx=ctx, verbose=o.verbose and ctx.main)
        return Encoded(got.ids, got.values, got.skipped, got.id_name)

    def encode_rows(rows: slice) -> np.ndarray:
        return np.concatenate(
            [
                model.encode(items.array[i : min(i + batch, rows.stop)], layout="NCHW", batch_size=batch)
                for i in range(rows.start, rows.stop, batch)
            ]
        )

    z = distributed.map_rows(encode_rows, len(items), np.zeros((0, model.latent_dim), np.float32), ctx)
    return Encoded(list(items.ids), z, items.skipped, items.id_name or "row")


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


def encode_to_file(o: EncodeOptions) -> tuple[list[Path], Encoded]:
    """Encode as `encode_items` and write `o.output` (.npy, .csv, .parquet); returns the files
    written (none on the other ranks under torchrun: rank 0 writes the merged output) and the codes."""
    check_output(o.output)  # fail on a bad path or extension before any work
    got = encode_items(o)
    if not distributed.context().main:
        return [], got
    return write_vectors(o.output, got.ids, got.codes, id_name=got.id_name), got
