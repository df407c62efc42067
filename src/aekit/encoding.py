"""`aekit encode`: latent codes of every item in DATA, one row per item with its identifier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .data import ImageData, Skipped, load_data
from .errors import AekitError
from .inference import Autoencoder, load
from .tables import check_output, write_vectors


def read_for_model(
    model: Autoencoder,
    data: Any,
    *,
    verbose: bool = True,
    cache_dir: str | Path | None = "default",
    stream: bool = True,
    layout: str | None = None,
) -> ImageData:
    """Read DATA with the model's own preprocessing (channels, size, bit depth), through the cache;
    a cached folder stays memory-mapped (one pass over it needs no copy in memory)."""
    c, h, w = model.input_shape
    high = model.meta["input"]["dtype"] == "uint16"
    return load_data(
        data,
        channels=c,
        image_size=(h, w),
        high=high,
        show_progress=verbose,
        cache_dir=cache_dir,
        stream=stream,
        layout=layout,
    )


def encode_items(
    run: str | Path,
    data: Any,
    *,
    batch_size: int = 256,
    device: str = "auto",
    precision: str = "fp32",
    verbose: bool = True,
    cache_dir: str | Path | None = "default",
    layout: str | None = None,
) -> tuple[list[str], np.ndarray, list[Skipped]]:
    """(ids, latent codes, skipped) of every item of DATA under the model in RUN."""
    if batch_size < 1:
        raise AekitError(f"batch size must be a positive integer, got {batch_size}")
    model = load(run, device=device, precision=precision)
    items = read_for_model(model, data, verbose=verbose, cache_dir=cache_dir, layout=layout)
    z = np.concatenate(
        [
            model.encode(items.array[i : i + batch_size], layout="NCHW", batch_size=batch_size)
            for i in range(0, len(items), batch_size)
        ]
    )
    return list(items.ids), z, items.skipped


def encode_to_file(
    run: str | Path,
    data: Any,
    output: str | Path,
    *,
    batch_size: int = 256,
    device: str = "auto",
    precision: str = "fp32",
    verbose: bool = True,
    cache_dir: str | Path | None = "default",
    layout: str | None = None,
) -> tuple[list[Path], int, list[Skipped]]:
    """Encode DATA with the model in RUN and write `output`; returns (files written, items, skipped)."""
    check_output(output)  # fail on a bad path or extension before any work
    ids, z, skipped = encode_items(
        run,
        data,
        batch_size=batch_size,
        device=device,
        precision=precision,
        verbose=verbose,
        cache_dir=cache_dir,
        layout=layout,
    )
    return write_vectors(output, ids, z), len(ids), skipped
