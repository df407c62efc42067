"""The decoded-data container shared by every reader."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aekit.core.errors import AekitError


@dataclass
class Skipped:
    """A file that was found but not used, and why."""

    path: str
    reason: str


@dataclass
class LoadedData:
    """Data read into memory, whatever its kind (images, arrays, rasters, tables): `array` is
    (N, C, H, W) in the data's raw units.

    `scale` is the value of a full-scale pixel (255 for 8-bit images, 65535 for 16-bit,
    1.0 for float data), so `array / scale` is in [0, 1] for images. A table of F columns is
    (N, F, 1, 1) with `columns` naming them (see data/tables.py).

    Rasters may have nodata pixels: `mask` is then (N, 1, H, W) bool, True where a pixel is
    valid, and `array` holds values filled in from valid neighbours there (data/rasters.py).
    `raster` describes how rasters were read (bands, nodata, patches), for model.json.
    """

    array: np.ndarray
    ids: list[str]
    scale: float
    source: str = ""
    skipped: list[Skipped] = field(default_factory=list)
    n_found: int = 0
    notes: list[str] = field(default_factory=list)
    load_seconds: float = 0.0  # wall time spent reading/decoding (or loading from the cache)
    columns: list[str] | None = None  # tables: the feature columns (array is (N, F, 1, 1)); None for images
    id_name: str | None = "path"  # what `ids` are (a column name in encode's output); None: row numbers
    mask: np.ndarray | None = None  # (N, 1, H, W) bool, True = valid; None when every pixel is valid
    raster: dict | None = None  # rasters only: bands, nodata, patch size, CRS... (see data/rasters.py)
    shard: dict | None = None  # a folder read in node shards under torchrun: node, nodes, files... (data/shards.py)
    stream: dict | None = None  # tar shards read on the fly: `array` is their first sample (data/stream.py)
    adapted: dict | None = None  # images made to fit a plan given to the reader: counts and an example (images.py)

    def __len__(self) -> int:
        return len(self.array)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one item."""
        return tuple(self.array.shape[1:])  # type: ignore[return-value]


MAX_MAGNITUDE = 1e18  # float data: squared errors in float32 overflow to Inf above about 1.8e19


def check_magnitude(x: np.ndarray, source: str, limit: float = MAX_MAGNITUDE) -> None:
    """Values so large that the float32 arithmetic of training would overflow to Inf are a clear
    error, not a run that ends with an MSE of inf."""
    if x.size == 0 or x.dtype.kind != "f":
        return
    peak = max(float(x.max()), -float(x.min()))
    if peak > limit:
        raise AekitError(
            f"{source} holds values up to {peak:.3g} in magnitude, too large for float32 arithmetic (above "
            f"{limit:.3g} errors overflow to Inf); divide the data by a constant (e.g. its maximum) first"
        )
