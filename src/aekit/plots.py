"""Pictures of a run: reconstruction grid (Pillow), loss curves and, for tables, reconstructed
against original values (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .rundir import atomic_write


def to_display(unit: np.ndarray) -> np.ndarray:
    """(N, C, H, W) values in [0, 1] units -> (N, H, W, 3) uint8 for viewing (first 3 channels)."""
    x = unit
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    elif x.shape[1] == 2:
        x = np.concatenate([x, x[:, :1]], axis=1)
    x = x[:, :3]
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    if lo < -0.05 or hi > 1.05:  # not [0, 1] data (e.g. float arrays): stretch for display
        x = (x - lo) / max(hi - lo, 1e-12)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def recon_grid(originals: np.ndarray, recons: np.ndarray, path: Path, min_side: int = 64, pad: int = 2) -> None:
    """Originals (top row) above their reconstructions (bottom row), both (N, C, H, W) in [0, 1]."""
    top, bottom = to_display(originals), to_display(recons)
    n, h, w, _ = top.shape
    zoom = max(1, int(np.ceil(min_side / max(1, min(h, w)))))
    ch, cw = h * zoom, w * zoom
    canvas = np.full((2 * ch + 3 * pad, n * cw + (n + 1) * pad, 3), 255, np.uint8)
    for i in range(n):
        for row, imgs in enumerate((top, bottom)):
            tile = imgs[i].repeat(zoom, axis=0).repeat(zoom, axis=1)
            y, x = pad + row * (ch + pad), pad + i * (cw + pad)
            canvas[y : y + ch, x : x + cw] = tile
    atomic_write(path, lambda p: Image.fromarray(canvas).save(p, format="PNG"))


def loss_plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)


def table_recon_plot(original: np.ndarray, recon: np.ndarray, path: Path) -> None:
    """Tables: reconstructed against original values, (N, F) in standardised units, one point per
    value, coloured by column (10 colours, repeating); on the diagonal is a perfect reconstruction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    for j in range(original.shape[1]):
        ax.scatter(original[:, j], recon[:, j], s=4, alpha=0.4, color=f"C{j % 10}", linewidths=0)
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
