"""A 2-D map of the embeddings, written at the end of training for the report.

Up to MAX_ITEMS items (a seeded sample) are encoded with the trained model and placed on the first
two principal axes of their codes. `embeddings_2d.csv` holds `id,group,x,y`; the group is the
item's first folder ("cats/img001.png" -> "cats"), or ROOT_GROUP for items without one, so the
report can colour the map by sub-folder: a label-free check of what the code separates.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from aekit.core.rundir import atomic_write
from aekit.data.base import LoadedData

MAX_ITEMS = 2000  # enough to see the structure; encoding them takes seconds even on a CPU
ROOT_GROUP = "(root)"
FILENAME = "embeddings_2d.csv"


def group_of(item_id: str) -> str:
    parts = item_id.replace("\\", "/").split("/")
    return parts[0] if len(parts) > 1 and parts[0] else ROOT_GROUP


def project_2d(z: np.ndarray) -> np.ndarray:
    """(N, D) codes -> (N, 2) coordinates on their first two principal axes (0 where there are fewer).

    Signs are fixed (the largest loading of each axis is positive), so a run's map is reproducible.
    """
    zc = z.astype(np.float64) - z.astype(np.float64).mean(0)
    xy = np.zeros((len(z), 2))
    if len(z) > 1:
        _, _, vt = np.linalg.svd(zc, full_matrices=False)  # vt: (min(N, D), D)
        axes = vt[:2]
        axes = axes * np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(1)])[:, None]
        xy[:, : len(axes)] = zc @ axes.T
    return xy


def write_embedding_map(
    run_dir: Path, data: LoadedData, *, seed: int = 0, device: str = "auto", max_items: int = MAX_ITEMS
) -> Path:
    """Encode a seeded sample of `data` with the model in `run_dir`; write RUN/embeddings_2d.csv."""
    from aekit.inference.model import load

    n = len(data)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, max_items), replace=False))
    z = load(run_dir, device=device).encode(data.array[rows], layout="NCHW")  # (n, latent_dim)
    xy = project_2d(np.asarray(z))
    path = Path(run_dir) / FILENAME

    def write(p: Path) -> None:
        with open(p, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "group", "x", "y"])
            for i, (x, y) in zip(rows, xy):
                item = data.ids[i]
                w.writerow([item, group_of(item), f"{x:.6g}", f"{y:.6g}"])

    atomic_write(path, write)
    return path
