"""Why an item is flagged: error maps for images, the columns that make a row odd for tables.

- `aekit score RUN DATA -o scores.csv --maps DIR` writes, for each flagged item (at most
  `--maps-limit`, the highest scores first), DIR/<the item's path>.png: the input, its reconstruction
  and the per-pixel error as a heatmap (`Autoencoder.explain`), named like the item and mirroring
  its folder tree (an array's items by row number).
- Table rows get `top_features` in the scores file: up to TOP_FEATURES column names, joined by ";",
  those with the largest share of the row's squared reconstruction error (each at least MIN_SHARE).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aekit.core.errors import AekitError
from aekit.core.rundir import atomic_write, check_creatable

TOP_FEATURES = 3
MIN_SHARE = 0.1  # a column named in top_features holds at least this share of the row's error (the first always)


def top_features(shares: np.ndarray, columns: list[str], k: int = TOP_FEATURES) -> list[str]:
    """For (N, F) shares of each row's error: the names of up to k columns, largest share first."""
    order = np.argsort(-shares, axis=1, kind="stable")[:, :k]
    return [
        ";".join(columns[j] for n, j in enumerate(row) if n == 0 or shares[i, j] >= MIN_SHARE)
        for i, row in enumerate(order)
    ]


def check_maps_dir(maps: str | Path, data: Any) -> Path:
    """The maps folder: creatable, and not inside the input folder (the next run would read its pictures)."""
    out = Path(maps)
    if out.exists() and not out.is_dir():
        raise AekitError(f"--maps {out} is a file; pass a folder for the error maps")
    check_creatable(out)
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        inside = out.resolve() == Path(data).resolve() or Path(data).resolve() in out.resolve().parents
        if inside:
            raise AekitError(f"--maps {out} is inside the input folder {data}; pass a folder outside it")
    return out


def write_maps(out: Path, model: Any, items: Any, result: Any, limit: int, batch_size: int) -> list[Path]:
    """One picture per flagged item, the highest scores first, at most `limit`; returns the files."""
    from aekit.core.error_maps import map_picture
    from aekit.core.plots import pick_channels, preview_channels, stretch_limits, to_display
    from aekit.core.rundir import MAPS_MARKER, mark_output
    from aekit.inference.reconstruct import target_path

    flagged = np.flatnonzero(result.is_anomaly)
    chosen = flagged[np.argsort(-result.scores[flagged], kind="stable")][: max(0, limit)]
    if not len(chosen):
        return []
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out, MAPS_MARKER)  # aekit's pictures: never read as data
    raster = model.meta.get("raster")
    rgb = preview_channels(raster.get("rgb_bands"), raster["bands"], model.input_shape[0]) if raster else None
    used: set[str] = set()
    written = []
    for start in range(0, len(chosen), batch_size):
        idx = chosen[start : start + batch_size]
        sel = np.sort(idx)  # memory-mapped data is read forward
        x = np.asarray(items.array[sel])
        recon = np.asarray(model.reconstruct(x, layout="NCHW", batch_size=batch_size), np.float32) / model.scale
        errors = model.explain(x, layout="NCHW", batch_size=batch_size)
        original = x.astype(np.float32) / model.scale
        mask = None if items.mask is None else np.asarray(items.mask[sel])
        for j, i in enumerate(sel):
            pair = np.stack([original[j], recon[j]])
            limits = stretch_limits(pick_channels(pair[:1], rgb), None) if raster else None
            tiles = to_display(pair, rgb, limits, None if mask is None else np.stack([mask[j], mask[j]]))
            title = f"{items.ids[i]}: score {result.scores[i]:.4g} > threshold {result.threshold['value']:.4g}"
            picture = map_picture(tiles[0], tiles[1], errors[j], title)
            path = out / target_path(_relative(items.ids[i], items.id_name), ".png", used)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda p, pic=picture: pic.save(p, format="PNG"))
            written.append(path)
    return written


def _relative(item_id: str, id_name: str | None) -> str:
    """An item's path inside the maps folder: its own relative path, or its row number; never a
    path that leaves the folder."""
    parts = [p for p in str(item_id).replace("\\", "/").split("/") if p not in ("", ".", "..")]
    name = "/".join(parts) or "item"
    return f"{int(name):06d}" if id_name in (None, "row") and name.isdigit() else name
