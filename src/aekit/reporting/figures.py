"""The figures the report draws itself (matplotlib, Agg) as PNG bytes: the histogram of the
validation scores and the embedding map. The loss curves come from core/plots.py; recon.png and
detection.png are read from the run folder."""

from __future__ import annotations

from collections import Counter

import numpy as np

from aekit.core.plots import figure_png, pyplot

MAX_GROUPS = 12  # legend entries of the embedding map; smaller groups become "other"
OTHER = "other"
DPI = 200  # figures are drawn at twice their displayed size: sharp on high-density screens


def fig_width(inches: float) -> int:
    """The width in CSS pixels at which a figure of `inches` shows (100 dpi; drawn at DPI)."""
    return round(inches * 100)


def scores_png(
    scores: list[float], threshold: float | None, what: str = "reconstruction MSE (pixels in [0, 1])"
) -> bytes:
    """Histogram of validation anomaly scores with the threshold as a vertical line; `what` the score is."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    bins = min(60, max(5, len(np.histogram_bin_edges(scores, bins="auto")) - 1))
    ax.hist(scores, bins=bins, color="#4c78a8", edgecolor="white", linewidth=0.5, label="validation items")
    if threshold is not None:
        ax.axvline(threshold, color="#d62728", linestyle="--", linewidth=1.5, label=f"threshold {threshold:.4g}")
    ax.set_xlabel(f"anomaly score: {what}")
    ax.set_ylabel("items")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return figure_png(fig, DPI)


def legend_groups(groups: list[str], cap: int = MAX_GROUPS) -> list[str]:
    """Each item's label on the map: its group, or OTHER when there are more than `cap` groups and
    its group is not among the cap - 1 largest."""
    counts = Counter(groups)
    if len(counts) <= cap:
        return list(groups)
    keep = {g for g, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: cap - 1]}
    return [g if g in keep else OTHER for g in groups]


def embedding_png(groups: list[str], xy: np.ndarray) -> bytes:
    """Scatter of the 2-D embedding map, one colour per (capped) group, legend with counts."""
    plt = pyplot()
    labels = legend_groups(groups)
    counts = Counter(labels)
    order = sorted((g for g in counts if g != OTHER), key=lambda g: (-counts[g], g))
    palette = plt.get_cmap("tab10").colors
    if len(order) > 9:  # tab20 comes in light/dark pairs: all dark shades first, so neighbours differ
        pairs = plt.get_cmap("tab20").colors
        palette = pairs[0::2] + pairs[1::2]
    palette = [c for c in palette if not c[0] == c[1] == c[2]]  # grey is for "other" only
    fig, ax = plt.subplots(figsize=(7, 4.2))
    size = 14 if len(labels) < 500 else 6
    lab = np.array(labels, dtype=object)
    for i, g in enumerate([*order, OTHER] if OTHER in counts else order):
        m = lab == g
        color = "#9a9a9a" if g == OTHER else palette[i % len(palette)]
        ax.scatter(xy[m, 0], xy[m, 1], s=size, alpha=0.75, color=color, linewidths=0, label=f"{g} ({counts[g]})")
    ax.set_xlabel("principal axis 1 of the codes")
    ax.set_ylabel("principal axis 2")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8, markerscale=1.5)
    fig.tight_layout()
    return figure_png(fig, DPI)
