"""Anomaly thresholds a person can explain.

The threshold is fixed at training time from the errors of the validation items (data the model
never trained on): by default their 99th percentile (`threshold_percentile`), or the quantile that
flags a given `contamination` fraction. It is stored in model.json with a sentence saying what it
means, and the validation errors in `validation_scores.csv`, so it can be re-derived at scoring
time with another percentile, replaced by a fixed value, or set from the scored data itself.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from aekit.config.train import check_rule
from aekit.core.errors import AekitError
from aekit.core.rundir import atomic_write
from aekit.data.kind import PIXELS, DataKind
from aekit.measures.ensemble import METRIC as ENSEMBLE_METRIC
from aekit.measures.ensemble import SUM_UNITS
from aekit.measures.ensemble import UNITS as ENSEMBLE_UNITS
from aekit.measures.item_errors import METRIC_WORDS
from aekit.measures.latent_score import LATENT_UNITS
from aekit.measures.latent_score import METRIC as LATENT_METRIC

VALIDATION_FILE = "validation_scores.csv"


VALIDATION_COLUMNS = {
    "mse": "score",
    "mae": "mae",
    "ssim": "one_minus_ssim",
    "mse+latent": "mse_plus_latent",
    "ensemble": "ensemble",
}  # metric -> column


def threshold_from(
    errors: np.ndarray,
    metric: str,
    *,
    percentile: float | None = 99.0,
    contamination: float | None = None,
    of: str,
    units: str = PIXELS,
    combine: str = "max",
) -> dict:
    """The threshold of `errors` by percentile or contamination, with a sentence explaining it;
    `of` says whose errors these are (e.g. "the 60 validation items"), `units` their units,
    `combine` how the run's ensemble score combines its parts."""
    units = units_of(metric, units, combine)
    check_rule(percentile, contamination)
    errors = np.asarray(errors, dtype=np.float64)
    errors = errors[np.isfinite(errors)]
    if errors.size == 0:
        raise AekitError(f"no finite errors to set a threshold from ({of})")
    if contamination is not None:
        q, rule = 1.0 - contamination, "contamination"
        how = f"the value that flags the worst {contamination:.3g} fraction ({contamination * 100:.3g}%) of {of}"
        percentile = None
    else:
        percentile = 99.0 if percentile is None else float(percentile)
        q, rule = percentile / 100.0, "percentile"
        how = f"the {_ordinal(percentile)} percentile of the errors of {of}"
    value = float(np.quantile(errors, q))
    return {
        "metric": metric,
        "value": value,
        "rule": rule,
        "percentile": percentile,
        "contamination": contamination,
        "n": int(errors.size),
        "explanation": f"an item is anomalous when its {METRIC_WORDS[metric]} ({units}) exceeds {value:.6g}, {how}",
    }


def units_of(metric: str, units: str, combine: str = "max") -> str:
    """What a score of `metric` is measured in: the data's units for a reconstruction error, the
    scale of a sum of terms each over its typical value (mse+latent; the ensemble of earlier runs),
    or robust z-scores (the ensemble)."""
    if metric == LATENT_METRIC:
        return LATENT_UNITS
    if metric == ENSEMBLE_METRIC:
        return ENSEMBLE_UNITS if combine == "max" else SUM_UNITS
    return units


def _ordinal(p: float) -> str:
    n = f"{p:g}"
    if "." in n:
        return n
    k = int(p)
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{n}{suffix}"


def write_validation_scores(run_dir: Path, ids: list[str], errors: dict[str, np.ndarray]) -> None:
    """`validation_scores.csv`: id, then one column per metric (`score` is the MSE)."""

    def write(t: Path) -> None:
        with open(t, "w", newline="") as f:
            w = csv.writer(f)
            metrics = [m for m in VALIDATION_COLUMNS if m in errors]  # tables have no SSIM
            w.writerow(["id", *(VALIDATION_COLUMNS[m] for m in metrics)])
            for i, ident in enumerate(ids):
                w.writerow([ident, *(f"{float(errors[m][i]):.7g}" for m in metrics)])

    atomic_write(run_dir / VALIDATION_FILE, write)


def read_validation_scores(run_dir: Path, metric: str) -> np.ndarray:
    path = run_dir / VALIDATION_FILE
    if not path.is_file():
        raise AekitError(
            f"{run_dir} has no {VALIDATION_FILE} (written by aekit train since 0.1); "
            "pass --threshold VALUE or --contamination FRACTION instead, or retrain"
        )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    column = VALIDATION_COLUMNS[metric]
    try:
        return np.array([float(r[column]) for r in rows], dtype=np.float64)
    except (KeyError, ValueError):
        raise AekitError(f"{path} has no valid {column!r} column; retrain to rebuild it") from None


def stored_threshold(meta: dict, metric: str = "mse") -> dict | None:
    """The threshold saved at training time for `metric`, if the run has one."""
    t = meta.get("threshold")
    if not t:
        return None
    by_metric = t.get("by_metric", {})
    if metric == t.get("metric"):
        return {k: v for k, v in t.items() if k != "by_metric"}
    return by_metric.get(metric)


def choose_threshold(
    run_dir: Path,
    meta: dict,
    metric: str,
    scores: np.ndarray,
    *,
    threshold: float | None = None,
    percentile: float | None = None,
    contamination: float | None = None,
) -> dict:
    """The threshold for a scoring call: a fixed value, a percentile of the run's validation
    errors, a contamination fraction of the scored items, or (default) the one from training."""
    given = [x is not None for x in (threshold, percentile, contamination)]
    if sum(given) > 1:
        raise AekitError("give at most one of --threshold, --threshold-percentile and --contamination")
    check_rule(percentile, contamination)
    units = DataKind.of_model(meta).units
    combine = (meta.get("ensemble") or {}).get("combine", "sum")
    if threshold is not None:
        signed = metric == ENSEMBLE_METRIC and combine == "max"  # robust z-scores go below 0
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and (signed or threshold >= 0)):
            raise AekitError(f"threshold must be a finite number{'' if signed else ' >= 0'}, got {threshold!r}")
        return {
            "metric": metric,
            "value": float(threshold),
            "rule": "given",
            "percentile": None,
            "contamination": None,
            "n": None,
            "explanation": f"an item is anomalous when its {METRIC_WORDS[metric]} "
            f"({units_of(metric, units, combine)}) "
            f"exceeds {threshold:.6g}, the value given on the command line",
        }
    if contamination is not None:
        return threshold_from(
            scores,
            metric,
            contamination=contamination,
            of=f"the {len(scores)} scored items",
            units=units,
            combine=combine,
        )
    if percentile is not None:
        errors = read_validation_scores(run_dir, metric)
        return threshold_from(
            errors,
            metric,
            percentile=percentile,
            of=f"the {len(errors)} validation items",
            units=units,
            combine=combine,
        )
    stored = stored_threshold(meta, metric)
    if stored is None:
        if meta.get("threshold") is None:
            raise AekitError(
                f"{run_dir} has no stored threshold (trained by an older aekit); "
                "pass --threshold VALUE or --contamination FRACTION"
            )
        errors = read_validation_scores(run_dir, metric)
        p = meta["threshold"].get("percentile") or 99.0
        of = f"the {len(errors)} validation items"
        return threshold_from(errors, metric, percentile=p, of=of, units=units, combine=combine)
    return stored
