"""Honest evaluation: the autoencoder next to PCA with the same number of components.

PCA is fitted on the run's training data (in the model's normalised units) and saved with the
run as `pca.safetensors`, so `aekit evaluate RUN DATA` compares both on any data. Metrics are in
[0, 1] pixel units (see metrics.py); integer images are clipped to the valid range first.
"""

from __future__ import annotations

import copy

import torch
from rich.table import Table

from aekit.evaluation.metrics import Metrics, verdict
from aekit.models.pca import PCA


@torch.no_grad()
def compare(
    model,
    normalizer,
    pca: PCA,
    x_all: torch.Tensor,
    idx: torch.Tensor,
    device,
    bounded: bool,
    batch_size: int = 256,
    standardized: bool = False,
    m_all: torch.Tensor | None = None,
) -> dict:
    """Metrics of the model and of PCA on items `idx` of raw (N, C, H, W) data; tables
    (`standardized`) are compared in standardised units, where the model was trained; rasters
    with nodata over the valid pixels of `m_all` (N, 1, H, W)."""
    ae, lin = Metrics(not standardized), Metrics(not standardized)
    cpu_norm = copy.deepcopy(normalizer).cpu()  # PCA runs on the CPU; .cpu() on a module moves it in place
    was_training = model.training
    model.eval()
    for i in range(0, len(idx), batch_size):
        xb = x_all[idx[i : i + batch_size]]
        mb = None if m_all is None else m_all[idx[i : i + batch_size]]
        out = model(normalizer.normalize(xb.to(device))).recon
        if standardized:  # 1.0 is the error of predicting each column's (training) mean
            target = cpu_norm.normalize(xb)
            recon, linear = out.float().cpu(), pca.reconstruct(target)
        else:
            target = xb.float() / cpu_norm.scale
            recon = normalizer.to_unit(out, bounded).float().cpu()
            linear = cpu_norm.to_unit(pca.reconstruct(cpu_norm.normalize(xb)), bounded)
        ae.update(recon, target, mb)
        lin.update(linear, target, mb)
    model.train(was_training)
    a, b = ae.result(), lin.result()
    return {
        "units": "standardised" if standardized else "pixels in [0, 1]",
        "n_items": len(idx),
        "latent_dim": pca.components.shape[1],
        "autoencoder": a,
        "pca": b,
        "vs_pca": verdict(a["mse"], b["mse"]),
    }


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
