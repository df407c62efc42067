"""Passes over the validation items: the loss after each epoch, and one final pass for the run's results.

Both read raw (N, C, H, W) data that stays on the host, a batch at a time, and measure errors in
the units of the data's kind (data/kind.py); rasters with nodata count valid pixels only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from aekit.core.transfer import HostGather, host_cast
from aekit.data.kind import DataKind
from aekit.measures.ensemble import METRIC as ENSEMBLE
from aekit.measures.ensemble import EnsembleScorer, calibration, combine_of, parts_of, score_of
from aekit.measures.item_errors import item_errors
from aekit.measures.latent_score import METRIC as LATENT_METRIC
from aekit.measures.latent_score import combined
from aekit.measures.metrics import Metrics, squared_error, verdict
from aekit.models.base import loss_fn
from aekit.models.pca import PCA

ACTIVE_VARIANCE = 0.01  # a latent dimension is active when its code varies more than this (Burda et al. 2016)


def batches(x_all: torch.Tensor, m_all: torch.Tensor | None, idx: torch.Tensor, batch_size: int, device):
    """(start, raw batch on the device, its mask or None) over items `idx` (on CUDA through a
    pinned buffer: core/transfer.py)."""
    xs, ms = HostGather(x_all, device), None if m_all is None else HostGather(m_all, device)
    for i in range(0, len(idx), batch_size):
        part = idx[i : i + batch_size]
        yield i, xs(part), None if ms is None else ms(part)


@torch.no_grad()
def validation_loss(model, normalizer, x_all, idx, device, batch_size: int, kind: DataKind, m_all=None) -> dict:
    """Mean loss terms (the model's own loss at full strength, e.g. a VAE's negative ELBO) and
    the MSE in the kind's units over items `idx`."""
    model.eval()
    loss = loss_fn(model)
    sums: dict[str, float] = {}
    sq_sum, count, items = 0.0, 0, 0
    for i, xb, mb in batches(x_all, m_all, idx, batch_size, device):
        xn = normalizer.normalize(xb)
        out = model(xn)
        if model.stochastic:  # the objective itself is random (a VAE's sampled code, a DAE's noise):
            # score it as trained, with a fixed seed so that epochs compare fairly
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(i)
                model.train()
                out_obj = model(xn)
                model.eval()
        else:
            out_obj = out
        for k, v in loss(out_obj, xn, mb).items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(xb)
        recon, target = kind.measured(normalizer, out.recon, xb)
        sq, n = squared_error(recon.float(), target.float(), mb)
        sq_sum += sq.item()
        count += n.item()
        items += len(xb)
    model.train()
    return {**{k: v / items for k, v in sums.items()}, "mse": sq_sum / max(count, 1)}


@torch.no_grad()
def reconstruct_measured(model, normalizer, x_raw: torch.Tensor, device, kind: DataKind) -> np.ndarray:
    """Reconstructions of a few raw items in the kind's units (for pictures)."""
    model.eval()
    x_raw = host_cast(x_raw, device).to(device)
    recon = model(normalizer.normalize(x_raw)).recon
    model.train()
    return kind.measured(normalizer, recon, x_raw)[0].float().cpu().numpy()


@dataclass
class FinalPass:
    comparison: dict  # autoencoder vs PCA: MSE, PSNR, SSIM overall and per channel, and the verdict
    errors: dict[str, np.ndarray]  # per-item errors under each of the kind's metrics (the threshold's data)
    latent: dict  # active_units and, for models with a posterior, kl_per_dim (nats)
    ensemble_calibration: dict | None = None  # the ensemble score's calibration on these items (model.json)


@torch.no_grad()
def final_pass(
    model,
    normalizer,
    pca: PCA,
    x_all,
    idx,
    device,
    batch_size: int,
    kind: DataKind,
    m_all=None,
    scores=True,
    latent_stats: dict | None = None,
    refs: dict | None = None,
    skip_self: bool = False,
) -> FinalPass:
    """One pass over items `idx` for everything a run reports at its end: the metrics of the model
    and of PCA with the same number of components, per-item errors under every score metric
    (unless not `scores`; mse+latent needs `latent_stats`, ensemble also its kNN `refs`, which
    hold these items themselves when `skip_self`), and latent statistics. The ensemble score is
    calibrated on these items (FinalPass.ensemble_calibration)."""
    image_metrics = not kind.table
    own = image_metrics and not kind.bounded  # PSNR over the data's own range, not a range of 1
    ae, lin = Metrics(image_metrics, own), Metrics(image_metrics, own)
    cpu_norm = copy.deepcopy(normalizer).cpu()  # PCA runs on the CPU; .cpu() on a module moves it in place
    needs = {LATENT_METRIC: latent_stats is not None, ENSEMBLE: latent_stats is not None and refs is not None}
    metrics = [m for m in (kind.metrics if scores else ()) if needs.get(m, True)]
    errors: dict[str, list] = {m: [] for m in metrics}
    by_part: dict[str, list] = {}  # the ensemble's raw parts
    scorer = (
        EnsembleScorer(parts_of(kind), latent_stats, refs, skip_self=skip_self).to(device)
        if ENSEMBLE in errors
        else None
    )
    zs, kls = [], []
    model.eval()
    for _, xb, mb in batches(x_all, m_all, idx, batch_size, device):
        xn = normalizer.normalize(xb)
        out = model(xn)
        recon, target = kind.measured(normalizer, out.recon, xb)
        for m in errors:
            if m not in (LATENT_METRIC, ENSEMBLE):
                errors[m].append(item_errors(recon, target, m, mb).cpu())
        if LATENT_METRIC in errors:
            errors[LATENT_METRIC].append(combined(errors["mse"][-1], out.z, latent_stats))
        if ENSEMBLE in errors:
            for name, v in scorer.parts(out.z, recon, target, xn, mb).items():
                by_part.setdefault(name, []).append(v.cpu())
        zs.append(out.z.float().cpu())
        if "kl" in out.stats:  # models with a posterior report each dimension's KL
            kls.append(out.stats["kl"].float().cpu())
        raw, m_cpu = xb.cpu(), None if mb is None else mb.cpu()
        linear = kind.measured(cpu_norm, pca.reconstruct(cpu_norm.normalize(raw)), raw)[0]
        ae.update(recon.float().cpu(), target.float().cpu(), m_cpu)
        lin.update(linear, target.float().cpu(), m_cpu)
    model.train()
    a, b = ae.result(), lin.result()
    comparison = {
        "units": "standardised" if kind.table else kind.units,
        "n_items": len(idx),
        "latent_dim": pca.components.shape[1],
        "autoencoder": a,
        "pca": b,
        "vs_pca": verdict(a["mse"], b["mse"]),
    }
    var = torch.cat(zs).var(0, unbiased=False) if len(idx) > 1 else torch.zeros(zs[0].shape[1])
    latent: dict = {"active_units": int((var > ACTIVE_VARIANCE).sum())}
    if kls:
        latent["kl_per_dim"] = [round(float(v), 5) for v in torch.cat(kls).mean(0)]
    cal = None
    if by_part:
        parts = {name: torch.cat(v) for name, v in by_part.items()}
        cal = calibration(parts, combine_of(kind))
        errors[ENSEMBLE] = [score_of(parts, cal)]
    return FinalPass(comparison, {m: torch.cat(v).cpu().double().numpy() for m, v in errors.items()}, latent, cal)
