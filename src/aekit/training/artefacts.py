"""The end of a run: the best weights back in place, then everything a person or a later command reads.

One validation pass (measures/validation.py) gives the metrics against PCA, the per-item errors
the anomaly threshold is set from, and the latent statistics. Written here: recon.png, loss.png,
validation_scores.csv, the threshold in model.json, and summary.json.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from aekit.core.errors import AekitError
from aekit.core.grid_labels import GridText
from aekit.core.plots import loss_plot, recon_grid, table_recon_plot
from aekit.core.progress import console
from aekit.core.rundir import write_json
from aekit.data.base import LoadedData
from aekit.measures.compare import comparison_table, say_verdict
from aekit.measures.ensemble import K_NEIGHBOURS, combine_of, references
from aekit.measures.item_errors import item_errors
from aekit.measures.latent_score import latent_statistics
from aekit.measures.thresholds import threshold_from, write_validation_scores
from aekit.measures.validation import FinalPass, final_pass, reconstruct_measured
from aekit.models.checkpoint import save_references
from aekit.training.console import print_end
from aekit.training.setup import Setup
from aekit.version import __version__


def finish(
    s: Setup,
    data: LoadedData,
    rows: list[dict],
    best: dict,
    best_state: dict,
    stopped: str,
    run_dir: Path,
    t_start: float,
    verbose: bool,
) -> dict:
    """Write the run's results for the best epoch; returns the summary (summary.json)."""
    if not math.isfinite(best["val_loss"]):
        raise AekitError(
            "training produced no finite validation loss (NaN or Inf); lower --lr or check the data for extreme values"
        )
    s.model.load_state_dict(best_state)
    recon_picture(s, data, run_dir / "recon.png")
    loss_plot(rows, run_dir / "loss.png")
    batch = s.cfg.batch_size * 4
    stats = latent_statistics(s.model, s.normalizer, s.x_all, s.train_idx, s.device, batch, s.kind, s.m_all)
    s.meta["latent_score"] = stats
    refs = references(s.model, s.normalizer, s.x_all, s.train_idx, s.device, batch, stats, s.cfg.seed)
    on_train = not len(s.val_idx)  # no validation split: the ensemble is calibrated on training items, not on itself
    res = final_pass(
        s.model,
        s.normalizer,
        s.pca,
        s.x_all,
        s.eval_idx,
        s.device,
        batch,
        s.kind,
        s.m_all,
        latent_stats=stats,
        refs=refs,
        skip_self=on_train,
    )
    save_references(run_dir, refs)
    s.meta["ensemble"] = {**res.ensemble_calibration, "references": len(refs["items"]), "k": K_NEIGHBOURS}
    write_validation_scores(run_dir, [data.ids[i] for i in s.eval_idx.tolist()], res.errors)
    whose = f"the {len(s.eval_idx)} {'validation' if len(s.val_idx) else 'training'} items"
    rules = {
        m: threshold_from(
            e,
            m,
            percentile=s.cfg.threshold_percentile,
            contamination=s.cfg.contamination,
            of=whose,
            units=s.kind.units,
            combine=combine_of(s.kind),
        )
        for m, e in res.errors.items()
    }
    primary = s.kind.default_metric if s.kind.default_metric in rules else "mse"
    s.meta["score_metric"] = primary
    s.meta["threshold"] = {**rules[primary], "by_metric": {m: r for m, r in rules.items() if m != primary}}
    write_json(run_dir / "model.json", s.meta)
    summary = make_summary(s, data, res, rows, best, stopped, rules[primary], t_start)
    write_json(run_dir / "summary.json", summary)
    if verbose:
        print_end(summary, run_dir)
        title = f"validation ({len(s.eval_idx)} items): autoencoder vs PCA"
        console.print(comparison_table(res.comparison, title, data.columns))
        console.print(say_verdict(res.comparison))
    return summary


def recon_picture(s: Setup, data: LoadedData, path: Path) -> None:
    """Validation items above their reconstructions; tables: reconstructed against original values."""
    if s.kind.table:  # no images to show: standardised values
        show = s.x_all[s.eval_idx[:2000]]
        table_recon_plot(
            s.normalizer.normalize(show.to(s.device)).cpu().numpy()[:, :, 0, 0],
            reconstruct_measured(s.model, s.normalizer, show, s.device, s.kind)[:, :, 0, 0],
            path,
        )
        return
    n_show = min(8, len(s.eval_idx))
    shown = s.eval_idx[torch.linspace(0, len(s.eval_idx) - 1, n_show).round().long()]  # spread over the set
    show = s.x_all[shown]
    originals, mask = show.float().numpy() / data.scale, None if s.m_all is None else s.m_all[shown]
    recons = reconstruct_measured(s.model, s.normalizer, show, s.device, s.kind)
    mse = item_errors(torch.from_numpy(recons), torch.from_numpy(originals), "mse", mask)  # validation_scores.csv's
    text = GridText(names=[data.ids[i] for i in shown.tolist()], values=mse.tolist(), value_name="MSE")
    mask = None if mask is None else mask.numpy()
    recon_grid(originals, recons, path, rgb=s.rgb, stretch=s.kind.raster, mask=mask, text=text)


def make_summary(
    s: Setup, data: LoadedData, res: FinalPass, rows: list[dict], best: dict, stopped: str, threshold: dict, t_start
) -> dict:
    cfg, c, (h, w) = s.cfg, data.shape[0], data.shape[1:]
    ae, lin = res.comparison["autoencoder"], res.comparison["pca"]
    if len(s.val_idx):
        val_on = "validation split"
    else:
        val_on = "training data (val_fraction is 0)" if cfg.val_fraction == 0 else "training data (too few items)"
    if s.shards:  # each machine holds its own items; rank 0 measures those of machine 0
        val_on = f"{val_on} of machine 0's shard ({len(s.eval_idx)} items; metrics.csv: every machine's)"
    return {
        "aekit_version": __version__,
        "data": data.source,
        "n_found": data.n_found,
        "n_images": s.n_train + s.n_val if s.shards or s.stream else len(data),
        "n_train": s.n_train,
        "n_val": s.n_val,
        **({"node_shards": s.shards.describe(data.shard)} if s.shards else {}),
        "channels": c,
        "image_size": [h, w],
        "model": cfg.model,
        **({"columns": data.columns, "id_column": data.id_name} if s.kind.table else {}),
        "metric_units": "standardised (columns: mean 0, std 1 on the training rows)" if s.kind.table else s.kind.units,
        "arch": cfg.arch,
        "latent_dim": cfg.latent_dim,
        **res.latent,
        "parameters": s.n_params,
        "device": str(s.device),
        "world_size": s.ctx.world,
        "compute": s.compute.describe(),
        "load_seconds": data.load_seconds,
        "epochs_run": len(rows),
        "best_epoch": best["epoch"],
        "val_loss": best["val_loss"],
        "val_mse": ae["mse"],
        "mse_units": s.kind.units,
        "val_psnr": ae["psnr"],
        "val_ssim": ae["ssim"],
        "pca_val_mse": lin["mse"],
        "pca_val_psnr": lin["psnr"],
        "pca_val_ssim": lin["ssim"],
        "vs_pca": res.comparison["vs_pca"],
        "metrics": res.comparison,
        "val_on": val_on,
        "threshold": threshold,
        "stopped": stopped,
        "seconds": round(time.perf_counter() - t_start, 2),
        "images_per_s": rows[-1]["images_per_s"],
        "skipped": [{"path": k.path, "reason": k.reason} for k in data.skipped],
    }
