"""Anomaly scores: per-item reconstruction error, and a threshold a person can explain.

The threshold is fixed at training time from the errors of the validation items (data the model
never trained on): by default their 99th percentile (`threshold_percentile`), or the quantile that
flags a given `contamination` fraction. It is stored in model.json with a sentence saying what it
means, and the validation errors in `validation_scores.csv`, so it can be re-derived at scoring
time with another percentile, replaced by a fixed value, or set from the scored data itself.

Scores are in [0, 1] pixel units (as the metrics are): `mse` (default), `mae`, or `ssim`
(1 - SSIM, structural dissimilarity). Tables are scored in standardised units (each column: mean
0, std 1 on the training rows), by `mse` or `mae`; rows are keyed by their identifier.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed
from .config import check_rule
from .errors import AekitError
from .metrics import ssim_per_channel
from .rundir import atomic_write, resolve_run, write_json

METRICS = ("mse", "mae", "ssim")
METRIC_WORDS = {
    "mse": "reconstruction MSE",
    "mae": "mean absolute reconstruction error",
    "ssim": "structural dissimilarity (1 - SSIM)",
}
TABLE_METRICS = ("mse", "mae")  # SSIM means nothing for a table row
PIXELS = "pixels in [0, 1]"
STANDARDISED = "standardised units"
OWN_UNITS = "the data's own units"
VALIDATION_FILE = "validation_scores.csv"
VALIDATION_COLUMNS = {"mse": "score", "mae": "mae", "ssim": "one_minus_ssim"}  # metric -> column


def item_errors(
    recon: torch.Tensor, target: torch.Tensor, metric: str = "mse", mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-item error (N,) of (N, C, H, W) reconstructions against targets, both in [0, 1] units;
    over the valid pixels of `mask` (N, 1, H, W) when given (rasters with nodata)."""
    recon, target = recon.float(), target.float()
    if mask is not None:
        m = mask.to(recon.device)
        n = (m.sum(dim=(1, 2, 3)) * recon.shape[1]).clamp_min(1)
        if metric == "mse":
            return (((recon - target) ** 2) * m).sum(dim=(1, 2, 3)) / n
        if metric == "mae":
            return ((recon - target).abs() * m).sum(dim=(1, 2, 3)) / n
        if metric == "ssim":
            return 1.0 - ssim_per_channel(torch.where(m, recon, target), target, m).mean(dim=1)
    if metric == "mse":
        return ((recon - target) ** 2).mean(dim=(1, 2, 3))
    if metric == "mae":
        return (recon - target).abs().mean(dim=(1, 2, 3))
    if metric == "ssim":
        return 1.0 - ssim_per_channel(recon, target).mean(dim=1)
    raise AekitError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def error_units(scale: float, table: bool = False) -> str:
    """What errors are measured in: standardised units (tables), pixels scaled to [0, 1], or
    (scale 1: float arrays, rasters other than 8-bit) the data's own units."""
    if table:
        return STANDARDISED
    return PIXELS if float(scale) != 1.0 else OWN_UNITS


def threshold_from(
    errors: np.ndarray,
    metric: str,
    *,
    percentile: float | None = 99.0,
    contamination: float | None = None,
    of: str,
    units: str = PIXELS,
) -> dict:
    """The threshold of `errors` by percentile or contamination, with a sentence explaining it;
    `of` says whose errors these are (e.g. "the 60 validation items"), `units` their units."""
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
    units = error_units(meta.get("normalization", {}).get("scale", 255.0), table=bool(meta.get("table")))
    if threshold is not None:
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold >= 0):
            raise AekitError(f"threshold must be a finite number >= 0, got {threshold!r}")
        return {
            "metric": metric,
            "value": float(threshold),
            "rule": "given",
            "percentile": None,
            "contamination": None,
            "n": None,
            "explanation": f"an item is anomalous when its {METRIC_WORDS[metric]} ({units}) "
            f"exceeds {threshold:.6g}, the value given on the command line",
        }
    if contamination is not None:
        return threshold_from(
            scores, metric, contamination=contamination, of=f"the {len(scores)} scored items", units=units
        )
    if percentile is not None:
        errors = read_validation_scores(run_dir, metric)
        return threshold_from(
            errors, metric, percentile=percentile, of=f"the {len(errors)} validation items", units=units
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
        return threshold_from(errors, metric, percentile=p, of=f"the {len(errors)} validation items", units=units)
    return stored


def check_score_output(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix.lower() not in (".csv", ".parquet"):
        raise AekitError(f"output {p} must end in .csv or .parquet")
    from .tables import check_output

    return check_output(p)


def write_scores(
    path: Path, ids: list[str], scores: np.ndarray, flags: np.ndarray, metric: str, id_name: str = "path"
) -> None:
    """Rows sorted worst first: path (a table's id column), score, is_anomaly, rank."""
    order = np.argsort(-scores, kind="stable")
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                id_name: [ids[i] for i in order],
                "score": scores[order].astype(np.float64),
                "is_anomaly": flags[order].astype(bool),
                "rank": np.arange(1, len(order) + 1),
            }
        )
        atomic_write(path, lambda t: pq.write_table(table, t))
        return

    def write(t: Path) -> None:
        with open(t, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([id_name, "score", "is_anomaly", "rank"])
            for rank, i in enumerate(order, 1):
                w.writerow([ids[i], f"{float(scores[i]):.7g}", str(bool(flags[i])).lower(), rank])

    atomic_write(path, write)


@dataclass
class Scores:
    """Per-item anomaly scores of some data, in its order, with the threshold used."""

    ids: list[str]
    scores: np.ndarray
    is_anomaly: np.ndarray
    threshold: dict
    summary: dict


def score_to_file(
    run: str | Path,
    data: Any,
    output: str | Path | None = None,
    *,
    metric: str = "mse",
    threshold: float | None = None,
    threshold_percentile: float | None = None,
    contamination: float | None = None,
    worst: int = 16,
    batch_size: int = 256,
    device: str = "auto",
    precision: str = "fp32",
    verbose: bool = True,
    cache_dir: str | Path | None = "default",
    layout: str | None = None,
    id_column: str | None = None,
    stride: int | None = None,
) -> dict:
    """Score every item of DATA with the model in RUN. With `output`, write it (worst first), a PNG
    grid of the worst items next to it and a JSON summary with the threshold. Rasters with an
    `output` that is not a table (.tif, or a folder) get per-pixel error maps instead (raster_out.py),
    on a grid of `stride` (default: half the patch)."""
    from .encoding import load_on_rank, read_for_model
    from .inference import check_batch_size, load
    from .plots import preview_channels, recon_grid
    from .progress import console
    from .raster_out import raster_outputs, wants_error_maps

    if wants_error_maps(data, output):
        model = load(run, device=device, precision=precision)
        return raster_outputs(model, data, output, kind="error", stride=stride, batch_size=batch_size, verbose=verbose)

    if metric not in METRICS:
        raise AekitError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    out = check_score_output(output) if output is not None else None
    check_batch_size(batch_size)
    check_rule(threshold_percentile, contamination)
    run_dir = resolve_run(run)
    ctx, model = load_on_rank(run_dir, device, precision)  # under torchrun each rank scores its share
    verbose = verbose and ctx.main
    if model.columns is not None and metric not in TABLE_METRICS:
        raise AekitError(f"metric {metric} is for images; score table rows by {' or '.join(TABLE_METRICS)}")
    with distributed.local_rank_first(ctx):
        items = read_for_model(model, data, verbose=verbose, cache_dir=cache_dir, layout=layout, id_column=id_column)

    def score_rows(rows: slice) -> np.ndarray:
        mask = None if items.mask is None else items.mask[rows]
        return model.score(items.array[rows], metric=metric, layout="NCHW", batch_size=batch_size, mask=mask)

    scores = distributed.map_rows(score_rows, len(items), np.zeros(0), ctx)
    rule = choose_threshold(
        run_dir,
        model.meta,
        metric,
        scores,
        threshold=threshold,
        percentile=threshold_percentile,
        contamination=contamination,
    )
    flags = scores > rule["value"]
    summary = {
        "run": str(run_dir),
        "data": items.source,
        "metric": metric,
        "n_items": len(items),
        "n_anomalies": int(flags.sum()),
        "threshold": rule,
        "skipped": [{"path": s.path, "reason": s.reason} for s in items.skipped],
    }
    result = Scores(ids=list(items.ids), scores=scores, is_anomaly=flags, threshold=rule, summary=summary)
    if out is None or not ctx.main:  # rank 0 writes the merged output
        return result
    write_scores(out, items.ids, scores, flags, metric, id_name=items.id_name or "row")
    grid = out.with_name(out.stem + "_worst.png")
    top = np.argsort(-scores, kind="stable")[: max(0, worst) if model.columns is None else 0]  # tables: no picture
    if len(top):
        sel = np.sort(top)  # read in file order (memory-mapped data), show worst first
        x = np.asarray(items.array[sel])
        rank = np.argsort(-scores[sel], kind="stable")
        recon = model.reconstruct(x[rank], layout="NCHW", batch_size=batch_size)
        scale = model.scale
        raster = model.meta.get("raster")
        view = {}
        if raster:  # the run's RGB bands, stretched; nodata in black
            mask = None if items.mask is None else np.asarray(items.mask[sel])[rank]
            view = {"rgb": preview_channels(raster.get("rgb_bands"), raster["bands"], x.shape[1]), "stretch": True}
            view["mask"] = mask
        recon_grid(x[rank].astype(np.float32) / scale, np.asarray(recon, np.float32) / scale, grid, **view)
    summary.update(output=str(out), worst_grid=str(grid) if len(top) else None)
    write_json(out.with_name(out.stem + "_summary.json"), summary)
    if verbose:
        console.print(
            f"scored {len(items)} item(s): {summary['n_anomalies']} above the threshold "
            f"({100 * summary['n_anomalies'] / max(len(items), 1):.1f}%)\n"
            f"threshold: {rule['explanation']}\n"
            f"wrote {out} (worst first), "
            + (f"{grid.name} (worst {len(top)}: originals above reconstructions) " if len(top) else "")
            + f"and {out.stem}_summary.json"
        )
    return result
