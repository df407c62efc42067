"""Pictures of a run: reconstruction grid (Pillow, labelled by grid_labels.py), loss curves and,
for tables, reconstructed against original values (matplotlib, Agg), as files or PNG bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from aekit.core.errors import AekitError
from aekit.core.grid_labels import GridText, labelled_grid
from aekit.core.rundir import atomic_write


def preview_channels(rgb_bands: list[int] | None, bands: list[int] | None, channels: int) -> list[int] | None:
    """0-based channels shown as red, green, blue (or gray): `rgb_bands` are numbered like `bands`
    (file band numbers for rasters, 1-based channels otherwise); None: the default choice."""
    if rgb_bands is None:
        return None
    numbers = bands or list(range(1, channels + 1))
    missing = [b for b in rgb_bands if b not in numbers]
    if missing:
        raise AekitError(
            f"rgb_bands {rgb_bands}: band {missing[0]} is not in the data, which has bands {numbers}; "
            "pass bands from that list"
        )
    return [numbers.index(b) for b in rgb_bands]


def pick_channels(x: np.ndarray, rgb: list[int] | None = None) -> np.ndarray:
    """(N, C, H, W) -> (N, 3, H, W): the `rgb` channels, else gray as gray or the first three."""
    if rgb is not None:
        x = x[:, rgb]
    if x.shape[1] == 1:
        return np.repeat(x, 3, axis=1)
    if x.shape[1] == 2:
        return np.concatenate([x, x[:, :1]], axis=1)
    return x[:, :3]


def stretch_limits(x: np.ndarray, mask: np.ndarray | None = None, low: float = 2, high: float = 98) -> np.ndarray:
    """(3, 2) per-channel percentiles of (N, 3, H, W) `x` over valid pixels: the display range."""
    limits = np.zeros((x.shape[1], 2))
    for c in range(x.shape[1]):
        v = x[:, c][mask[:, 0]] if mask is not None else x[:, c].ravel()
        v = v[np.isfinite(v)]
        if v.size:
            limits[c] = np.percentile(v, [low, high])
        if limits[c, 1] <= limits[c, 0]:
            limits[c, 1] = limits[c, 0] + 1e-12
    return limits


def to_display(
    unit: np.ndarray,
    rgb: list[int] | None = None,
    limits: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """(N, C, H, W) values in [0, 1] units -> (N, H, W, 3) uint8 for viewing: the `rgb` channels
    (default: gray stays gray, else the first three), stretched to `limits` ((3, 2) low/high per
    channel) when given; pixels outside `mask` (N, 1, H, W) are black."""
    x = pick_channels(unit, rgb)
    if limits is not None:
        x = (x - limits[None, :, :1, None]) / (limits[None, :, 1:, None] - limits[None, :, :1, None])
    else:
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        if lo < -0.05 or hi > 1.05:  # not [0, 1] data (e.g. float arrays): stretch for display
            x = (x - lo) / max(hi - lo, 1e-12)
    if mask is not None:
        x = np.where(mask, x, 0.0)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def recon_grid(
    originals: np.ndarray,
    recons: np.ndarray,
    path: Path,
    min_side: int = 64,
    *,
    rgb: list[int] | None = None,
    stretch: bool = False,
    mask: np.ndarray | None = None,
    text: GridText | None = None,
) -> None:
    """Originals (top row) above their reconstructions (bottom row), both (N, C, H, W) in [0, 1]
    units, the rows named at the left and, with `text`, each item's name above it and its error or
    score below (core/grid_labels.py). Multi-band data shows the `rgb` channels; `stretch` maps each
    shown channel's 2nd-98th percentile of the originals' valid pixels (`mask`) to black-white, the
    same for both rows."""
    limits = stretch_limits(pick_channels(originals, rgb), mask) if stretch else None
    both = None if mask is None else np.concatenate([mask, mask])
    tiles = to_display(np.concatenate([originals, recons]), rgb, limits, both)
    picture = labelled_grid(tiles[: len(originals)], tiles[len(originals) :], text, min_side)
    atomic_write(path, lambda p: picture.save(p, format="PNG"))


def tile_grid(unit: np.ndarray, path: Path, cols: int | None = None, min_side: int = 48, pad: int = 2) -> None:
    """(N, C, H, W) images in [0, 1] units as a grid (`cols` per row, default square-ish) in a PNG."""
    paste_tiles(to_display(unit), path, cols, min_side, pad)


def paste_tiles(tiles: np.ndarray, path: Path, cols: int | None = None, min_side: int = 48, pad: int = 2) -> None:
    """(N, H, W, 3) uint8 tiles as a grid in a PNG, zoomed so that tiles are at least `min_side`."""
    n, h, w, _ = tiles.shape
    cols = cols or max(1, int(np.ceil(np.sqrt(n))))
    rows = int(np.ceil(n / cols))
    zoom = max(1, int(np.ceil(min_side / max(1, min(h, w)))))
    ch, cw = h * zoom, w * zoom
    canvas = np.full((rows * ch + (rows + 1) * pad, cols * cw + (cols + 1) * pad, 3), 255, np.uint8)
    for i in range(n):
        y, x = pad + (i // cols) * (ch + pad), pad + (i % cols) * (cw + pad)
        canvas[y : y + ch, x : x + cw] = tiles[i].repeat(zoom, axis=0).repeat(zoom, axis=1)
    atomic_write(path, lambda p: Image.fromarray(canvas).save(p, format="PNG"))


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported only when plotting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (no metadata, so no links inside), and closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    pyplot().close(fig)
    return buf.getvalue()


def loss_png(rows: list[dict], dpi: int = 100) -> bytes:
    """Train and validation loss per epoch (`metrics.csv` rows) as a PNG."""
    import matplotlib.ticker

    plt = pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(epochs, [r["train_loss"] for r in rows], label="train", marker="o", ms=3)
    ax.plot(epochs, [r["val_loss"] for r in rows], label="validation", marker="o", ms=3)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("loss (MSE, normalised units)")
    if min(min(r["train_loss"], r["val_loss"]) for r in rows) > 0:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return figure_png(fig, dpi)


def loss_plot(rows: list[dict], path: Path) -> None:
    png = loss_png(rows)
    atomic_write(path, lambda p: p.write_bytes(png))


TABLE_POINTS = 20000


def table_recon_plot(original: np.ndarray, recon: np.ndarray, path: Path) -> None:
    """Tables: reconstructed against original values, (N, F) in standardised units, one point per
    value, coloured by column (10 colours, repeating); on the diagonal is a perfect reconstruction.
    One scatter call for all columns, at most TABLE_POINTS points (a seeded sample): a table of
    10000 columns plots in a second, not in minutes of one call per column."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    column = np.tile(np.arange(original.shape[1]), original.shape[0])
    o, r = original.ravel(), recon.ravel()
    if o.size > TABLE_POINTS:
        pick = np.sort(np.random.default_rng(0).choice(o.size, TABLE_POINTS, replace=False))
        o, r, column = o[pick], r[pick], column[pick]
    ax.scatter(o, r, s=4, alpha=0.4, c=column % 10, cmap="tab10", vmin=-0.5, vmax=9.5, linewidths=0)
    lo = float(min(original.min(), recon.min()))
    hi = float(max(original.max(), recon.max()))
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8)
    ax.set_xlabel("original (standardised)")
    ax.set_ylabel("reconstruction (standardised)")
    ax.set_title(f"{original.shape[0]} validation rows x {original.shape[1]} columns", fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
