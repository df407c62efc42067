"""Honest evaluation, as people read it: the autoencoder next to PCA with the same number of components.

PCA is fitted on the run's training data (in the model's normalised units) and saved with the
run as `pca.safetensors`, so `aekit evaluate RUN DATA` compares both on any data (the numbers come
from measures/validation.py). Metrics are in [0, 1] pixel units (see metrics.py); integer
images are clipped to the valid range first.
"""

from __future__ import annotations

from rich.table import Table


def comparison_table(res: dict, title: str, columns: list[str] | None = None) -> Table:
    if res.get("units") == "standardised":
        return _table_comparison(res, title, columns)
    t = Table(title=title, title_justify="left")
    t.add_column("")
    t.add_column("MSE", justify="right")
    t.add_column("PSNR dB", justify="right")
    t.add_column("SSIM", justify="right")
    for name, key in (("autoencoder", "autoencoder"), (f"PCA, {res['latent_dim']} components", "pca")):
        m = res[key]
        t.add_row(name, f"{m['mse']:.6f}", format_db(m["psnr"]), f"{m['ssim']:.4f}")
    channels = len(res["autoencoder"]["per_channel"]["mse"])
    if channels > 1:
        for c in range(channels):
            a, p = res["autoencoder"]["per_channel"], res["pca"]["per_channel"]
            t.add_row(
                f"  channel {c}: AE / PCA",
                f"{a['mse'][c]:.6f} / {p['mse'][c]:.6f}",
                f"{format_db(a['psnr'][c])} / {format_db(p['psnr'][c])}",
                f"{a['ssim'][c]:.3f} / {p['ssim'][c]:.3f}",
            )
    return t


def _table_comparison(res: dict, title: str, columns: list[str] | None, limit: int = 20) -> Table:
    """Tables: MSE in standardised units, overall and per column (PSNR and SSIM mean nothing here)."""
    t = Table(title=title, title_justify="left")
    t.add_column("")
    t.add_column("MSE (standardised)", justify="right")
    t.add_row("autoencoder", f"{res['autoencoder']['mse']:.6f}")
    t.add_row(f"PCA, {res['latent_dim']} components", f"{res['pca']['mse']:.6f}")
    a, p = res["autoencoder"]["per_channel"]["mse"], res["pca"]["per_channel"]["mse"]
    names = columns or [str(i) for i in range(len(a))]
    for name, ea, ep in list(zip(names, a, p))[:limit]:
        t.add_row(f"  {name}: AE / PCA", f"{ea:.4f} / {ep:.4f}")
    if len(a) > limit:
        t.add_row(f"  ... {len(a) - limit} more columns", "in summary.json")
    return t


def say_verdict(res: dict) -> str:
    ratio = res["autoencoder"]["mse"] / max(res["pca"]["mse"], 1e-300)
    return {
        "better": f"The autoencoder is better than PCA: {ratio:.2f}x PCA's MSE.",
        "equal": "The autoencoder is as good as PCA (within 0.5% MSE): no gain from the nonlinear model here.",
        "worse": f"The autoencoder is WORSE than PCA ({ratio:.2f}x its MSE): train longer or use PCA.",
    }[res["vs_pca"]]


def format_db(value: float | None) -> str:
    return "inf" if value is None else f"{value:.2f}"
