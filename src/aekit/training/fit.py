"""The training loop: decoded data -> batches on the device -> best model on disk.

Read top to bottom: `fit` prepares (setup.py: split, normalise, build, start at PCA), then loops
over epochs (train, validate, keep the best, save the state), then writes the run's results
(artefacts.py). One epoch loop, `run_epoch`, whatever the data: its batches come from a source
(batches.py: items in memory or mapped from the cache, node shards, or tar shards streamed). The
loop does not know which model it trains: each model returns an `AEOutput` and defines its loss
terms (models/base.py), which are all logged.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from aekit.config.train import TrainConfig
from aekit.core import distributed
from aekit.core.errors import AekitError
from aekit.core.progress import console
from aekit.core.rundir import write_metrics
from aekit.core.signals import INTERRUPTED, TERMINATED, Terminated, sigterm_as_interrupt
from aekit.data.base import LoadedData
from aekit.measures.validation import validation_loss
from aekit.models.checkpoint import save_model
from aekit.training.artefacts import finish
from aekit.training.batches import batches_of
from aekit.training.console import TrainingBar, print_start
from aekit.training.defaults import budget_spent, end_reserve, total_steps
from aekit.training.loggers import open_logger
from aekit.training.setup import Setup, prepare
from aekit.training.state import COMPLETED, Checkpoints, Loop, save_state
from aekit.training.step import lr_at, make_optimizer, param_groups, train_step

MAX_BAD_STEPS = 8  # non-finite steps (each skipped and halving the LR) before the run is stopped
DIVERGED = (
    "diverged: {n} steps had a NaN or Inf loss or gradient, even with the learning rate lowered to "
    "{lr:.2g}; likely causes: data with extreme values that need scaling, or --lr too high"
)
PATIENCE_SHARE = 0.05  # early stopping waits at least this share of the budget's steps without improvement
PLATEAU = "stopped early: no better validation loss in {n} epochs (--patience; best epoch {best})"


def fit(
    data: LoadedData,
    cfg: TrainConfig,
    run_dir: Path,
    *,
    verbose: bool = True,
    resume: dict | None = None,
    on_epoch=None,
) -> dict:
    """Train on `data` with `cfg`, writing everything into `run_dir`; returns the summary. With
    `resume` (a state from state.load_state), go on after its epoch. `on_epoch(epoch, row)`, given
    the epoch's metrics.csv row, may return True to stop early (a sweep prunes hopeless trials with
    it); the best model so far is kept, as at a time limit."""
    threads = torch.get_num_threads()
    try:
        with sigterm_as_interrupt():
            return _fit(data, cfg, run_dir, verbose=verbose, resume=resume, on_epoch=on_epoch)
    finally:
        torch.set_num_threads(threads)  # a small table model trains on one thread (setup.SMALL_MODEL)


def _fit(data: LoadedData, cfg: TrainConfig, run_dir: Path, *, verbose: bool, resume: dict | None, on_epoch) -> dict:
    t_start = time.perf_counter()
    s = prepare(data, cfg, run_dir)
    cfg = s.cfg
    if verbose:
        print_start(data, cfg, s.compute, s.n_params, s.n_train, s.n_val, run_dir)
    log = open_logger(s, run_dir, resumed=resume is not None)  # --log tensorboard|mlflow, rank 0 (loggers.py)
    opt = make_optimizer(param_groups(s.model), cfg.lr, cfg.weight_decay)
    loop = start(s, opt, run_dir, resume, verbose)
    if resume is not None:
        t_start = time.perf_counter() - resume["elapsed"]  # the time budget counts what was spent
    steps = total_steps(cfg, s.epoch_items)
    bar = TrainingBar(cfg, steps, verbose)
    bar.reserve = loop.reserve

    def save(now: float) -> None:  # atomically: a crash from here on resumes from this point
        state = loop.state(s.model, opt, now - t_start, s.device, s.compute.scaler)
        save_state(run_dir, {**state, "data_machines": data_machines(s)})

    every = None if cfg.checkpoint_every is None else Checkpoints(cfg.checkpoint_every, save)
    try:
        for epoch in range(loop.epoch + 1, cfg.epochs + 1):
            t_epoch = time.perf_counter() - (loop.partial or {}).get("seconds", 0.0)
            sums, seen, lr = run_epoch(s, opt, loop, epoch, t_start, steps, bar, every)
            train_seconds = time.perf_counter() - t_epoch
            val = validate(s)  # its time sets what the time budget keeps for the end of the run
            loop.reserve = bar.reserve = end_reserve(
                cfg, s.n_train, len(s.eval_idx), time.perf_counter() - t_epoch - train_seconds
            )
            row = metrics_row(epoch, sums, seen, val, lr, time.perf_counter() - t_start, train_seconds)
            loop.rows.append(row)
            if log is not None:
                log.epoch(row, data)
            loop.epoch = epoch
            if loop.keep_if_best(s.model, val, epoch):
                save_model(run_dir, s.model, s.meta)
            write_metrics(run_dir / "metrics.csv", loop.rows)
            now = time.perf_counter()
            save(now)  # a crash from here on resumes after this epoch
            if every is not None:
                every.saved(now)
            bar.epoch(epoch_line(row, s), val["loss"], loop.step, now - t_start)
            if plateaued(loop, cfg, epoch, steps) and loop.stopped == COMPLETED:
                loop.stopped = PLATEAU.format(n=cfg.patience, best=loop.best["epoch"])
            if on_epoch is not None and on_epoch(epoch, row):
                loop.stopped = "stopped early by on_epoch"
            if loop.stopped != COMPLETED:
                break
    except KeyboardInterrupt as e:
        loop.stopped = TERMINATED if isinstance(e, Terminated) else INTERRUPTED
        bar.finish(completed=False)
        if s.ctx.main:  # the other ranks write to a folder of their own
            console.print(
                "[yellow]interrupted: the best model so far is kept; go on from the last checkpoint with "
                f"[bold]aekit train --resume {run_dir}[/bold][/yellow]",
                soft_wrap=True,
            )
    finally:
        bar.finish(completed=loop.stopped not in (INTERRUPTED, TERMINATED))
    summary = finish(s, data, loop.rows, loop.best, loop.best_state, loop.stopped, run_dir, t_start, verbose)
    if log is not None:
        log.end(summary, run_dir)
    return summary


def start(s: Setup, opt, run_dir: Path, resume: dict | None, verbose: bool) -> Loop:
    """Where the loop starts: at epoch 0, the untrained model (for conv and mlp, exactly PCA: kept
    unless improved on), saved as the first best model; or exactly where a checkpoint left off."""
    if resume is None:
        t0 = time.perf_counter()
        val0 = validate(s)
        reserve = end_reserve(s.cfg, s.n_train, len(s.eval_idx), time.perf_counter() - t0)  # until epoch 1's
        best_state = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
        gen = torch.Generator().manual_seed(s.cfg.seed + 1)
        save_model(run_dir, s.model, s.meta)
        return Loop(gen, {"val_loss": val0["loss"], "epoch": 0, "mse": val0["mse"]}, best_state, reserve=reserve)
    if resume.get("data_machines", 1) != data_machines(s):  # the split of the data would change
        raise AekitError(
            f"the run read its image folder in node shards on {resume.get('data_machines', 1)} machine(s) "
            f"(RUN/shards.json) and this resume on {data_machines(s)}: resume it on as many machines"
        )
    loop = Loop.restore(resume, s.model, opt, s.device, s.compute.scaler)
    if loop.partial is not None and len(loop.partial["order"]) != s.epoch_length:
        raise AekitError(
            f"the data hold {s.epoch_length} training items where the run's checkpoint has "
            f"{len(loop.partial['order'])}: resume with the run's own data"
        )
    where = f"after epoch {loop.epoch} of {s.cfg.epochs}"
    if loop.partial is not None:
        where = f"inside epoch {loop.epoch + 1} of {s.cfg.epochs}, after step {loop.step}"
    if verbose:
        console.print(f"resuming {where} (best so far: epoch {loop.best['epoch']})")
    return loop


def run_epoch(s: Setup, opt, loop: Loop, epoch: int, t_start: float, steps: int, bar: TrainingBar, every=None):
    """One pass over the epoch's batches (batches.py); returns the loss terms summed over the items
    on the device (no sync per step), the number of items seen, and the last learning rate. With
    `every` (Checkpoints) the state is also saved inside the epoch; a loop restored from such a
    checkpoint goes on from the batch after it."""
    cfg, ctx, device = s.cfg, s.ctx, s.device
    resumed, loop.partial = loop.partial, None
    t0 = time.perf_counter() - (resumed or {}).get("seconds", 0.0)
    sums, seen, lr = resumed_sums(resumed, device, ctx)
    batches = batches_of(s, loop.gen, resumed)
    agree = (lambda finite: not distributed.any_rank(not finite, device, ctx)) if ctx.active else None  # skip together
    for xb, mb in batches:
        lr = lr_at(budget_spent(cfg, loop.step, steps, time.perf_counter() - t_start, loop.reserve), cfg.lr)
        for group in opt.param_groups:
            group["lr"] = lr * loop.lr_factor * group["lr_scale"]
        xn = s.normalizer.normalize(xb)
        at = epoch - 1 + batches.fraction(seen)
        terms = train_step(s.train_model, opt, xn, s.compute, mask=mb, epoch=at, agree=agree)
        if terms.pop("skipped", False):  # a non-finite loss or gradient: step skipped, LR halved
            loop.bad_steps, loop.lr_factor = loop.bad_steps + 1, loop.lr_factor * 0.5
            if loop.bad_steps >= MAX_BAD_STEPS:
                loop.stopped = DIVERGED.format(n=loop.bad_steps, lr=cfg.lr * loop.lr_factor)
                break
        else:
            for k, v in terms.items():
                sums[k] = sums[k] + v * len(xb) if k in sums else v * len(xb)
            seen += len(xb)
        loop.step += 1
        now = time.perf_counter()
        bar.step(epoch, loop.step, now - t_start, now)
        if out_of_budget(loop, cfg, now - t_start, device, ctx):
            break
        point = batches.resume_point() if every is not None else None  # None after the epoch's last batch
        if point is not None and every.due(loop.step, now, device, ctx):
            all_sums, all_seen = over_ranks(sums, seen, device, ctx)
            cpu_sums = {k: v.detach().float().cpu() for k, v in all_sums.items()}
            loop.partial = {**point, "sums": cpu_sums, "seen": all_seen, "lr": lr, "seconds": now - t0}
            every.save(now)
            every.saved(now)
            loop.partial = None
    if device.type == "cuda":
        torch.cuda.synchronize()
    sums, seen = over_ranks(sums, seen, device, ctx)  # metrics describe the whole data
    return sums, seen, lr


def plateaued(loop: Loop, cfg: TrainConfig, epoch: int, steps: int) -> bool:
    """--patience: no better validation loss for `patience` epochs, and for at least a twentieth of the
    budget's steps (an epoch of a small data set is a step or two: ten of them end training while
    the learning rate is still warming up, and the model is still its PCA start)."""
    since = loop.step - loop.best.get("step", 0)
    return bool(cfg.patience) and epoch - loop.best["epoch"] >= cfg.patience and since >= PATIENCE_SHARE * steps


def resumed_sums(resumed: dict | None, device: torch.device, ctx) -> tuple[dict[str, torch.Tensor], int, float]:
    """(loss sums, items seen, last learning rate) an epoch starts from: zero, or a mid-epoch
    checkpoint's. Its sums are those of all ranks: rank 0 goes on with them, the others from zero."""
    if resumed is None:
        return {}, 0, 0.0
    sums = {k: v.to(device) for k, v in resumed["sums"].items()}
    if ctx.active and not ctx.main:
        return {k: torch.zeros_like(v) for k, v in sums.items()}, 0, resumed["lr"]
    return sums, resumed["seen"], resumed["lr"]


def out_of_budget(loop: Loop, cfg: TrainConfig, elapsed: float, device: torch.device, ctx) -> bool:
    """Whether the time or step budget is spent (on every rank at the same step); says why in `loop`."""
    if cfg.max_time and distributed.any_rank(elapsed + loop.reserve >= cfg.max_time, device, ctx):
        kept = f" ({loop.reserve:.0f} s kept for the end of the run)" if loop.reserve >= 1 else ""
        loop.stopped = f"time budget of {cfg.max_time:g} s spent{kept}"
        return True
    if cfg.max_steps and loop.step >= cfg.max_steps:
        loop.stopped = f"completed the budget of {cfg.max_steps} steps"
        return True
    return False


def data_machines(s: Setup) -> int:
    """The machines whose shards of the data the run trains on (1 unless node shards)."""
    return s.shards.nodes if s.shards else 1


def over_ranks(sums: dict[str, torch.Tensor], seen: int, device: torch.device, ctx) -> tuple[dict, int]:
    """The loss sums and item counts of all ranks (under torchrun; else as they are)."""
    if not ctx.active:
        return sums, seen
    keys = sorted(sums)
    total = distributed.all_sum(
        torch.stack([*(sums[k].float() for k in keys), torch.tensor(float(seen), device=device)]), ctx
    )
    return dict(zip(keys, total[:-1])), int(total[-1])


def validate(s: Setup) -> dict:
    if s.shards is None:
        return validation_loss(
            s.model, s.normalizer, s.x_all, s.eval_idx, s.device, s.cfg.batch_size * 4, s.kind, s.m_all
        )
    # node shards: each process measures its share of its machine's validation items, and the means
    # are summed over all processes weighted by their items (every item of an image has as many pixels)
    mine = s.eval_idx[s.ctx.local_rank :: s.ctx.local_world]
    weight = len(mine)
    val = validation_loss(
        s.model, s.normalizer, s.x_all, mine if weight else s.eval_idx[:1], s.device, s.cfg.batch_size * 4, s.kind
    )
    keys = sorted(val)
    local = torch.tensor([*(val[k] * weight for k in keys), float(weight)], dtype=torch.float64, device=s.device)
    total = distributed.all_sum(local, s.ctx).cpu()
    return {k: float(total[j] / total[-1]) for j, k in enumerate(keys)}


def metrics_row(epoch: int, sums: dict, seen: int, val: dict, lr: float, elapsed: float, train_seconds: float) -> dict:
    """The epoch's line of metrics.csv: losses, the model's other terms (e.g. a VAE's kl), speed."""
    row = {
        "epoch": epoch,
        "train_loss": float(sums["loss"]) / seen if seen else math.nan,
        "val_loss": val["loss"],
        "val_mse": val["mse"],
        "lr": lr,
        "seconds": round(elapsed, 3),
        "images_per_s": round(seen / train_seconds, 1),
    }
    for k in sums.keys() - {"loss"}:
        row[f"train_{k}"] = float(sums[k]) / max(seen, 1)
        row[f"val_{k}"] = val[k]
    return row


def epoch_line(row: dict, s: Setup) -> str:
    units = "standardised" if s.kind.table else ("pixels" if s.kind.bounded else "the data's own units")
    return (
        f"epoch {row['epoch']:>3}  loss train {row['train_loss']:.5f} val {row['val_loss']:.5f}  "
        f"val MSE {row['val_mse']:.6f} ({units})  lr {row['lr']:.2e}  {row['images_per_s']:.0f} {s.kind.item}/s"
    )
