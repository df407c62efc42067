"""What a sweep shows: SWEEP_DIR/sweep.png (validation MSE against latent size, one line per depth
and model, PCA beside them, and below the same relative to PCA), sweep.html (that figure, what
it says, and every trial sorted by quality, on one self-contained page), and the console lines
and table. All made from the results.csv rows alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aekit.core.plots import figure_png, pyplot
from aekit.core.progress import console
from aekit.core.rundir import atomic_write, write_text
from aekit.reporting.report import STYLE, esc, img
from aekit.sweeps.results import DONE, FAILED, PRUNED, RESULTS, best_row
from aekit.version import __version__

PLATEAU = 0.10  # a larger latent size "helps" when it lowers the best validation MSE by at least 10%
DPI = 150
LINESTYLES = {"ae": "-", "vae": "--", "dae": ":"}


def _done(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["status"] == DONE and r.get("val_mse") is not None]


def curves(rows: list[dict]) -> dict[tuple[str, int | None], dict[int, dict]]:
    """{(model, depth): {latent: the row with the lowest val MSE over the other options (lr)}}."""
    out: dict[tuple[str, int | None], dict[int, dict]] = {}
    for r in _done(rows):
        line = out.setdefault((r["model"], r["depth"]), {})
        z = r["latent_dim"]
        if z not in line or r["val_mse"] < line[z]["val_mse"]:
            line[z] = r
    return out


def best_by_latent(rows: list[dict]) -> dict[int, dict]:
    """The best finished trial at each latent size, smallest size first."""
    best: dict[int, dict] = {}
    for r in _done(rows):
        z = r["latent_dim"]
        if z not in best or r["val_mse"] < best[z]["val_mse"]:
            best[z] = r
    return dict(sorted(best.items()))


def pca_curve(rows: list[dict]) -> dict[int, float]:
    """PCA's validation MSE at each latent size (the same for every trial of that size)."""
    pca: dict[int, float] = {}
    for r in rows:
        if r.get("pca_val_mse") is not None:
            pca.setdefault(r["latent_dim"], r["pca_val_mse"])
    return dict(sorted(pca.items()))


def plateau(rows: list[dict], gain: float = PLATEAU) -> str:
    """Where extra latent size stops helping: the smallest size that no larger one beats by `gain`."""
    best = best_by_latent(rows)
    sizes = list(best)
    if len(sizes) < 2:
        return "Only one latent size finished: sweep several (e.g. 8,16,32,64) to see where size stops helping."
    for i, z in enumerate(sizes[:-1]):
        later = min(best[s]["val_mse"] for s in sizes[i + 1 :])
        if later > (1 - gain) * best[z]["val_mse"]:
            return (
                f"Extra latent size stops helping at {z}: no larger size tried lowers the best validation MSE by "
                f"{gain:.0%} or more ({best[z]['val_mse']:.4g} at {z}, at best {later:.4g} above it)."
            )
    last, before = sizes[-1], sizes[-2]
    drop = 1 - best[last]["val_mse"] / best[before]["val_mse"]
    return (
        f"Every larger latent size still helped: {before} to {last} lowered the best validation MSE by {drop:.0%}. "
        "Try larger sizes to find where it levels off."
    )


def versus_pca(rows: list[dict]) -> str:
    """Where the autoencoder pays off over PCA with the same number of components."""
    best, pca = best_by_latent(rows), pca_curve(rows)
    ratios = {z: r["val_mse"] / pca[z] for z, r in best.items() if pca.get(z)}
    if not ratios:
        return "No finished trial to compare with PCA."
    z_best = min(ratios, key=ratios.get)
    beats = [z for z, q in ratios.items() if q < 0.99]
    if not beats:
        return (
            "The autoencoder is not 1% better than PCA at any latent size tried: PCA is enough here (or train longer)."
        )
    where = "every latent size tried" if len(beats) == len(ratios) else "latent " + ", ".join(map(str, beats))
    return (
        f"The autoencoder's validation MSE is at least 1% below PCA's at {where}; it pays off most at "
        f"latent {z_best}, with {ratios[z_best]:.3g}x PCA's."
    )


def sweep_png(rows: list[dict]) -> bytes:
    """Validation MSE against latent size (log scales), one line per (model, depth), and PCA; below
    it the same lines relative to PCA at each size, where a gain of a few percent is visible."""
    import matplotlib.ticker

    plt = pyplot()
    fig, (ax, rel) = plt.subplots(2, 1, figsize=(6.4, 5.6), dpi=100, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    lines = curves(rows)
    models = sorted({m for m, _ in lines})
    depths = sorted({d for _, d in lines}, key=lambda d: (d is None, d or 0))
    pca = pca_curve(rows)
    if pca:  # drawn first and wide, so that a line on top of it (no gain over PCA) still shows both
        ax.plot(list(pca), list(pca.values()), color="0.55", marker="s", ms=4, lw=3, alpha=0.6, label="PCA")
        rel.axhline(1.0, color="0.55", lw=3, alpha=0.6)
    for (m, d), points in sorted(lines.items(), key=lambda kv: (kv[0][0], depths.index(kv[0][1]))):
        zs = sorted(points)
        label = f"depth {d if d is not None else 'auto'}"
        if len(models) > 1:
            label = f"{m}, {label}"
        style = {"marker": "o", "ms": 4, "linestyle": LINESTYLES.get(m, "-"), "color": f"C{depths.index(d) % 10}"}
        ax.plot(zs, [points[z]["val_mse"] for z in zs], label=label, **style)
        zr = [z for z in zs if pca.get(z)]
        rel.plot(zr, [points[z]["val_mse"] / pca[z] for z in zr], **style)
    best = best_row(rows)
    if best is not None:  # a ring, so that the line's own point still shows inside
        x, y = best["latent_dim"], best["val_mse"]
        ring = {"ls": "", "marker": "o", "ms": 14, "mfc": "none", "mec": "crimson", "mew": 2, "zorder": 5}
        ax.plot([x], [y], label="best trial", **ring)
        if pca.get(x):
            rel.plot([x], [y / pca[x]], **ring)
    sizes = sorted({r["latent_dim"] for r in rows if r.get("latent_dim") is not None})
    rel.set_xscale("log", base=2)
    if sizes:
        rel.set_xticks(sizes)
        rel.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        rel.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    values = [r["val_mse"] for r in _done(rows)] + list(pca.values())
    if values and min(values) > 0:
        ax.set_yscale("log")
    rel.set_xlabel("latent size")
    ax.set_ylabel("validation MSE")
    rel.set_ylabel("MSE / PCA's\n(below 1: better)")
    lrs = sorted({r["lr"] for r in _done(rows)})
    note = f" (best over lr {', '.join(f'{x:g}' for x in lrs)})" if len(lrs) > 1 else ""
    ax.set_title(f"validation MSE by latent size{note}", fontsize=10)
    for a in (ax, rel):
        a.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_png(fig, DPI)


def _num(value, digits: int = 6) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)


def render(sweep_dir: Path, rows: list[dict], png: bytes, title: str) -> str:
    """The sweep page as one HTML string (no scripts, no network; the figure is embedded)."""
    best = best_row(rows)
    counts = {s: sum(r["status"] == s for r in rows) for s in (DONE, PRUNED, FAILED)}
    facts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if best is not None:
        link = f"{esc('trials/' + best['trial'] + '/report.html')}"
        headline = (
            f'<p><b>Best trial</b>: <a href="{link}">{esc(best["trial"])}</a> (linked as <code>best</code>): '
            f"validation MSE {_num(best['val_mse'])}, {_num(best['ratio_to_pca'], 3)}x PCA's at the same latent "
            f"size, {_num(best['parameters'])} parameters.</p>"
        )
    else:
        headline = '<p class="note">No trial finished yet.</p>'
    findings = f"<ul><li>{esc(versus_pca(rows))}</li><li>{esc(plateau(rows))}</li></ul>"
    head = ["#", "trial", "status", "model", "latent", "depth", "lr", "val MSE", "PSNR", "PCA MSE", "vs PCA"]
    head += ["parameters", "seconds", "best epoch"]
    body = []
    for i, r in enumerate(rows, 1):
        cells = [
            str(i),
            f'<a href="{esc("trials/" + r["trial"] + "/report.html")}">{esc(r["trial"])}</a>'
            if r["status"] != FAILED
            else esc(r["trial"]),
            esc(r["status"]) + (f": {esc(r['error'])}" if r.get("error") else ""),
            esc(r["model"]),
            esc(_num(r["latent_dim"])),
            esc(_num(r.get("depth")) or "auto"),
            esc(f"{r['lr']:g}"),
            esc(_num(r.get("val_mse"))),
            esc(_num(r.get("val_psnr"), 4)),
            esc(_num(r.get("pca_val_mse"))),
            esc(f"{r['ratio_to_pca']:.2f}x" if r.get("ratio_to_pca") is not None else ""),
            esc(_num(r.get("parameters"))),
            esc(_num(r.get("seconds"), 3)),
            esc(_num(r.get("best_epoch"))),
        ]
        style = ' style="background:#fff8d6"' if r is best else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = (
        '<table class="metrics"><tr>'
        + "".join(f"<th>{esc(h)}</th>" for h in head)
        + "</tr>"
        + "".join(body)
        + "</table>"
    )
    explain = (
        '<p class="explain">Each trial is a normal training run (its folder under <code>trials/</code> holds '
        "its own report). Validation MSE is measured on the same held-out split for every trial; PCA is fitted "
        "with as many components as the trial's latent size. Lines show the best trial per latent size over "
        "the options not drawn (e.g. the learning rate).</p>"
    )
    written = time.strftime("%Y-%m-%d %H:%M")
    sections = [
        f"<header><h1>aekit sweep: {esc(sweep_dir.resolve().name)}</h1>"
        f"<p>data: <code>{esc(title)}</code>; {len(rows)} trial(s): {esc(facts)}</p>{headline}</header>",
        f'<section id="figure"><h2>Validation MSE by latent size</h2>{explain}'
        f"<figure>{img(png, 'validation MSE by latent size', width=640)}</figure>{findings}</section>",
        f'<section id="trials"><h2>Trials, best first</h2>{table}</section>',
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>aekit sweep: {esc(sweep_dir.resolve().name)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        "<main>\n" + "\n".join(sections) + f"\n<footer>written by aekit {esc(__version__)} on {esc(written)}; "
        "this page is self-contained (no network, no scripts)</footer>\n</main>\n</body>\n</html>\n"
    )


def write_sweep_pages(sweep_dir: Path, rows: list[dict], title: str) -> tuple[Path, Path]:
    """Write SWEEP_DIR/sweep.png and sweep.html from the sorted results rows."""
    png = sweep_png(rows)
    atomic_write(sweep_dir / "sweep.png", lambda p: p.write_bytes(png))
    write_text(sweep_dir / "sweep.html", render(sweep_dir, rows, png, title))
    return sweep_dir / "sweep.png", sweep_dir / "sweep.html"


# -- console ---------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 6) -> str:
    return "" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def trial_line(row: dict, seconds: float) -> str:
    """What a trial ended with, on one line."""
    if row["status"] == FAILED:
        return f"[red]failed[/red]: {row['error']}"
    pruned = " [yellow](pruned)[/yellow]" if row["status"] == PRUNED else ""
    return (
        f"val MSE {row['val_mse']:.6g} (PCA {_fmt(row['pca_val_mse'])}, {_fmt(row['ratio_to_pca'], 3)}x), "
        f"{row['parameters']:,} parameters, {seconds:.1f} s{pruned}"
    )


def results_table(rows: list[dict]):
    """The finished trials sorted by validation MSE, as a rich table (failed ones are listed after it);
    the model and learning rate get a column only when they were swept."""
    from rich import box
    from rich.table import Table

    shown = [r for r in rows if r["status"] != FAILED]
    varied = [k for k in ("lr", "model") if len({r[k] for r in shown}) > 1]
    t = Table(  # one space between columns: up to 12 of them fit in 80 characters
        title="aekit sweep: trials by validation MSE",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=0,
    )
    for name in ["latent", "depth", *varied, "val MSE", "PSNR", "PCA", "vs PCA", "params", "s"]:
        t.add_column(name, justify="left" if name == "model" else "right", no_wrap=True)
    best = best_row(rows)
    for r in shown:
        cells = [str(r["latent_dim"]), _fmt(r["depth"])]
        cells += [f"{r['lr']:g}" if k == "lr" else r[k] for k in varied]
        t.add_row(
            *cells,
            _fmt(r["val_mse"], 4) + (" pruned" if r["status"] == PRUNED else ""),
            "" if r["val_psnr"] is None else f"{r['val_psnr']:.2f}",
            _fmt(r["pca_val_mse"], 4),
            f"{r['ratio_to_pca']:.2f}x" if r.get("ratio_to_pca") is not None else "",
            f"{r['parameters']:,}" if r.get("parameters") is not None else "",
            "" if r.get("seconds") is None else f"{r['seconds']:.{1 if r['seconds'] < 100 else 0}f}",
            style="bold green" if r is best else None,
        )
    return t


def print_start(source: str, n_items: int, out_dir: Path, search: str, n: int, n_grid: int, already: int, budget):
    limit = f", each at most {budget:g} s" if budget else ""
    how = "every combination" if search == "grid" and n == n_grid else f"{n} of {n_grid} combinations"
    console.print(
        f"[bold]aekit sweep[/bold]: {source} ({n_items} items), {n} trial(s) ({search}: {how}){limit}, into {out_dir}"
    )
    if already:
        console.print(f"resuming: {already} finished trial(s) are kept")


def print_results(out_dir: Path, rows: list[dict]) -> None:
    """The table, the failed trials with their reason, the best trial and where everything is."""
    console.print(results_table(rows))
    for r in rows:
        if r["status"] == FAILED:
            console.print(f"[red]failed[/red] {r['trial']}: {r['error']}")
    best = best_row(rows)
    if best is not None:
        console.print(
            f"best: [bold]{best['trial']}[/bold], val MSE {best['val_mse']:.6g} "
            f"({_fmt(best['ratio_to_pca'], 3)}x PCA's), linked as {out_dir / 'best'}"
        )
    console.print(f"results: {out_dir / RESULTS}, {out_dir / 'sweep.png'}, {out_dir / 'sweep.html'}")
