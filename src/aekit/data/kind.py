"""What kind of data a run holds, and what follows from it: units, metrics, mask, previews.

Training, evaluation, scoring and the report ask this one object instead of passing flags around:
- images (8/16-bit): errors in pixels scaled to [0, 1], reconstructions clamped to that range;
- float arrays and non-8/16-bit rasters: errors in the data's own units, nothing clamped;
- rasters: previews with a percentile stretch, and with nodata a (N, 1, H, W) validity mask;
- tables (N, F, 1, 1): errors in standardised units (1.0 is as bad as predicting each column's
  mean), no SSIM, no flips.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aekit.config.choices import METRICS, TABLE_METRICS

PIXELS = "pixels in [0, 1]"
STANDARDISED = "standardised units"
OWN_UNITS = "the data's own units"


@dataclass(frozen=True)
class DataKind:
    table: bool = False  # rows of numeric columns, (N, F, 1, 1)
    bounded: bool = True  # integer pixels: values cannot leave [0, 1] once divided by the scale
    masked: bool = False  # rasters with nodata: a validity mask goes with the data
    raster: bool = False  # read from rasters (GeoTIFF, ...): previews are stretched

    @classmethod
    def of(cls, data) -> DataKind:
        """The kind of a data container (data/base.py)."""
        return cls(
            table=data.columns is not None,
            bounded=float(data.scale) != 1.0,
            masked=data.mask is not None,
            raster=data.raster is not None,
        )

    @classmethod
    def of_model(cls, meta: dict) -> DataKind:
        """The kind of data a saved model (model.json) was trained on."""
        return cls(
            table=bool(meta.get("table")),
            bounded=float(meta.get("normalization", {}).get("scale", 255.0)) != 1.0,
            raster=bool(meta.get("raster")),
        )

    @property
    def units(self) -> str:
        """What errors are measured in."""
        if self.table:
            return STANDARDISED
        return PIXELS if self.bounded else OWN_UNITS

    @property
    def metrics(self) -> tuple[str, ...]:
        return TABLE_METRICS if self.table else METRICS

    @property
    def default_metric(self) -> str:
        """The anomaly score a run of this kind uses unless told otherwise: the ensemble of its
        reconstruction error and its distances from the training items (measures/ensemble.py;
        benchmarks/oneclass.py: it beat each part alone and mse+latent on images and tables)."""
        return "ensemble"

    @property
    def item(self) -> str:
        """What one item is called in progress lines."""
        return "rows" if self.table else "img"

    def measured(self, normalizer, recon: torch.Tensor, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, target) in the units errors are measured in, from the model's
        normalised output and the raw batch: standardised for tables, else [0, 1] units (clamped
        for integer images)."""
        if self.table:
            return recon, normalizer.normalize(raw)
        return normalizer.to_unit(recon, self.bounded), raw.float() / normalizer.scale
