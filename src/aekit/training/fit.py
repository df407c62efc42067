"""The training loop: decoded data in memory -> batches on the device -> best model on disk.

Read top to bottom: split, normalise, build, loop over epochs (train, validate, keep the best),
then write the run directory. The loop does not know which model it trains: each model returns
an `AEOutput` and defines its loss terms (models/base.py), which are all logged.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from aekit.config.train import TrainConfig
from aekit.core import distributed
from aekit.core.compute import compute_settings
from aekit.core.devices import resolve_device
from aekit.core.errors import AekitError
from aekit.core.plots import loss_plot, preview_channels, recon_grid, table_recon_plot
from aekit.core.progress import console, make_progress
from aekit.core.rundir import write_json, write_metrics, write_yaml
from aekit.data.base import ImageData
from aekit.data.normalize import Normalizer, channel_stats
from aekit.evaluation.compare import compare, comparison_table, format_db, say_verdict
from aekit.evaluation.item_errors import METRICS, TABLE_METRICS, error_units, item_errors
from aekit.evaluation.metrics import squared_error
from aekit.evaluation.thresholds import threshold_from, write_validation_scores
from aekit.models import create_model, loss_fn
from aekit.models.checkpoint import count_parameters, model_meta, save_model, save_pca
from aekit.models.conv import auto_width, max_depth
from aekit.models.pca import fit_pca, pca_rows
from aekit.training.defaults import resolve_for_data
from aekit.training.state import save_state
from aekit.training.step import lr_at, make_optimizer, param_groups, train_step, weights_finite
from aekit.version import __version__

MAX_BAD_STEPS = 8  # non-finite steps (each skipped and halving the LR) before the run is stopped
DIVERGED = (
    "diverged: {n} steps had a NaN or Inf loss or gradient, even with the learning rate lowered to "
    "{lr:.2g}; likely causes: data with extreme values that need scaling, or --lr too high"
)
# Table models up to this many parameters train on one CPU thread: their matrices are too small
# to share, and waiting on busy threads cost 10-40x (1.5 ms vs 14-61 ms a step, 12 columns, 2 cores)
SMALL_MODEL = 250_000


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded train/validation split; at least one item of each when n >= 2 and val_fraction > 0."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(1, n_val), n - 1)
    else:
        n_val = 0
    return perm[n_val:].sort().values, perm[:n_val].sort().values


@torch.no_grad()
def evaluate(
    model, normalizer, x_all, idx, device, batch_size, bounded, standardized: bool = False, m_all=None
) -> dict:
    """Mean loss terms (the model's own loss at full strength, e.g. a VAE's negative ELBO) and
    MSE in [0, 1] units over items `idx` (tables, `standardized`: MSE in standardised units); over
    valid pixels only when `m_all`, the (N, 1, H, W) nodata mask, is given."""
    model.eval()
    loss = loss_fn(model)
    stochastic = getattr(model, "stochastic", False)
    sums: dict[str, float] = {}
    mse_sum, std_sum, count, items = 0.0, 0.0, 0, 0
    for i in range(0, len(idx), batch_size):
        xb = x_all[idx[i : i + batch_size]].to(device, non_blocking=True)
        mb = None if m_all is None else m_all[idx[i : i + batch_size]].to(device)
        xn = normalizer.normalize(xb)
        out = model(xn)
        std_sum += squared_error(out.recon.float(), xn, mb)[0].item()
        if stochastic:  # the objective itself is random (a VAE's sampled code, a DAE's noise):
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
        unit = normalizer.to_unit(out.recon, bounded)
        sq, n = squared_error(unit.float(), xb.float() / normalizer.scale, mb)
        mse_sum += sq.item()
        count += n.item()
        items += len(xb)
    model.train()
    mse = (std_sum if standardized else mse_sum) / max(count, 1)
    return {**{k: v / items for k, v in sums.items()}, "mse": mse}


@torch.no_grad()
def reconstruct_unit(model, normalizer, x_raw: torch.Tensor, device, bounded: bool, standardized=False) -> np.ndarray:
    """Reconstructions in [0, 1] units, or in the model's standardised units (tables)."""
    model.eval()
    recon = model(normalizer.normalize(x_raw.to(device))).recon
    unit = recon if standardized else normalizer.to_unit(recon, bounded)
    model.train()
    return unit.float().cpu().numpy()


@torch.no_grad()
def validation_pass(
    model,
    normalizer,
    x_all,
    idx,
    device,
    bounded: bool,
    batch_size: int,
    standardized: bool = False,
    m_all=None,
) -> tuple[dict[str, np.ndarray], dict]:
    """One pass over items `idx` for what the run reports at its end:

    - per-item errors under every score metric, which the anomaly threshold is set from (tables,
      `standardized`: in standardised units and no SSIM; rasters: over the valid pixels of `m_all`);
    - active units (latent dimensions whose code varies across the items: variance above 0.01,
      Burda et al. 2016) and, for models with a posterior, the mean KL of each dimension in nats."""
    model.eval()
    metrics = TABLE_METRICS if standardized else METRICS
    errors: dict[str, list] = {m: [] for m in metrics}
    zs, kls = [], []
    for i in range(0, len(idx), batch_size):
        xb = x_all[idx[i : i + batch_size]].to(device, non_blocking=True)
        mb = None if m_all is None else m_all[idx[i : i + batch_size]].to(device)
        xn = normalizer.normalize(xb)
        out = model(xn)
        zs.append(out.z.float().cpu())
        if "kl" in out.stats:
            kls.append(out.stats["kl"].float().cpu())
        recon, target = out.recon, xn
        if not standardized:
            recon, target = normalizer.to_unit(recon, bounded), xb.float() / normalizer.scale
        for m in metrics:
            errors[m].append(item_errors(recon, target, m, mb).cpu())
    model.train()
    var = torch.cat(zs).var(0, unbiased=False) if len(idx) > 1 else torch.zeros(zs[0].shape[1])
    latent: dict = {"active_units": int((var > 0.01).sum())}
    if kls:
        latent["kl_per_dim"] = [round(float(v), 5) for v in torch.cat(kls).mean(0)]
    return {m: torch.cat(v).double().numpy() for m, v in errors.items()}, latent


def fit(
    data: ImageData,
    cfg: TrainConfig,
    run_dir: Path,
    *,
    verbose: bool = True,
    resume: dict | None = None,
    on_epoch=None,
) -> dict:
    """Train on `data` with `cfg`, writing everything into `run_dir`; returns the summary. With
    `resume` (a state from resume.load_state), go on after its epoch. `on_epoch(epoch, row)`, given
    the epoch's metrics.csv row, may return True to stop early (a sweep prunes hopeless trials with
    it); the best model so far is kept, as at a time limit."""
    threads = torch.get_num_threads()
    try:
        return _fit(data, cfg, run_dir, verbose=verbose, resume=resume, on_epoch=on_epoch)
    finally:
        torch.set_num_threads(threads)  # a small table model trains on one thread (see SMALL_MODEL)


def _fit(
    data: ImageData, cfg: TrainConfig, run_dir: Path, *, verbose: bool = True, resume: dict | None = None, on_epoch=None
) -> dict:
    t_start = time.perf_counter()
    ctx = distributed.context()  # rank and world size under torchrun; one process otherwise
    device = resolve_device(distributed.rank_device(cfg.device, ctx))
    distributed.per_rank_batch(cfg.batch_size, ctx)  # the global batch must split evenly
    torch.manual_seed(cfg.seed)
    c, h, w = data.shape
    bounded = data.scale != 1.0  # integer images: reconstructions are clamped to the valid range
    tabular = data.columns is not None  # (N, F, 1, 1): metrics in standardised units, no flips
    rgb = preview_channels(cfg.rgb_bands, data.raster["bands"] if data.raster else None, c)  # checked early

    train_idx, val_idx = split_indices(len(data), cfg.val_fraction, cfg.seed)
    cfg = resolve_for_data(cfg, data, len(train_idx))  # arch, latent size, epochs (see resolve.py)
    eval_idx = val_idx if len(val_idx) else train_idx  # a single image: report on what we have
    x_all = torch.from_numpy(data.array)  # (N, C, H, W) raw units, stays on the host
    if device.type == "cuda" and not isinstance(data.array, np.memmap):
        x_all = x_all.pin_memory()  # page-locked host memory: asynchronous copies to the GPU
    m_all = None if data.mask is None else torch.from_numpy(data.mask)  # (N, 1, H, W) True = valid
    mean, std = channel_stats(
        data.array, data.scale, train_idx.numpy(), min_std=1e-12 if tabular else 1e-3, mask=data.mask
    )
    normalizer = Normalizer(data.scale, mean, std).to(device)

    kwargs = {"in_shape": (c, h, w), "latent_dim": cfg.latent_dim, "depth": cfg.depth}
    if cfg.arch == "conv":
        kwargs["width"] = cfg.width or auto_width(c)
    elif cfg.arch == "mlp":
        kwargs["width"] = cfg.width
    deepest = max_depth(h, w)
    if cfg.arch != "mlp" and cfg.depth is not None and cfg.depth > deepest:
        raise AekitError(
            f"depth {cfg.depth} is too deep for {h}x{w} images (at most {deepest}); pass a smaller --depth"
        )
    if cfg.model != "ae":
        kwargs.update(variant=cfg.model, variant_options=cfg.variant_options())
    if cfg.model == "vae" and cfg.recon_loss == "bce" and data.scale == 1.0:
        lo, hi = float(np.min(data.array)), float(np.max(data.array))
        if lo < 0 or hi > 1:
            raise AekitError(
                f"--recon-loss bce needs data in [0, 1]; these float values span [{lo:g}, {hi:g}]: use mse"
            )
    model = create_model(cfg.arch, **kwargs)
    if hasattr(model, "use_normalizer"):  # models that work in pixel units too (noise, Bernoulli)
        model.use_normalizer(normalizer)
    if cfg.arch == "mlp":
        kwargs["width"] = model.width  # resolved
    pca = fit_pca(
        copy.deepcopy(normalizer).cpu().normalize(x_all[train_idx[pca_rows(len(train_idx), c * h * w, cfg.seed)]]),
        cfg.latent_dim,
        cfg.seed,
    )
    if hasattr(model, "init_from_pca"):  # start where the linear baseline ends
        model.init_from_pca(pca.mean, pca.components, variance=pca.variance)
    compute = compute_settings(device, cfg.precision, cfg.compile)
    train_model = compute.prepare(model)  # the same parameters; maybe compiled or channels_last
    if ctx.active:  # gradients averaged over the ranks in backward()
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    save_pca(run_dir, pca)
    kwargs["depth"] = len(model.sizes) - 1  # resolved: the run rebuilds exactly this network
    resolved = {"columns": data.columns} if tabular else {"channels": c, "image_size": [h, w]}
    cfg = replace(cfg, depth=kwargs["depth"], width=kwargs.get("width", cfg.width), **resolved)
    write_yaml(run_dir / "config.yaml", {"data": data.source, **cfg.to_dict()})
    extra = {"table": {"columns": data.columns, "id_column": data.id_name}} if tabular else {}
    if data.raster:
        extra["raster"] = {**data.raster, "rgb_bands": cfg.rgb_bands}
    meta = model_meta(cfg.arch, kwargs, normalizer, str(data.array.dtype), source=data.source, **extra)

    n_params = count_parameters(model)
    if tabular and device.type == "cpu" and n_params <= SMALL_MODEL:
        torch.set_num_threads(1)
    if cfg.latent_dim >= c * h * w:
        data.notes.append(f"latent_dim {cfg.latent_dim} >= the {c * h * w} input values: no compression")
    if verbose:
        _print_start(data, cfg, compute, n_params, len(train_idx), len(val_idx), run_dir)

    opt = make_optimizer(param_groups(model), cfg.lr, cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    rows: list[dict] = []
    lr_factor, bad_steps, stopped = 1.0, 0, "completed all epochs"  # lr_factor: lowered by the NaN guard
    if resume is None:
        # epoch 0 is the untrained model (for conv and mlp, exactly PCA): training keeps it unless it improves
        val0 = evaluate(model, normalizer, x_all, eval_idx, device, cfg.batch_size * 4, bounded, tabular, m_all)
        best = {"val_loss": val0["loss"], "epoch": 0, "mse": val0["mse"]}
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        save_model(run_dir, model, meta)
        step, first_epoch = 0, 1
    else:  # go on exactly where the last completed epoch left off (resume.py)
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        gen.set_state(resume["gen"])
        torch.set_rng_state(resume["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in resume:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
        best, best_state, rows = dict(resume["best"]), resume["best_state"], list(resume["rows"])
        step, first_epoch = resume["step"], resume["epoch"] + 1
        lr_factor, bad_steps = resume["lr_factor"], resume["bad_steps"]
        t_start = time.perf_counter() - resume["elapsed"]  # the time budget counts what was spent
        if verbose:
            console.print(
                f"resuming after epoch {resume['epoch']} of {cfg.epochs} (best so far: epoch {best['epoch']})"
            )
    progress = make_progress() if verbose else None
    task = progress.add_task("training", total=total_steps, info="") if progress else None
    if progress:
        progress.start()
    try:
        for epoch in range(first_epoch, cfg.epochs + 1):
            t_epoch = time.perf_counter()
            sums: dict[str, torch.Tensor] = {}  # loss terms summed on the device: no sync per step
            seen, last_draw = 0, 0.0
            order = train_idx[torch.randperm(len(train_idx), generator=gen)]
            for i in range(0, len(order), cfg.batch_size):
                elapsed = time.perf_counter() - t_start
                frac = step / total_steps
                if cfg.max_time:
                    frac = max(frac, elapsed / cfg.max_time)
                lr = lr_at(frac, cfg.lr)
                for group in opt.param_groups:
                    group["lr"] = lr * lr_factor * group["lr_scale"]
                batch = order[i : i + cfg.batch_size]  # the global batch; this rank takes its slice
                flips = torch.rand(len(batch), generator=gen) < 0.5 if cfg.augment == "flip" else None
                if ctx.active:
                    batch = distributed.pad_to_world(batch, order, ctx)
                    if flips is not None:
                        flips = torch.cat([flips, flips[: len(batch) - len(flips)]])
                    part = distributed.rank_slice(batch, ctx)
                    batch, flips = batch[part], None if flips is None else flips[part]
                xb = x_all[batch].to(device, non_blocking=True)  # (B, C, H, W) raw, e.g. uint8
                mb = None if m_all is None else m_all[batch].to(device, non_blocking=True)
                if flips is not None:  # a seeded half of the batch mirrored left-right, in place,
                    if xb.dtype != torch.uint8:  # while still 1 byte a value (torch cannot flip uint16)
                        xb = xb.float()
                    mirrored = torch.nonzero(flips).flatten().to(device)
                    xb[mirrored] = xb[mirrored].flip(-1)
                    if mb is not None:
                        mb[mirrored] = mb[mirrored].flip(-1)
                if compute.channels_last:  # float and channels_last in one pass, before normalising
                    xb = xb.to(dtype=torch.float32, memory_format=torch.channels_last)
                xn = normalizer.normalize(xb)
                terms = train_step(train_model, opt, xn, compute, mask=mb, epoch=epoch - 1 + i / len(order))
                if terms.pop("skipped", False):  # a non-finite loss or gradient: step skipped, LR halved
                    bad_steps, lr_factor = bad_steps + 1, lr_factor * 0.5
                    if bad_steps >= MAX_BAD_STEPS:
                        stopped = DIVERGED.format(n=bad_steps, lr=cfg.lr * lr_factor)
                        break
                else:
                    for k, v in terms.items():
                        sums[k] = sums[k] + v * len(xb) if k in sums else v * len(xb)
                    seen += len(xb)
                step += 1
                now = time.perf_counter()
                if progress and now - last_draw > 0.25:
                    progress.update(task, completed=step, description=f"epoch {epoch}/{cfg.epochs}")
                    last_draw = now
                if cfg.max_time and distributed.any_rank(now - t_start >= cfg.max_time, device, ctx):
                    stopped = f"time budget of {cfg.max_time:g} s spent"  # on every rank at the same step
                    break
            if device.type == "cuda":
                torch.cuda.synchronize()
            if ctx.active:  # the loss sums and counts of all ranks: metrics describe the whole data
                keys = sorted(sums)
                total = distributed.all_sum(
                    torch.stack([*(sums[k].float() for k in keys), torch.tensor(float(seen), device=device)]), ctx
                )
                sums, seen = dict(zip(keys, total[:-1])), int(total[-1])
            train_seconds = time.perf_counter() - t_epoch
            val = evaluate(model, normalizer, x_all, eval_idx, device, cfg.batch_size * 4, bounded, tabular, m_all)
            row = {
                "epoch": epoch,
                "train_loss": float(sums["loss"]) / seen if seen else math.nan,
                "val_loss": val["loss"],
                "val_mse": val["mse"],
                "lr": lr,
                "seconds": round(time.perf_counter() - t_start, 3),
                "images_per_s": round(seen / train_seconds, 1),
            }
            for k in sums.keys() - {"loss"}:  # the model's other terms, e.g. a VAE's recon, kl, elbo
                row[f"train_{k}"] = float(sums[k]) / max(seen, 1)
                row[f"val_{k}"] = val[k]
            rows.append(row)
            if math.isfinite(val["loss"]) and val["loss"] < best["val_loss"] and weights_finite(model):
                best = {"val_loss": val["loss"], "epoch": epoch, "mse": val["mse"]}
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                save_model(run_dir, model, meta)
            write_metrics(run_dir / "metrics.csv", rows)
            state = {
                "epoch": epoch,
                "step": step,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "gen": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "best": best,
                "best_state": best_state,
                "rows": rows,
                "elapsed": time.perf_counter() - t_start,
                "lr_factor": lr_factor,
                "bad_steps": bad_steps,
            }
            if device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state(device)
            save_state(run_dir, state)  # atomically: a crash from here on resumes after this epoch
            if progress:
                progress.update(task, completed=step, info=f"val {val['loss']:.4f}")
                progress.console.print(
                    f"epoch {epoch:>3}  loss train {row['train_loss']:.5f} val {row['val_loss']:.5f}  "
                    f"val MSE {row['val_mse']:.6f} ({'standardised' if tabular else 'pixels'})  lr {lr:.2e}  "
                    f"{row['images_per_s']:.0f} {'rows' if tabular else 'img'}/s"
                )
            if on_epoch is not None and on_epoch(epoch, row):
                stopped = "stopped early by on_epoch"
            if stopped != "completed all epochs":
                break
    except KeyboardInterrupt:
        stopped = "interrupted (Ctrl-C)"
        if progress:
            progress.stop()
        console.print(
            "[yellow]interrupted: the best model so far is kept; go on from the last completed epoch with "
            f"[bold]aekit train --resume {run_dir}[/bold][/yellow]",
            soft_wrap=True,
        )
    finally:
        if progress:
            progress.stop()

    if not math.isfinite(best["val_loss"]):
        raise AekitError(
            "training produced no finite validation loss (NaN or Inf); lower --lr or check the data for extreme values"
        )
    model.load_state_dict(best_state)
    if tabular:  # no images to show: reconstructed against original values, standardised
        show = x_all[eval_idx[:2000]]
        table_recon_plot(
            normalizer.normalize(show.to(device)).cpu().numpy()[:, :, 0, 0],
            reconstruct_unit(model, normalizer, show, device, bounded, standardized=True)[:, :, 0, 0],
            run_dir / "recon.png",
        )
    else:
        n_show = min(8, len(eval_idx))
        shown = eval_idx[torch.linspace(0, len(eval_idx) - 1, n_show).round().long()]  # spread over the set
        show = x_all[shown]
        recon_grid(
            show.float().numpy() / data.scale,
            reconstruct_unit(model, normalizer, show, device, bounded),
            run_dir / "recon.png",
            rgb=rgb,
            stretch=data.raster is not None,
            mask=None if m_all is None else m_all[shown].numpy(),
        )
    loss_plot(rows, run_dir / "loss.png")
    final = compare(model, normalizer, pca, x_all, eval_idx, device, bounded, cfg.batch_size * 4, tabular, m_all)
    errors, latent = validation_pass(
        model, normalizer, x_all, eval_idx, device, bounded, cfg.batch_size * 4, tabular, m_all
    )
    write_validation_scores(run_dir, [data.ids[i] for i in eval_idx.tolist()], errors)
    whose = f"the {len(eval_idx)} {'validation' if len(val_idx) else 'training'} items"
    units = error_units(data.scale, tabular)
    rules = {
        m: threshold_from(
            e, m, percentile=cfg.threshold_percentile, contamination=cfg.contamination, of=whose, units=units
        )
        for m, e in errors.items()
    }
    meta["threshold"] = {**rules["mse"], "by_metric": {m: r for m, r in rules.items() if m != "mse"}}
    write_json(run_dir / "model.json", meta)
    ae, lin = final["autoencoder"], final["pca"]

    summary = {
        "aekit_version": __version__,
        "data": data.source,
        "n_found": data.n_found,
        "n_images": len(data),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "channels": c,
        "image_size": [h, w],
        "model": cfg.model,
        **({"columns": data.columns, "id_column": data.id_name} if tabular else {}),
        "metric_units": "standardised (columns: mean 0, std 1 on the training rows)" if tabular else "pixels in [0, 1]",
        "arch": cfg.arch,
        "latent_dim": cfg.latent_dim,
        **latent,
        "parameters": n_params,
        "device": str(device),
        "world_size": ctx.world,
        "compute": compute.describe(),
        "load_seconds": data.load_seconds,
        "epochs_run": len(rows),
        "best_epoch": best["epoch"],
        "val_loss": best["val_loss"],
        "val_mse": ae["mse"],
        "mse_units": error_units(data.scale, tabular),
        "val_psnr": ae["psnr"],
        "val_ssim": ae["ssim"],
        "pca_val_mse": lin["mse"],
        "pca_val_psnr": lin["psnr"],
        "pca_val_ssim": lin["ssim"],
        "vs_pca": final["vs_pca"],
        "metrics": final,
        "val_on": "validation split"
        if len(val_idx)
        else ("training data (val_fraction is 0)" if cfg.val_fraction == 0 else "training data (too few items)"),
        "threshold": rules["mse"],
        "stopped": stopped,
        "seconds": round(time.perf_counter() - t_start, 2),
        "images_per_s": rows[-1]["images_per_s"],
        "skipped": [{"path": s.path, "reason": s.reason} for s in data.skipped],
    }
    write_json(run_dir / "summary.json", summary)
    if verbose:
        _print_end(summary, run_dir)
        title = f"validation ({len(eval_idx)} items): autoencoder vs PCA"
        console.print(comparison_table(final, title, data.columns))
        console.print(say_verdict(final))
    return summary


def _print_start(data, cfg, compute, n_params, n_train, n_val, run_dir) -> None:
    c, h, w = data.shape
    t = Table(title="aekit train", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("data", data.source)
    if data.columns is None:
        t.add_row("files", f"{data.n_found} found, {len(data)} used, {len(data.skipped)} skipped")
    for note in data.notes:
        t.add_row("", note)
    if data.columns is None:
        t.add_row("input", f"{c} channel(s) x {h} x {w}, {data.array.dtype}")
    else:
        t.add_row("input", f"{len(data)} rows x {c} numeric columns, standardised per column")
    t.add_row("split", f"{n_train} train / {n_val} validation (seed {cfg.seed})")
    t.add_row("model", f"{cfg.arch}, latent {cfg.latent_dim}, depth {cfg.depth}, {n_params:,} parameters")
    budget = f", stop after {cfg.max_time:g} s" if cfg.max_time else ""
    t.add_row("training", f"{cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr:g}{budget}")
    n = torch.get_num_threads()
    threads = f" ({n} thread{'s' * (n > 1)})" if compute.device.type == "cpu" else ""
    t.add_row("compute", compute.describe() + threads)
    t.add_row("output", str(run_dir))
    console.print(t)


def _print_end(s: dict, run_dir: Path) -> None:
    t = Table(title="result", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("stopped", s["stopped"])
    start = " (the starting point: training did not improve on it)" if s["best_epoch"] == 0 else ""
    t.add_row("best epoch", f"{s['best_epoch']} of {s['epochs_run']}{start}")
    if "columns" in s:
        t.add_row("val MSE", f"{s['val_mse']:.6f} (standardised columns: 1.0 is as bad as predicting the mean)")
    else:
        t.add_row(
            "val MSE",
            f"{s['val_mse']:.6f} ({s['mse_units']}), PSNR {format_db(s['val_psnr'])} dB, SSIM {s['val_ssim']:.4f}",
        )
    t.add_row("anomaly threshold", s["threshold"]["explanation"])
    unit = "rows" if "columns" in s else "images"
    t.add_row("time", f"{s['seconds']:.1f} s, {s['images_per_s']:.0f} {unit}/s in the last epoch")
    t.add_row("run folder", str(run_dir))
    console.print(t)
    if s["skipped"]:
        console.print(f"[yellow]skipped {len(s['skipped'])} file(s):[/yellow]")
        for item in s["skipped"][:10]:
            console.print(f"  {item['path']}: {item['reason']}")
        if len(s["skipped"]) > 10:
            console.print(f"  ... and {len(s['skipped']) - 10} more, listed in {run_dir / 'summary.json'}")
