"""RUN/worst_maps.png: the validation items with the highest anomaly scores, each as its input, its
reconstruction and its error map (core/error_maps.py), written at the end of training for the
report (images only: a table's rows are explained by their columns in `aekit score`)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from aekit.core.rundir import atomic_write
from aekit.data.base import LoadedData

FILENAME = "worst_maps.png"
N_SHOWN = 4


def write_worst_maps(run_dir: Path, data: LoadedData, *, device: str = "auto", n: int = N_SHOWN) -> Path | None:
    """The `n` validation items of highest default score (validation_scores.csv) with their error
    maps; None for tables or when the items cannot be found in `data`."""
    from aekit.core.error_maps import map_picture, stacked
    from aekit.core.plots import pick_channels, preview_channels, stretch_limits, to_display
    from aekit.inference.model import load
    from aekit.measures.thresholds import VALIDATION_COLUMNS, VALIDATION_FILE

    if data.columns is not None or data.stream:
        return None
    model = load(run_dir, device=device)
    column = VALIDATION_COLUMNS.get(model.score_metric, "score")
    with open(run_dir / VALIDATION_FILE, newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: -float(r[column]))[:n]
    where = {item: i for i, item in enumerate(data.ids)}
    rows = [r for r in rows if r["id"] in where]
    if not rows:
        return None
    idx = [where[r["id"]] for r in rows]
    x = np.asarray(data.array[idx])
    recon = np.asarray(model.reconstruct(x, layout="NCHW"), np.float32) / model.scale
    errors = model.explain(x, layout="NCHW")
    raster = model.meta.get("raster")
    rgb = preview_channels(raster.get("rgb_bands"), raster["bands"], x.shape[1]) if raster else None
    threshold = model.threshold
    pictures = []
    for j, r in enumerate(rows):
        pair = np.stack([x[j].astype(np.float32) / model.scale, recon[j]])
        limits = stretch_limits(pick_channels(pair[:1], rgb), None) if raster else None
        mask = None if data.mask is None else np.stack([data.mask[idx[j]]] * 2)
        tiles = to_display(pair, rgb, limits, mask)
        above = f" > threshold {threshold:.4g}" if threshold is not None and float(r[column]) > threshold else ""
        pictures.append(map_picture(tiles[0], tiles[1], errors[j], f"{r['id']}: score {float(r[column]):.4g}{above}"))
    path = run_dir / FILENAME
    sheet = stacked(pictures)
    atomic_write(path, lambda p: sheet.save(p, format="PNG"))
    return path
