"""`aekit score`: the anomaly score of every item of some data, with the run's threshold.

Scores are per-item reconstruction errors (measures/item_errors.py); the threshold is the one
fixed at training time unless the call gives another rule (measures/thresholds.py). Rows are
written worst first, keyed by path or, for tables, by their identifier.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from aekit.config.choices import METRICS, TABLE_METRICS
from aekit.config.commands import ScoreOptions
from aekit.config.train import check_rule
from aekit.core import distributed
from aekit.core.errors import AekitError
from aekit.core.rundir import atomic_write, resolve_run, write_json
from aekit.inference.explain import check_maps_dir, top_features, write_maps
from aekit.inference.guard import check_data, flagged_warning, say, say_skipped
from aekit.measures.thresholds import choose_threshold


def check_score_output(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix.lower() not in (".csv", ".parquet"):
        raise AekitError(f"output {p} must end in .csv or .parquet")
    from aekit.inference.vectors import check_output

    return check_output(p)


def write_scores(path: Path, result: Scores, id_name: str = "path") -> None:
    """Rows sorted worst first: path (a table's id column), score, is_anomaly, rank, and for tables
    top_features."""
    scores, flags, ids, top = result.scores, result.is_anomaly, result.ids, result.top_features
    order = np.argsort(-scores, kind="stable")
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {
            id_name: [ids[i] for i in order],
            "score": scores[order].astype(np.float64),
            "is_anomaly": flags[order].astype(bool),
            "rank": np.arange(1, len(order) + 1),
        }
        if top is not None:
            columns["top_features"] = [top[i] for i in order]
        table = pa.table(columns)
        atomic_write(path, lambda t: pq.write_table(table, t))
        return

    def write(t: Path) -> None:
        with open(t, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([id_name, "score", "is_anomaly", "rank", *(["top_features"] if top is not None else [])])
            for rank, i in enumerate(order, 1):
                more = [top[i]] if top is not None else []
                w.writerow([ids[i], f"{float(scores[i]):.7g}", str(bool(flags[i])).lower(), rank, *more])

    atomic_write(path, write)


@dataclass
class Scores:
    """Per-item anomaly scores of some data, in its order, with the threshold used; for table rows
    also `top_features`, the columns that make each row odd ("a;b;c", inference/explain.py)."""

    ids: list[str]
    scores: np.ndarray
    is_anomaly: np.ndarray
    threshold: dict
    summary: dict
    top_features: list[str] | None = None


def score_to_file(o: ScoreOptions, guard: bool = True) -> Scores:
    """Score every item of `o.data` with the model in `o.run`. With `o.output`, write it (worst
    first), a PNG grid of the worst items next to it and a JSON summary with the threshold. Rasters
    with an output that is not a table (.tif, or a folder) get per-pixel error maps instead
    (raster_outputs.py), on a grid of `o.stride` (default: half the patch)."""
    from aekit.inference.encode import load_on_rank, model_data
    from aekit.inference.model import load
    from aekit.inference.raster_outputs import raster_outputs, wants_error_maps
    from aekit.inference.shard_pass import shard_pass

    if wants_error_maps(o.data, o.output):  # rasters: error maps as GeoTIFFs, and the tiles' scores beside them
        model = load(o.run, device=o.device, precision=o.precision)
        maps = raster_outputs(
            model, o.data, o.output, kind="error", stride=o.stride, batch_size=o.batch_size, verbose=o.verbose
        )
        result = score_to_file(replace(o, output=str(tiles_path(Path(o.output)))), guard)
        result.summary["error_maps"] = {k: v for k, v in maps.items() if k != "skipped"}
        if "output" in result.summary:  # rank 0 wrote the table and its summary
            table = Path(result.summary["output"])
            write_json(table.with_name(table.stem + "_summary.json"), result.summary)
        return result

    out = _check_score_args(o)
    maps = check_maps_dir(o.maps, o.data) if o.maps is not None else None
    run_dir = resolve_run(o.run)
    ctx, model = load_on_rank(run_dir, o.device, o.precision)  # under torchrun each rank scores its share
    if maps is not None and model.columns is not None:
        raise AekitError("--maps draws images; a table's scores file names the columns that make a row odd instead")
    metric = o.metric or model.score_metric
    verbose = o.verbose and ctx.main
    if model.columns is not None and metric not in TABLE_METRICS:
        raise AekitError(f"metric {metric} is for images; score table rows by {' or '.join(TABLE_METRICS)}")
    items = model_data(model, o.data, o, ctx, shards=True)
    if items.stream is not None:  # tar shards: read on the fly, one batch at a time
        if maps is not None:
            raise AekitError(f"--maps reads the flagged items again: extract {o.data} into a folder (tar -xf) first")
        keep = max(0, o.worst) if out is not None else 0

        def score(x: np.ndarray) -> np.ndarray:
            return model.score(x, metric=metric, layout="NCHW", batch_size=o.batch_size)

        items = shard_pass(model, o.data, score, batch_size=o.batch_size, ctx=ctx, verbose=verbose, keep=keep)
        scores = items.values
    else:
        scores = _score_items(model, items, metric, o.batch_size, ctx)
    rule = choose_threshold(
        run_dir,
        model.meta,
        metric,
        scores,
        threshold=o.threshold,
        percentile=o.threshold_percentile,
        contamination=o.contamination,
    )
    flags = scores > rule["value"]
    summary = _summary(run_dir, items, metric, flags, rule)
    if guard and ctx.main:  # data unlike the training data: said, never silent (inference/guard.py)
        flagged = flagged_warning(flags, rule)
        summary["warnings"] = check_data(model, items, verbose) + flagged
        say(flagged, verbose)
        say_skipped(items.skipped, verbose)
    result = Scores(ids=list(items.ids), scores=scores, is_anomaly=flags, threshold=rule, summary=summary)
    if model.columns is not None:  # the columns that make each row odd
        result.top_features = top_features(model.explain(items.array, batch_size=o.batch_size), model.columns)
    if out is None or not ctx.main:  # rank 0 writes the merged output
        return result
    if maps is not None:
        written = write_maps(maps, model, items, result, o.maps_limit, o.batch_size)
        summary["maps"] = {"folder": str(maps), "files": len(written), "limit": o.maps_limit}
    _write_outputs(out, result, model, items, o.worst, o.batch_size, verbose)
    return result


def tiles_path(output: Path) -> Path:
    """Where the tiles' scores go beside raster error maps: DIR/tiles.csv, or NAME_tiles.csv."""
    return (
        output.with_name(output.stem + "_tiles.csv")
        if output.suffix.lower() in (".tif", ".tiff")
        else (output / "tiles.csv")
    )


def _check_score_args(o: ScoreOptions) -> Path | None:
    """Fail on bad arguments before any work; the checked output path (None: no output)."""
    from aekit.inference.model import check_batch_size

    if o.metric is not None and o.metric not in METRICS:
        raise AekitError(f"unknown metric {o.metric!r}; choose one of {', '.join(METRICS)}")
    out = check_score_output(o.output) if o.output is not None else None
    check_batch_size(o.batch_size)
    check_rule(o.threshold_percentile, o.contamination)
    return out


def _score_items(model: Any, items: Any, metric: str, batch_size: int, ctx: Any) -> np.ndarray:
    """Every item's score, in the data's order (under torchrun each rank scores its share)."""

    def score_rows(rows: slice) -> np.ndarray:
        mask = None if items.mask is None else items.mask[rows]
        return model.score(items.array[rows], metric=metric, layout="NCHW", batch_size=batch_size, mask=mask)

    return distributed.map_rows(score_rows, len(items), np.zeros(0), ctx)


def _summary(run_dir: Path, items: Any, metric: str, flags: np.ndarray, rule: dict) -> dict:
    """What the JSON summary records: the run, the data, the threshold and what was skipped."""
    return {
        "run": str(run_dir),
        "data": items.source,
        "metric": metric,
        "n_items": len(items),
        "n_anomalies": int(flags.sum()),
        "threshold": rule,
        "skipped": [{"path": s.path, "reason": s.reason} for s in items.skipped],
    }


def _write_outputs(
    out: Path, result: Scores, model: Any, items: Any, worst: int, batch_size: int, verbose: bool
) -> None:
    """The scores file, the picture of the worst items next to it, the JSON summary and a report."""
    from aekit.core.progress import console

    summary = result.summary
    write_scores(out, result, id_name=items.id_name or "row")
    grid = out.with_name(out.stem + "_worst.png")
    n_shown = _write_worst_grid(grid, model, items, result, worst, batch_size)
    summary.update(output=str(out), worst_grid=str(grid) if n_shown else None)
    write_json(out.with_name(out.stem + "_summary.json"), summary)
    if verbose:
        console.print(
            f"scored {len(items)} item(s): {summary['n_anomalies']} above the threshold "
            f"({100 * summary['n_anomalies'] / max(len(items), 1):.1f}%)\n"
            f"threshold: {result.threshold['explanation']}\n"
            f"wrote {out} (worst first), "
            + (f"{grid.name} (worst {n_shown}: originals above reconstructions) " if n_shown else "")
            + f"and {out.stem}_summary.json"
            + (
                f"; error maps of {summary['maps']['files']} flagged item(s) in {summary['maps']['folder']}"
                if "maps" in summary
                else ""
            )
        )


def _worst(items: Any, scores: np.ndarray, worst: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(raw pixels, nodata mask or None) of the `worst` highest-scoring items, worst first."""
    from aekit.inference.shard_pass import ShardPass

    if isinstance(items, ShardPass):  # kept while the shards were read
        return (items.top_x if items.top_x is not None else np.zeros((0, 1, 1, 1), np.uint8)), None
    top = np.argsort(-scores, kind="stable")[: max(0, worst)]
    sel = np.sort(top)  # read in file order (memory-mapped data), show worst first
    rank = np.argsort(-scores[sel], kind="stable")
    mask = None if items.mask is None else np.asarray(items.mask[sel])[rank]
    return np.asarray(items.array[sel])[rank], mask


def _write_worst_grid(grid: Path, model: Any, items: Any, result: Scores, worst: int, batch_size: int) -> int:
    """A PNG of the `worst` items (originals above reconstructions, each with its name and score),
    worst first; tables get no picture. Returns how many items it shows (0: no file written)."""
    from aekit.core.grid_labels import GridText
    from aekit.core.plots import preview_channels, recon_grid

    if model.columns is not None or worst <= 0:  # tables: no picture
        return 0
    x, mask = _worst(items, result.scores, worst)
    if not len(x):
        return 0
    recon = model.reconstruct(x, layout="NCHW", batch_size=batch_size)
    scale = model.scale
    raster = model.meta.get("raster")
    view = {}
    if raster:  # the run's RGB bands, stretched; nodata in black
        view = {"rgb": preview_channels(raster.get("rgb_bands"), raster["bands"], x.shape[1]), "stretch": True}
        view["mask"] = mask
    shown = np.argsort(-result.scores, kind="stable")[: len(x)]  # the items of x, in the order _worst picked them
    text = GridText(
        names=[result.ids[i] for i in shown],
        values=result.scores[shown].tolist(),
        value_name="score",
        flags=result.is_anomaly[shown].tolist(),
        title=f"the {len(x)} highest {result.summary['metric']} scores of {len(result.ids)} items; "
        f"threshold {result.threshold['value']:.4g} (red: above it)",
    )
    recon_grid(x.astype(np.float32) / scale, np.asarray(recon, np.float32) / scale, grid, text=text, **view)
    return len(x)
