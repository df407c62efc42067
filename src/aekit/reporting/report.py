"""`aekit report RUN`: one self-contained HTML page that explains a training run.

Everything comes from the files in the run folder (summary.json, config.yaml, metrics.csv,
recon.png, model.json, validation_scores.csv, embeddings_2d.csv, and detection.json when `aekit evaluate`
has measured the run on labelled data), so a report can be written
again at any time, also for older runs: what a run lacks becomes a short note. The page needs no
network: images are embedded as base64 PNGs, the style is inline, there is no script.
(It lives in the package `reporting` so that `aekit.report` stays the function.)

This module gathers the values (strings and numbers, the figures as PNG data URIs); the page itself
is the template templates/report.html.j2, rendered with autoescaping (templating.py).
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

from aekit.core.errors import AekitError
from aekit.core.plots import loss_png
from aekit.core.progress import console
from aekit.core.rundir import resolve_run, write_text
from aekit.reporting.embedding_map import FILENAME as EMBEDDINGS_FILE
from aekit.reporting.embedding_map import write_embedding_map
from aekit.reporting.figures import DPI, MAX_GROUPS, OTHER, embedding_png, fig_width, legend_groups, scores_png
from aekit.reporting.templating import STYLE, esc, img, png_src, render_page
from aekit.reporting.worst_maps import FILENAME as WORST_MAPS
from aekit.reporting.worst_maps import write_worst_maps
from aekit.version import __version__

__all__ = [
    "render",
    "report",
    "report_after_training",
    # from figures.py, imported from here by tests and scripts/make_doc_images.py
    "MAX_GROUPS",
    "OTHER",
    "embedding_png",
    "legend_groups",
    "scores_png",
    # from templating.py, for the sweep page (sweeps/overview.py), which is still written as strings
    "STYLE",
    "esc",
    "img",
]

MAX_SKIPPED = 10  # skipped files listed on the page, as at the end of training; the rest are counted
MAX_CHANNELS = 16  # per-channel rows in the metrics table


def report(run: str | Path) -> Path:
    """Write RUN/report.html from the files of a finished run; returns its path."""
    run_dir = resolve_run(run)
    if not (run_dir / "summary.json").is_file():
        raise AekitError(f"{run_dir} has no summary.json: training did not finish; train again to get a report")
    path = run_dir / "report.html"
    write_text(path, render(run_dir))
    return path


def report_after_training(run_dir: Path, data, *, seed: int, device: str, verbose: bool) -> Path | None:
    """The embedding map and the report at the end of `aekit train`. The model is already saved:
    a failure here warns and leaves the run as it is (`aekit report RUN` can try again)."""
    try:
        write_embedding_map(run_dir, data, seed=seed, device=device)
    except Exception as e:  # noqa: BLE001 - the run must survive anything the map runs into
        warnings.warn(f"could not write {EMBEDDINGS_FILE} ({type(e).__name__}: {e})", stacklevel=3)
    try:
        write_worst_maps(run_dir, data, device=device)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"could not write {WORST_MAPS} ({type(e).__name__}: {e})", stacklevel=3)
    try:
        path = report(run_dir)
    except Exception as e:  # noqa: BLE001
        warnings.warn(
            f"could not write the report ({type(e).__name__}: {e}); the trained run in {run_dir} is complete, "
            f"retry with `aekit report {run_dir}`",
            stacklevel=3,
        )
        return None
    if verbose:
        console.print(f"report: [bold]{path}[/bold]")
    return path


# -- reading the run --------------------------------------------------------------------------
def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AekitError(f"cannot read {path} ({e}); pass a folder written by `aekit train`") from None


def _csv(path: Path) -> list[dict] | None:
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _floats(rows: list[dict], key: str) -> list[float]:
    out = []
    for r in rows:
        try:
            v = float(r[key])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(v):
            out.append(v)
    return out


# -- values as shown ------------------------------------------------------------------------------
def fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def fmt(value: float | None, digits: int = 6) -> str:
    return "inf" if value is None else f"{value:.{digits}f}"


def _at(values: list | None, i: int):
    """values[i], or None where the metric does not apply (SSIM of table columns)."""
    return values[i] if values else None


# -- the sections' values (None: the run lacks what the section shows; the page says so) -----------
def header(run_dir: Path, s: dict) -> dict:
    finished = time.strftime("%Y-%m-%d %H:%M", time.localtime((run_dir / "summary.json").stat().st_mtime))
    trained_with = s.get("aekit_version", "?")
    return {
        "trained": finished,
        "model": f"{s.get('arch', '?')}, latent {s.get('latent_dim', '?')}, {s.get('parameters', 0):,} parameters",
        "compute": s.get("compute", s.get("device", "?")),
        "training_time": f"{fmt_seconds(s.get('seconds', 0))} ({s.get('epochs_run', '?')} epochs, "
        f"{s.get('stopped', '?')}); reading the data {fmt_seconds(s.get('load_seconds', 0))}",
        "aekit": trained_with if trained_with == __version__ else f"{trained_with} (report: {__version__})",
        "folder": str(run_dir.resolve()),
    }


def data_facts(s: dict) -> dict:
    h, w = s.get("image_size", ["?", "?"])
    skipped = s.get("skipped", [])
    return {
        "source": s.get("data", "?"),
        "n_found": s.get("n_found", "?"),
        "n_images": s.get("n_images", "?"),
        "height": h,
        "width": w,
        "channels": s.get("channels", "?"),
        "n_train": s.get("n_train", "?"),
        "n_val": s.get("n_val", "?"),
        "n_skipped": len(skipped),
        "skipped": [{"path": x.get("path", "?"), "reason": x.get("reason", "?")} for x in skipped[:MAX_SKIPPED]],
        "more_skipped": max(0, len(skipped) - MAX_SKIPPED),
    }


def metrics(s: dict) -> dict:
    from aekit.measures.compare import say_verdict

    res = s.get("metrics") or {
        "n_items": s.get("n_val"),
        "latent_dim": s.get("latent_dim"),
        "autoencoder": {"mse": s["val_mse"], "psnr": s.get("val_psnr"), "ssim": s.get("val_ssim")},
        "pca": {"mse": s["pca_val_mse"], "psnr": s.get("pca_val_psnr"), "ssim": s.get("pca_val_ssim")},
        "vs_pca": s["vs_pca"],
    }
    ae, pca = res["autoencoder"], res["pca"]
    tabular = "standardised" in s.get("metric_units", "")  # tables: no PSNR or SSIM

    def opt(value, digits: int) -> str:
        return "n/a" if tabular or value is None and digits != 2 else fmt(value, digits)

    rows = [
        {"name": name, "mse": fmt(m["mse"]), "psnr": opt(m.get("psnr"), 2), "ssim": opt(m.get("ssim"), 4)}
        for name, m in (("autoencoder", ae), (f"PCA, {res['latent_dim']} components", pca))
    ]
    a_ch, p_ch = ae.get("per_channel"), pca.get("per_channel")
    n_ch = len(a_ch["mse"]) if a_ch and p_ch and len(a_ch["mse"]) > 1 else 0
    channels = [
        {
            "index": c,
            "mse_ae": fmt(a_ch["mse"][c]),
            "mse_pca": fmt(p_ch["mse"][c]),
            "ssim_ae": opt(_at(a_ch.get("ssim"), c), 3),
            "ssim_pca": opt(_at(p_ch.get("ssim"), c), 3),
        }
        for c in range(min(n_ch, MAX_CHANNELS))
    ]
    return {
        "latent_dim": res["latent_dim"],
        "units": s.get("metric_units", "pixels in [0, 1]"),
        "n_items": res.get("n_items", "?"),
        "on": s.get("val_on", "validation split"),
        "rows": rows,
        "ratio": f"{ae['mse'] / max(pca['mse'], 1e-300):.3f}x",
        "channels": channels,
        "more_channels": max(0, n_ch - MAX_CHANNELS),
        "verdict": res.get("vs_pca", "equal"),
        "verdict_text": say_verdict(res),
    }


def loss(run_dir: Path, s: dict) -> dict | None:
    keys = ("epoch", "train_loss", "val_loss")
    parsed = []
    for r in _csv(run_dir / "metrics.csv") or []:
        try:
            parsed.append({k: float(r[k]) for k in keys})
        except (KeyError, TypeError, ValueError):
            continue
    if not parsed:
        return None
    return {"best": s.get("best_epoch"), "png": png_src(loss_png(parsed, DPI)), "width": fig_width(6)}


def recon(run_dir: Path, s: dict) -> dict | None:
    path = run_dir / "recon.png"
    if not path.is_file():
        return None
    from PIL import Image

    with Image.open(path) as im:
        width = im.width
    return {"latent_dim": s.get("latent_dim", "?"), "png": png_src(path.read_bytes()), "width": width}


def _maps(path: Path) -> dict | None:
    """The worst items' error maps (worst_maps.png) at their natural width, up to the page's."""
    if not path.is_file():
        return None
    from PIL import Image

    with Image.open(path) as im:
        width = min(im.width, 700)
    return {"png": png_src(path.read_bytes()), "file": path.name, "width": width}


SCORE_MEANING = {  # what the run's default anomaly score is, in the report's words
    "mse": "The anomaly score of an item is its reconstruction MSE: items unlike the training data are "
    "reconstructed worse and score higher.",
    "mse+latent": "The anomaly score of an item is its reconstruction MSE plus the distance of its code from the "
    "training codes, each over its typical value.",
    "ensemble": "The anomaly score of an item is the largest of several ways it can be unlike the training items: "
    "how badly it is reconstructed, as a whole and in its worst window, and how far its code and its input lie "
    "from the nearest training items, each as a robust z-score over the validation items (its distance from "
    "their median in interquartile ranges), so that a typical normal item scores about 0.",
    "ensemble sum": "The anomaly score of an item adds up several ways it can be unlike the training items: how "
    "badly it is reconstructed, and how far its code and its input lie from the nearest training items (for "
    "tables: from the typical row), each over its typical value on normal items, so that a typical normal item "
    "scores about the number of parts.",
}
SCORE_AXIS = {  # the histogram's axis, by the run's default score
    "mse": "reconstruction MSE (pixels in [0, 1])",
    "mse+latent": "MSE plus latent distance, each over its typical value",
    "ensemble": "ensemble, the largest robust z-score of its parts",
    "ensemble sum": "ensemble, its parts each over its typical value, summed",
}


def scores(run_dir: Path, s: dict) -> dict | None:
    from aekit.measures.thresholds import VALIDATION_COLUMNS, VALIDATION_FILE, stored_threshold

    meta = _json(run_dir / "model.json")
    metric = meta.get("score_metric", "mse") if meta.get("score_metric") in VALIDATION_COLUMNS else "mse"
    rows = _csv(run_dir / VALIDATION_FILE)
    values = _floats(rows, VALIDATION_COLUMNS[metric]) if rows else []  # the run's default score
    if not values:
        return None
    thr = stored_threshold(meta, metric)
    value = thr.get("value") if isinstance(thr, dict) else None
    value = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    threshold = None
    if value is not None:
        text = thr.get("explanation") or f"an item is anomalous when its score exceeds {value:.4g}"
        threshold = {"text": text, "above": sum(v > value for v in values)}
    maps = run_dir / WORST_MAPS
    ens = meta.get("ensemble")
    summed = metric == "ensemble" and not (isinstance(ens, dict) and ens.get("combine") == "max")
    key = "ensemble sum" if summed else metric if metric in SCORE_MEANING else "mse"
    return {
        "n": len(values),
        "on": s.get("val_on", "validation split"),
        "meaning": SCORE_MEANING[key],
        "maps": _maps(maps),
        "threshold": threshold,
        "png": png_src(scores_png(values, value, SCORE_AXIS[key])),
        "width": fig_width(6.5),
    }


def detection(run_dir: Path) -> dict | None:
    """The latest `aekit evaluate --normal/--anomalous` of this run (detection.json and its curves);
    None when there was none."""
    try:
        res = json.loads((run_dir / "detection.json").read_text())
        at = res["at_threshold"]
        png = (run_dir / "detection.png").read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {
        "when": time.strftime("%Y-%m-%d %H:%M", time.localtime(res.get("written", 0))),
        "n_normal": res["n_normal"],
        "n_anomalous": res["n_anomalous"],
        "data": res.get("data"),
        "labels": res.get("labels"),
        "normal": res.get("normal"),
        "anomalous": res.get("anomalous"),
        "metric": str(res.get("metric", "mse")).upper(),
        "auroc": f"{res['auroc']:.4f}",
        "average_precision": f"{res['average_precision']:.4f}",
        "threshold": f"{at['threshold']:.6g}",
        "precision": f"{at['precision']:.4f}",
        "recall": f"{at['recall']:.4f}",
        "f1": f"{at['f1']:.4f}",
        "false_positive_rate": f"{at['false_positive_rate']:.4f}",
        "tp": at["tp"],
        "fp": at["fp"],
        "flagged": at["flagged"],
        "png": png_src(png),
        "width": fig_width(9),
    }


def embeddings(run_dir: Path) -> dict | None:
    points = []
    for r in _csv(run_dir / EMBEDDINGS_FILE) or []:
        try:
            x, y = float(r["x"]), float(r["y"])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(x) and math.isfinite(y):
            points.append((str(r.get("group") or "?"), x, y))
    if not points:
        return None
    groups = [g for g, _, _ in points]
    xy = np.array([(x, y) for _, x, y in points])
    return {
        "n": len(points),
        "n_groups": len(set(groups)),
        "max_groups": MAX_GROUPS,
        "png": png_src(embedding_png(groups, xy)),
        "width": fig_width(7),
    }


def config(run_dir: Path) -> list[dict] | None:
    """The options of config.yaml as shown: strings as they are, other values as JSON."""
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        cfg = None
    if not isinstance(cfg, dict):
        return None
    shown = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in cfg.items()]
    return [{"key": k, "value": v, "wide": len(v) > 24} for k, v in shown]


def render(run_dir: Path) -> str:
    """The report page for a run folder, as one HTML string."""
    from aekit.measures.thresholds import VALIDATION_FILE

    s = _json(run_dir / "summary.json")
    return render_page(
        "report.html.j2",
        name=run_dir.resolve().name,
        header=header(run_dir, s),
        metrics=metrics(s),
        loss=loss(run_dir, s),
        recon=recon(run_dir, s),
        scores=scores(run_dir, s),
        detection=detection(run_dir),
        embeddings=embeddings(run_dir),
        data=data_facts(s),
        config=config(run_dir),
        validation_file=VALIDATION_FILE,
        embeddings_file=EMBEDDINGS_FILE,
        version=__version__,
        written=time.strftime("%Y-%m-%d %H:%M"),
    )
