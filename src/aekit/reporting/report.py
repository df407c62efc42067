"""`aekit report RUN`: one self-contained HTML page that explains a training run.

Everything comes from the files in the run folder (summary.json, config.yaml, metrics.csv,
recon.png, model.json, validation_scores.csv, embeddings_2d.csv, and detection.json when `aekit evaluate`
has measured the run on labelled data), so a report can be written
again at any time, also for older runs: what a run lacks becomes a short note. The page needs no
network: images are embedded as base64 PNGs, the style is inline, there is no script.
(It lives in the package `reporting` so that `aekit.report` stays the function.)
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from aekit.core.errors import AekitError
from aekit.core.plots import figure_png, loss_png, pyplot
from aekit.core.progress import console
from aekit.core.rundir import resolve_run, write_text
from aekit.reporting.embedding_map import FILENAME as EMBEDDINGS_FILE
from aekit.reporting.embedding_map import write_embedding_map
from aekit.version import __version__

MAX_SKIPPED = 10  # skipped files listed on the page, as at the end of training; the rest are counted
MAX_GROUPS = 12  # legend entries of the embedding map; smaller groups become "other"
MAX_CHANNELS = 16  # per-channel rows in the metrics table
OTHER = "other"
DPI = 200  # figures are drawn at twice their displayed size: sharp on high-density screens


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


# -- figures ----------------------------------------------------------------------------------
def scores_png(scores: list[float], threshold: float | None) -> bytes:
    """Histogram of validation anomaly scores with the threshold as a vertical line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    bins = min(60, max(5, len(np.histogram_bin_edges(scores, bins="auto")) - 1))
    ax.hist(scores, bins=bins, color="#4c78a8", edgecolor="white", linewidth=0.5, label="validation items")
    if threshold is not None:
        ax.axvline(threshold, color="#d62728", linestyle="--", linewidth=1.5, label=f"threshold {threshold:.4g}")
    ax.set_xlabel("anomaly score: reconstruction MSE (pixels in [0, 1])")
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


# -- HTML pieces ------------------------------------------------------------------------------
def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def img(png: bytes, alt: str, css: str = "", width: int | None = None) -> str:
    """An <img> holding the PNG itself; `width` in CSS pixels (figures drawn at DPI show at 100 dpi)."""
    data = base64.b64encode(png).decode("ascii")
    w = f' width="{width}"' if width else ""
    c = f' class="{css}"' if css else ""
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}"{w}{c}>'


def fig_width(inches: float) -> int:
    return round(inches * 100)


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}">\n<h2>{esc(title)}</h2>\n{body}\n</section>'


def kv_table(rows: list[tuple[str, str]], css: str = "kv") -> str:
    """Two-column table; values are HTML already (escape them first)."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="{css}">{body}</table>'


def fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def fmt(value: float | None, digits: int = 6) -> str:
    return "inf" if value is None else f"{value:.{digits}f}"


# -- sections ---------------------------------------------------------------------------------
def header(run_dir: Path, s: dict) -> str:
    name = run_dir.resolve().name
    finished = time.strftime("%Y-%m-%d %H:%M", time.localtime((run_dir / "summary.json").stat().st_mtime))
    trained_with = s.get("aekit_version", "?")
    facts = [
        ("trained", esc(finished)),
        (
            "model",
            esc(f"{s.get('arch', '?')}, latent {s.get('latent_dim', '?')}, {s.get('parameters', 0):,} parameters"),
        ),
        ("compute", esc(s.get("compute", s.get("device", "?")))),
        (
            "training time",
            esc(
                f"{fmt_seconds(s.get('seconds', 0))} ({s.get('epochs_run', '?')} epochs, {s.get('stopped', '?')}); "
                f"reading the data {fmt_seconds(s.get('load_seconds', 0))}"
            ),
        ),
        ("aekit", esc(trained_with if trained_with == __version__ else f"{trained_with} (report: {__version__})")),
        ("folder", f"<code>{esc(run_dir.resolve())}</code>"),
    ]
    return f"<header>\n<h1>aekit report: {esc(name)}</h1>\n{kv_table(facts, 'facts')}\n</header>"


def data_section(s: dict) -> str:
    h, w = s.get("image_size", ["?", "?"])
    rows = [
        ("source", f"<code>{esc(s.get('data', '?'))}</code>"),
        ("images", esc(f"{s.get('n_found', '?')} found, {s.get('n_images', '?')} used")),
        ("size", esc(f"{h} x {w} pixels, {s.get('channels', '?')} channel(s)")),
        ("split", esc(f"{s.get('n_train', '?')} training / {s.get('n_val', '?')} validation")),
    ]
    skipped = s.get("skipped", [])
    rows.append(("skipped", esc(f"{len(skipped)} file(s)" if skipped else "none")))
    body = kv_table(rows)
    if skipped:
        items = "".join(
            f"<li><code>{esc(x.get('path', '?'))}</code>: {esc(x.get('reason', '?'))}</li>"
            for x in skipped[:MAX_SKIPPED]
        )
        more = len(skipped) - MAX_SKIPPED
        if more > 0:
            items += f'<li class="more">and {more} more (all listed in summary.json)</li>'
        body += f'\n<ul class="skipped">{items}</ul>'
    return section("data", "Data", body)


def _at(values: list | None, i: int):
    """values[i], or None where the metric does not apply (SSIM of table columns)."""
    return values[i] if values else None


def metrics_section(s: dict) -> str:
    from aekit.evaluation.compare import say_verdict

    res = s.get("metrics") or {
        "n_items": s.get("n_val"),
        "latent_dim": s.get("latent_dim"),
        "autoencoder": {"mse": s["val_mse"], "psnr": s.get("val_psnr"), "ssim": s.get("val_ssim")},
        "pca": {"mse": s["pca_val_mse"], "psnr": s.get("pca_val_psnr"), "ssim": s.get("pca_val_ssim")},
        "vs_pca": s["vs_pca"],
    }
    ae, pca = res["autoencoder"], res["pca"]
    head = "<tr><th></th><th>MSE</th><th>PSNR (dB)</th><th>SSIM</th></tr>"
    rows = [
        ("autoencoder", ae),
        (f"PCA, {res['latent_dim']} components", pca),
    ]
    tabular = "standardised" in s.get("metric_units", "")  # tables: no PSNR or SSIM

    def opt(value, digits: int) -> str:
        return "n/a" if tabular or value is None and digits != 2 else fmt(value, digits)

    body = "".join(
        f'<tr><th>{esc(name)}</th><td class="num">{fmt(m["mse"])}</td><td class="num">{opt(m.get("psnr"), 2)}</td>'
        f'<td class="num">{opt(m.get("ssim"), 4)}</td></tr>'
        for name, m in rows
    )
    ratio = ae["mse"] / max(pca["mse"], 1e-300)
    body += f'<tr class="ratio"><th>autoencoder / PCA</th><td class="num">{ratio:.3f}x</td><td></td><td></td></tr>'
    table = f'<table class="metrics">{head}{body}</table>'
    a_ch, p_ch = ae.get("per_channel"), pca.get("per_channel")
    if a_ch and p_ch and len(a_ch["mse"]) > 1:
        n = len(a_ch["mse"])
        ch_rows = "".join(
            f'<tr><th>channel {c}</th><td class="num">{fmt(a_ch["mse"][c])}</td>'
            f'<td class="num">{fmt(p_ch["mse"][c])}</td>'
            f'<td class="num">{opt(_at(a_ch.get("ssim"), c), 3)}</td>'
            f'<td class="num">{opt(_at(p_ch.get("ssim"), c), 3)}</td></tr>'
            for c in range(min(n, MAX_CHANNELS))
        )
        if n > MAX_CHANNELS:
            ch_rows += (
                f'<tr><td colspan="5" class="more">and {n - MAX_CHANNELS} more channels in summary.json</td></tr>'
            )
        table += (
            '\n<table class="metrics channels"><tr><th>per channel</th><th>MSE autoencoder</th><th>MSE PCA</th>'
            f"<th>SSIM autoencoder</th><th>SSIM PCA</th></tr>{ch_rows}</table>"
        )
    verdict = res.get("vs_pca", "equal")
    on = s.get("val_on", "validation split")
    units = s.get("metric_units", "pixels in [0, 1]")
    explain = (
        '<p class="explain">Each validation image is encoded into '
        f"{esc(res['latent_dim'])} numbers and decoded back. <b>MSE</b> is the mean squared difference between "
        f"the image and its reconstruction ({esc(units)}): lower is better. <b>PSNR</b> is the "
        "same on a logarithmic scale (higher is better) and <b>SSIM</b> compares local structure (1 means "
        "identical). <b>PCA</b> with as many components is the linear baseline: the autoencoder is worth "
        f"its cost only where it beats it. Measured on {esc(res.get('n_items', '?'))} items of the {esc(on)}.</p>"
    )
    return section(
        "metrics",
        "Reconstruction quality against PCA",
        f'{explain}\n{table}\n<p class="verdict {esc(verdict)}">{esc(say_verdict(res))}</p>',
    )


def loss_section(run_dir: Path, s: dict) -> str:
    rows = _csv(run_dir / "metrics.csv")
    keys = ("epoch", "train_loss", "val_loss")
    parsed = []
    for r in rows or []:
        try:
            parsed.append({k: float(r[k]) for k in keys})
        except (KeyError, TypeError, ValueError):
            continue
    if not parsed:
        return section("loss", "Loss curves", note("this run has no metrics.csv with epochs to plot."))
    best = s.get("best_epoch")
    start = " (epoch 0 is the starting point before training; it was not improved on)" if best == 0 else ""
    explain = (
        '<p class="explain">The loss is the MSE on normalised data (each channel shifted and scaled to mean 0, '
        "standard deviation 1), averaged over the training batches of each epoch and over the validation items "
        f"after it. The model kept is the one with the lowest validation loss: epoch {esc(best)}{start}. "
        "A validation curve that rises while the training curve keeps falling means over-fitting.</p>"
    )
    figure = f"<figure>{img(loss_png(parsed, DPI), 'loss curves', width=fig_width(6))}</figure>"
    return section("loss", "Loss curves", f"{explain}\n{figure}")


def recon_section(run_dir: Path, s: dict) -> str:
    path = run_dir / "recon.png"
    if not path.is_file():
        return section("reconstructions", "Reconstructions", note("this run has no recon.png."))
    png = path.read_bytes()
    from PIL import Image

    with Image.open(path) as im:
        width = im.width
    explain = (
        '<p class="explain">Top row: validation images, spread over the set; bottom row: the model\'s '
        f"reconstructions of the same images from {esc(s.get('latent_dim', '?'))} numbers each. What is blurred "
        "or missing below is what the code cannot hold.</p>"
    )
    figure = f"<figure>{img(png, 'validation images above their reconstructions', 'pixels', width)}</figure>"
    return section("reconstructions", "Reconstructions", f"{explain}\n{figure}")


def scores_section(run_dir: Path, s: dict) -> str:
    from aekit.evaluation.thresholds import VALIDATION_COLUMNS, VALIDATION_FILE, stored_threshold

    rows = _csv(run_dir / VALIDATION_FILE)
    scores = _floats(rows, VALIDATION_COLUMNS["mse"]) if rows else []
    title = "Anomaly scores"
    if not scores:
        return section(
            "scores",
            title,
            note(
                f"this run has no validation scores ({VALIDATION_FILE}): it was trained with an aekit that did "
                "not write them yet; train again with a newer aekit to see their histogram and the threshold."
            ),
        )
    thr = stored_threshold(_json(run_dir / "model.json"), "mse")
    value = thr.get("value") if isinstance(thr, dict) else None
    value = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    on = s.get("val_on", "validation split")
    explain = (
        '<p class="explain">The anomaly score of an image is its reconstruction MSE: images unlike the training '
        "data are reconstructed worse and score higher. The histogram shows the scores of the "
        f"{len(scores)} items of the {esc(on)}"
        + (" (images like the training data that the model never trained on)" if on == "validation split" else "")
        + ".</p>"
    )
    if value is not None:
        above = sum(v > value for v in scores)
        text = esc(thr.get("explanation") or f"an item is anomalous when its score exceeds {value:.4g}")
        explain += (
            f'<p class="explain"><b>Threshold</b> (red line): {text}. {above} of these {len(scores)} items '
            "are above it; <code>aekit score</code> flags new images above it. A lower threshold catches more "
            "anomalies and raises more false alarms.</p>"
        )
    else:
        explain += note("this run's model.json has no threshold, so none is drawn.")
    figure = f"<figure>{img(scores_png(scores, value), 'histogram of anomaly scores', width=fig_width(6.5))}</figure>"
    return section("scores", title, f"{explain}\n{figure}")


def detection_section(run_dir: Path) -> str:
    """The latest `aekit evaluate --normal/--anomalous` of this run (detection.json and its curves);
    nothing when there was none."""
    try:
        res = json.loads((run_dir / "detection.json").read_text())
        at = res["at_threshold"]
        png = (run_dir / "detection.png").read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    sets = (
        f"<code>{esc(res.get('data'))}</code> labelled by {esc(res.get('labels'))}"
        if res.get("data")
        else f"<code>{esc(res.get('normal'))}</code> (normal) and <code>{esc(res.get('anomalous'))}</code> (anomalous)"
    )
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(res.get("written", 0)))
    explain = (
        f'<p class="explain">Measured by <code>aekit evaluate</code> on {when}: {esc(res["n_normal"])} normal '
        f"and {esc(res['n_anomalous'])} anomalous items from {sets}, scored by reconstruction "
        f"{esc(str(res.get('metric', 'mse')).upper())}. <b>AUROC</b> is the chance that an anomalous item "
        "scores above a normal one (0.5 is chance, 1 perfect); <b>average precision</b> summarises the "
        "precision-recall curve (chance: the share of anomalies). Precision, recall and F1 are those of "
        "the threshold (red point).</p>"
    )
    rows = [
        ("AUROC", f"{res['auroc']:.4f}"),
        ("average precision", f"{res['average_precision']:.4f}"),
        ("threshold", esc(f"{at['threshold']:.6g}")),
        ("precision", esc(f"{at['precision']:.4f} ({at['tp']} of {at['flagged']} flagged items are anomalous)")),
        ("recall", esc(f"{at['recall']:.4f} ({at['tp']} of {res['n_anomalous']} anomalies flagged)")),
        ("F1", f"{at['f1']:.4f}"),
        ("false positive rate", esc(f"{at['false_positive_rate']:.4f} ({at['fp']} of {res['n_normal']} normal)")),
    ]
    figure = f"<figure>{img(png, 'ROC and precision-recall curves', width=fig_width(9))}</figure>"
    return section("detection", "Anomaly detection on labelled data", f"{explain}\n{kv_table(rows)}\n{figure}")


def embeddings_section(run_dir: Path) -> str:
    rows = _csv(run_dir / EMBEDDINGS_FILE)
    title = "Embedding map"
    points = []
    for r in rows or []:
        try:
            x, y = float(r["x"]), float(r["y"])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(x) and math.isfinite(y):
            points.append((str(r.get("group") or "?"), x, y))
    if not points:
        return section(
            "embeddings",
            title,
            note(
                f"this run has no embedding map ({EMBEDDINGS_FILE}): it was trained with an aekit that did not "
                "write one yet; train again with a newer aekit, or use <code>aekit encode</code> to get the codes."
            ),
        )
    groups = [g for g, _, _ in points]
    xy = np.array([(x, y) for _, x, y in points])
    n_groups = len(set(groups))
    by = (
        f"Colours are the {n_groups} sub-folders"
        + (f" (the {MAX_GROUPS - 1} largest; the rest are grey)" if n_groups > MAX_GROUPS else "")
        + ": groups that form separate clusters differ in what the model encodes, found without any labels."
        if n_groups > 1
        else "All items come from one folder, so there is one colour."
    )
    explain = (
        f'<p class="explain">Each dot is one image ({len(points)} items, a seeded sample of at most 2000), '
        "placed by the first two principal axes of its code: images the model encodes alike lie close together. "
        f"{esc(by)}</p>"
    )
    figure = f"<figure>{img(embedding_png(groups, xy), 'map of the embeddings', width=fig_width(7))}</figure>"
    return section("embeddings", title, f"{explain}\n{figure}")


def config_section(run_dir: Path) -> str:
    path = run_dir / "config.yaml"
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        cfg = None
    if not isinstance(cfg, dict):
        return section("config", "Configuration", note("this run has no readable config.yaml."))

    def show(v: Any) -> str:
        return esc(v) if isinstance(v, str) else esc(json.dumps(v))

    explain = (
        '<p class="explain">The resolved options of this run (<code>config.yaml</code>, with the inferred '
        "channels, size and depth filled in): <code>aekit train DATA --config config.yaml</code> repeats it.</p>"
    )
    items = "".join(
        f"<div{' class=wide' if len(show(v)) > 24 else ''}><dt>{esc(k)}</dt><dd>{show(v)}</dd></div>"
        for k, v in cfg.items()
    )
    return section("config", "Configuration", f'{explain}<dl class="config">{items}</dl>')


STYLE = """
:root{--fg:#1f2430;--muted:#5f6673;--line:#e3e6ea;--bg:#f5f6f8}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:980px;margin:0 auto;padding:20px 20px 40px}
h1{font-size:1.5rem;margin:8px 0 12px}
h2{font-size:1.15rem;margin:0 0 8px}
section,header{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 20px;margin:14px 0}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:6px 0}
th,td{padding:3px 14px 3px 0;text-align:left;vertical-align:top;border-bottom:1px solid var(--line)}
table.metrics th,table.metrics td{padding:4px 14px}
table.metrics tr:first-child th{border-bottom:2px solid var(--line)}
table.channels{font-size:.9em}
td.num{text-align:right}
tr.ratio{color:var(--muted)}
table.facts th,table.kv th{font-weight:600;white-space:nowrap;color:var(--muted)}
table.facts td,table.facts th{border:0;padding:1px 14px 1px 0}
.verdict{display:inline-block;padding:6px 12px;border-radius:6px;font-weight:600;margin:8px 0 0}
.verdict.better{background:#e5f4ea;color:#1c6b33}
.verdict.equal{background:#eef0f3;color:#39404d}
.verdict.worse{background:#fde8e6;color:#a3161a}
.explain{color:#3b4250;max-width:75ch;margin:4px 0 8px}
.note{color:var(--muted);font-style:italic}
code{font:.88em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
figure{margin:8px 0}
img{max-width:100%;height:auto}
img.pixels{image-rendering:pixelated}
dl.config{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:0 24px;margin:6px 0}
dl.config div{display:flex;gap:12px;border-bottom:1px solid var(--line);padding:3px 0}
dl.config div.wide{grid-column:1/-1}
dl.config dt{font-weight:600;color:var(--muted);flex:0 0 125px}
dl.config dd{margin:0;overflow-wrap:anywhere}
ul.skipped{margin:6px 0;padding-left:20px;font-size:.92em}
.more{color:var(--muted)}
footer{color:var(--muted);font-size:.85em;text-align:center}
"""


def render(run_dir: Path) -> str:
    """The report page for a run folder, as one HTML string."""
    s = _json(run_dir / "summary.json")
    name = run_dir.resolve().name
    parts = [
        header(run_dir, s),
        metrics_section(s),
        loss_section(run_dir, s),
        recon_section(run_dir, s),
        scores_section(run_dir, s),
        detection_section(run_dir),
        embeddings_section(run_dir),
        data_section(s),
        config_section(run_dir),
    ]
    written = time.strftime("%Y-%m-%d %H:%M")
    body = "\n".join(p for p in parts if p)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>aekit report: {esc(name)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n"
        f"<footer>written by aekit {esc(__version__)} on {esc(written)}; this page is self-contained "
        "(no network, no scripts)</footer>\n</main>\n</body>\n</html>\n"
    )
