"""Anomaly detection quality against labels: AUROC, average precision, and precision, recall and
F1 at a threshold, with numpy alone (no scikit-learn at run time).

Labels: 1 = anomalous (the positive class), 0 = normal; a higher score means more anomalous.
Ties are handled as scikit-learn does: AUROC is the Mann-Whitney statistic with average ranks
(a tie between a normal and an anomalous item counts one half), and the curves step once per
distinct score, so tied items enter together. Average precision is the step-wise area under the
precision-recall curve, sum over thresholds of (R_n - R_n-1) * P_n, without interpolation
(`sklearn.metrics.average_precision_score`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aekit.core.errors import AekitError
from aekit.core.rundir import atomic_write

NORMAL_LABELS = ("0", "normal", "inlier", "good", "false", "no", "negative")
ANOMALOUS_LABELS = ("1", "anomalous", "anomaly", "abnormal", "outlier", "bad", "true", "yes", "positive")


def parse_labels(values: list[str], where: str) -> np.ndarray:
    """Text labels as 0 (normal) / 1 (anomalous): 0, normal, inlier, good, false, no, negative or
    1, anomalous, anomaly, abnormal, outlier, bad, true, yes, positive (any case; 0.0 and 1.0 too)."""
    out = np.empty(len(values), np.int8)
    for i, v in enumerate(values):
        t = str(v).strip().lower()
        if t in ("0.0", "1.0"):
            t = t[0]
        if t in NORMAL_LABELS:
            out[i] = 0
        elif t in ANOMALOUS_LABELS:
            out[i] = 1
        else:
            raise AekitError(
                f"{where}: label {v!r} (row {i}) is neither normal ({', '.join(NORMAL_LABELS)}) nor anomalous "
                f"({', '.join(ANOMALOUS_LABELS)}); recode the column"
            )
    return out


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    if y.shape != s.shape:
        raise AekitError(f"{len(y)} labels for {len(s)} scores; give one label per item")
    if np.isnan(s).any():
        raise AekitError(f"{int(np.isnan(s).sum())} score(s) are NaN; the model cannot score these items")
    if y.all() or not y.any():
        which = "anomalous" if y.any() else "normal"
        raise AekitError(f"all {len(y)} items are {which}: AUROC and average precision need both normal and anomalous")
    return y, s


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the chance that an anomalous item scores above a normal one
    (ties count one half), from average ranks."""
    y, s = _check(labels, scores)
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based average ranks
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, true positives, false positives) with items scoring >= each distinct score,
    highest score first."""
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last item of each group of equal scores
    tps = np.cumsum(y)[last]
    return s[last], tps, (last + 1) - tps


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) from (0, 0) to (1, 1), one step per distinct score."""
    y, s = _check(labels, scores)
    _, tps, fps = _counts(y, s)
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision), highest threshold first, one point per distinct score."""
    y, s = _check(labels, scores)
    _, tps, fps = _counts(y, s)
    return tps / tps[-1], tps / (tps + fps)


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    recall, precision = pr_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Counts and rates of the items flagged by `score > threshold` (as `aekit score` flags them);
    a ratio with nothing to divide by is 0."""
    y, s = _check(labels, scores)
    flag = s > threshold
    tp, fp = int((flag & y).sum()), int((flag & ~y).sum())
    fn, tn = int((~flag & y).sum()), int((~flag & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_positive_rate": fp / (fp + tn) if fp + tn else 0.0,
        "flagged": tp + fp,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def detection_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """AUROC, average precision (anomalous = positive), the counts, and the figures at `threshold`."""
    y, _ = _check(labels, scores)
    return {
        "n_items": int(len(y)),
        "n_normal": int((~y).sum()),
        "n_anomalous": int(y.sum()),
        "auroc": auroc(labels, scores),
        "average_precision": average_precision(labels, scores),
        "at_threshold": at_threshold(labels, scores, threshold),
    }


def detection_png(labels: np.ndarray, scores: np.ndarray, res: dict, dpi: int = 100) -> bytes:
    """ROC (left) and precision-recall (right) curves as one PNG, with the point of the threshold."""
    from aekit.core.plots import figure_png, pyplot

    plt = pyplot()
    fpr, tpr = roc_curve(labels, scores)
    recall, precision = pr_curve(labels, scores)
    at = res["at_threshold"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    left.plot(fpr, tpr, color="#4c78a8", linewidth=1.8, label=f"AUROC {res['auroc']:.3f}")
    left.plot([0, 1], [0, 1], color="#9a9a9a", linestyle=":", linewidth=1, label="chance")
    left.plot(at["false_positive_rate"], at["recall"], "o", color="#d62728", label=f"threshold {at['threshold']:.4g}")
    left.set_xlabel("false positive rate (normal items flagged)")
    left.set_ylabel("true positive rate (anomalies flagged)")
    left.set_title("ROC", fontsize=10)
    base = res["n_anomalous"] / res["n_items"]
    right.plot(
        np.r_[0.0, recall], np.r_[precision[0], precision], color="#4c78a8", linewidth=1.8, drawstyle="steps-pre",
        label=f"AP {res['average_precision']:.3f}",
    )  # fmt: skip
    right.axhline(base, color="#9a9a9a", linestyle=":", linewidth=1, label=f"chance {base:.2f}")
    if at["flagged"]:
        right.plot(at["recall"], at["precision"], "o", color="#d62728", label=f"F1 {at['f1']:.3f} at the threshold")
    right.set_xlabel("recall (anomalies flagged)")
    right.set_ylabel("precision (flagged items that are anomalous)")
    right.set_title("precision-recall", fontsize=10)
    for ax in (left, right):
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{res['n_normal']} normal, {res['n_anomalous']} anomalous items", fontsize=10)
    fig.tight_layout()
    return figure_png(fig, dpi)


def write_detection_png(path: Path, labels: np.ndarray, scores: np.ndarray, res: dict) -> None:
    png = detection_png(labels, scores, res)
    atomic_write(path, lambda p: p.write_bytes(png))
