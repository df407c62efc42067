"""`aekit evaluate`: a trained model next to PCA on any data (MSE, PSNR and SSIM, overall and per
channel), or, given labelled data, how well its anomaly score separates normal from anomalous items
(AUROC, average precision, and precision, recall and F1 at the run's threshold)."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aekit.config.commands import EvaluateOptions, ScoreOptions, UseOptions
from aekit.core.errors import AekitError
from aekit.core.progress import console
from aekit.core.rundir import atomic_write, check_output_file, resolve_run, write_json
from aekit.data.kind import DataKind
from aekit.inference.guard import check_data
from aekit.measures.compare import comparison_table, say_verdict
from aekit.measures.detection import detection_metrics, parse_labels, write_detection_png
from aekit.measures.validation import final_pass
from aekit.models.checkpoint import load_pca

DETECTION_FILE = "detection.json"  # the latest labelled evaluation of a run, shown by its report
DETECTION_PLOT = "detection.png"
ROOT_FOLDER = "(root)"


def evaluate(o: EvaluateOptions, labels: Any = None) -> dict:
    """Evaluate the model in `o.run`. With `o.data` alone: reconstruction next to the run's PCA.
    With `o.normal` and `o.anomalous` data, or `o.data` with labels (`o.label_column` of a table,
    `o.normal_folders` of an image folder, or `labels`, one 0/1 per item), the anomaly score of
    `aekit score` against the labels: see `evaluate_detection`. Optionally writes the result as
    JSON to `o.output`."""
    if any(v is not None for v in (o.normal, o.anomalous, o.label_column, o.normal_folders, labels)):
        return evaluate_detection(o, labels)
    if o.data is None:
        raise AekitError(
            "give DATA to compare the model with PCA, or --normal DATA and --anomalous DATA (or DATA with "
            "--label-column NAME or --normal-folders NAMES) to measure how well it finds anomalies"
        )
    if o.threshold is not None:
        raise AekitError("--threshold is for anomaly detection: add --normal and --anomalous, or labels for DATA")
    return evaluate_reconstruction(o)


def evaluate_reconstruction(o: EvaluateOptions) -> dict:
    """Evaluate the model in `o.run` on `o.data` next to the run's PCA; optionally write JSON to `o.output`."""
    from aekit.inference.encode import model_data
    from aekit.inference.model import load

    run_dir = resolve_run(o.run)
    model = load(run_dir, device=o.device)
    pca = load_pca(run_dir)
    items = model_data(model, o.data, o)
    check_data(model, items, o.verbose)
    x_all = torch.from_numpy(items.array)
    columns = model.columns
    m_all = None if items.mask is None else torch.from_numpy(items.mask)
    kind = DataKind(table=columns is not None, bounded=model.scale > 1, masked=m_all is not None)
    idx = torch.arange(len(items))
    res = final_pass(
        model.model, model.normalizer, pca, x_all, idx, model.device, o.batch_size, kind, m_all, scores=False
    ).comparison
    res.update(
        run=str(run_dir), data=items.source, skipped=[{"path": s.path, "reason": s.reason} for s in items.skipped]
    )
    if o.output:
        write_json(Path(o.output), res)
    if o.verbose:
        console.print(comparison_table(res, f"aekit evaluate: {res['n_items']} items from {items.source}", columns))
        console.print(say_verdict(res))
    return res


def evaluate_detection(o: EvaluateOptions, labels: Any = None) -> dict:
    """How well the anomaly score of `aekit score` (the same function, `o.metric` and threshold)
    tells anomalous items (the positive class) from normal ones. The labelled items are either
    `o.normal` and `o.anomalous` data (each a folder, image file, array or table), or `o.data` with
    one of: `o.label_column` (a table's column: 0/normal vs 1/anomalous, see `parse_labels`),
    `o.normal_folders` (images: the sub-folders of the data holding normal items; items in any
    other are anomalous) or `labels` (one 0/1 per item, in the data's order).

    Returns a dict with `auroc`, `average_precision`, `at_threshold` (precision, recall, F1,
    false positive rate and counts at the threshold: the run's stored one unless `o.threshold`
    is given), counts and the data. With `o.output` (a .json file) writes it there and the ROC and
    precision-recall curves next to it (OUTPUT_curves.png); both are also recorded in the run folder
    (detection.json, detection.png: the latest such evaluation), which `aekit report RUN` shows."""
    out = _check_detection_args(o, labels)
    run_dir = resolve_run(o.run)
    table = _is_table_model(run_dir)
    if o.data is None:
        sets = [_score(o, d) for d in (o.normal, o.anomalous)]
        y = np.repeat(np.array([0, 1], np.int8), [len(s.scores) for s in sets])
        scored = sets
        described = {"normal": sets[0].summary["data"], "anomalous": sets[1].summary["data"], "labels": "two sets"}
    elif o.label_column is not None:
        if table is False:
            raise AekitError("--label-column is for tables; the model was trained on images (use --normal-folders)")
        if o.id_column:
            raise AekitError("give --label-column or --id-column, not both: the result has no per-row identifiers")
        res = _score(o, o.data, id_column=o.label_column)
        y = parse_labels(res.ids, f"column {o.label_column!r} of {res.summary['data']}")
        scored = [res]
        described = {"data": res.summary["data"], "labels": f"column {o.label_column}"}
    elif o.normal_folders is not None:
        if table:
            raise AekitError("--normal-folders is for images in sub-folders; label table rows with --label-column")
        names = _names(o.normal_folders)
        res = _score(o, o.data)
        y = np.array([_first_folder(i) not in names for i in res.ids], np.int8)
        found = {_first_folder(i) for i in res.ids}
        if not names & found:
            raise AekitError(
                f"no item of {res.summary['data']} is in a folder named {', '.join(sorted(names))}; "
                f"its folders: {', '.join(sorted(found)[:20])}"
            )
        scored = [res]
        described = {"data": res.summary["data"], "labels": f"normal folders {','.join(sorted(names))}"}
    else:
        res = _score(o, o.data)
        y = _given_labels(labels, len(res.scores))
        scored = [res]
        described = {"data": res.summary["data"], "labels": "given"}
    scores = np.concatenate([s.scores for s in scored])
    rule = scored[0].threshold
    result = {
        "run": str(run_dir),
        "metric": scored[0].summary["metric"],
        **described,
        **detection_metrics(y, scores, rule["value"]),
        "threshold": rule,
        "skipped": [x for s in scored for x in s.summary["skipped"]],
    }
    result["plot"] = _write(out, run_dir, result, y, scores)
    if o.verbose:
        console.print(detection_table(result))
        wrote = f"wrote {out} and {result['plot']}; " if out is not None else ""
        console.print(f"{wrote}recorded in {run_dir / DETECTION_FILE} (shown by aekit report {run_dir})")
    return result


def _check_detection_args(o: EvaluateOptions, labels: Any) -> Path | None:
    """One-line errors for combinations that make no sense, before any work; the output path."""
    data, normal, anomalous, output = o.data, o.normal, o.anomalous, o.output
    if data is not None and (normal is not None or anomalous is not None):
        raise AekitError(
            "give either DATA with labels (--label-column, --normal-folders) or --normal and --anomalous, not both"
        )
    marks = (("--label-column", o.label_column), ("--normal-folders", o.normal_folders), ("labels", labels))
    given = [name for name, v in marks if v is not None]
    if data is None:
        if normal is None or anomalous is None:
            missing, present = ("--anomalous", "--normal") if anomalous is None else ("--normal", "--anomalous")
            if normal is None and anomalous is None:
                raise AekitError(f"{given[0]} labels the items of DATA: give DATA too")
            raise AekitError(f"{present} needs {missing} too: AUROC compares normal with anomalous items")
        if given:
            raise AekitError(f"{given[0]} labels DATA; with --normal and --anomalous the two sets are the labels")
    elif len(given) > 1:
        raise AekitError(f"give one way to label DATA, not {' and '.join(given)}")
    if output is None:
        return None
    out = Path(output)
    if out.suffix.lower() != ".json":
        raise AekitError(f"output {out} must end in .json (the ROC and PR curves go next to it as a .png)")
    check_output_file(out, "metrics.json")
    return out


def _is_table_model(run_dir: Path) -> bool | None:
    """Whether the run's model takes table rows (None: model.json unreadable; loading says why)."""
    try:
        return bool(json.loads((run_dir / "model.json").read_text()).get("table"))
    except (OSError, ValueError, AttributeError):
        return None


def _score(o: EvaluateOptions, data: Any, **changes: Any):
    """The items of `data` scored exactly as `aekit score` scores them (the same function, with the
    options the two commands share)."""
    from aekit.inference.score import score_to_file

    shared = {name: getattr(o, name) for name in UseOptions.names()}
    options = ScoreOptions(**{**shared, "data": data, "metric": o.metric, "threshold": o.threshold, **changes})
    return score_to_file(options, guard=False)  # anomalous sets are meant to be unlike the training data


def _names(value: str | list[str]) -> set[str]:
    names = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    names = {n.strip().strip("/") for n in names if n.strip()}
    if not names:
        raise AekitError("--normal-folders needs at least one folder name, e.g. --normal-folders good")
    return names


def _first_folder(item_id: str) -> str:
    parts = str(item_id).replace("\\", "/").split("/")
    return parts[0] if len(parts) > 1 else ROOT_FOLDER


def _given_labels(labels: Any, n: int) -> np.ndarray:
    arr = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).ravel()
    if len(arr) != n:
        raise AekitError(f"{len(arr)} labels for {n} scored items; give one label (0 normal, 1 anomalous) per item")
    if arr.dtype.kind in "biuf" and np.isin(arr, (0, 1)).all():
        return arr.astype(np.int8)
    return parse_labels([str(v) for v in arr], "labels")


def _write(out: Path | None, run_dir: Path, result: dict, y: np.ndarray, scores: np.ndarray) -> str | None:
    """The JSON and the curves next to `out`, and both into the run folder (a run folder that
    cannot be written only costs a warning). Returns the path of the plot next to `out`."""
    plot = None
    if out is not None:
        plot = out.with_name(out.stem + "_curves.png")
        write_detection_png(plot, y, scores, result)
        write_json(out, {**result, "plot": str(plot)})
    try:
        if plot is not None:
            png = plot.read_bytes()
            atomic_write(run_dir / DETECTION_PLOT, lambda p: p.write_bytes(png))
        else:
            write_detection_png(run_dir / DETECTION_PLOT, y, scores, result)
        write_json(run_dir / DETECTION_FILE, {**result, "plot": DETECTION_PLOT, "written": time.time()})
    except OSError as e:
        warnings.warn(f"could not record the evaluation in {run_dir} ({e}); its report will not show it", stacklevel=3)
    return str(plot) if plot is not None else None


def detection_table(res: dict):
    """The figures as a rich table, each with a few words on what it means."""
    from rich.table import Table

    where = res.get("data") or f"{res['normal']} (normal) and {res['anomalous']} (anomalous)"
    t = Table(
        title=f"aekit evaluate: {res['n_normal']} normal and {res['n_anomalous']} anomalous items from {where}",
        title_justify="left",
    )
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_column("what it means")
    at = res["at_threshold"]
    base = res["n_anomalous"] / res["n_items"]
    t.add_row("AUROC", f"{res['auroc']:.4f}", "chance an anomaly scores above a normal item (0.5: chance)")
    t.add_row(
        "average precision", f"{res['average_precision']:.4f}", f"area under precision-recall (chance {base:.3f})"
    )
    t.add_row("threshold", f"{at['threshold']:.6g}", _threshold_words(res["threshold"]))
    t.add_row(
        "precision", f"{at['precision']:.4f}", f"flagged items that are anomalous ({at['tp']} of {at['flagged']})"
    )
    t.add_row("recall", f"{at['recall']:.4f}", f"anomalies flagged ({at['tp']} of {res['n_anomalous']})")
    t.add_row("F1", f"{at['f1']:.4f}", "harmonic mean of precision and recall")
    t.add_row(
        "false positive rate",
        f"{at['false_positive_rate']:.4f}",
        f"normal items flagged ({at['fp']} of {res['n_normal']})",
    )
    return t


def _threshold_words(rule: dict) -> str:
    if rule.get("rule") == "given":
        return f"given ({rule['metric']} above it is flagged)"
    if rule.get("rule") == "percentile":
        return f"the run's: {rule['percentile']:g}th percentile of validation {rule['metric']}"
    return f"the run's ({rule.get('rule')}, {rule['metric']})"
