"""The training loop: decoded data in memory -> batches on the device -> best model on disk.

Read top to bottom: `fit` prepares (setup.py: split, normalise, build, start at PCA), then loops
over epochs (train, validate, keep the best, save the state), then writes the run's results
(artefacts.py). The loop does not know which model it trains: each model returns an `AEOutput`
and defines its loss terms (models/base.py), which are all logged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aekit.config.train import TrainConfig, parse_every
from aekit.core import distributed
from aekit.core.errors import AekitError
from aekit.core.progress import console, make_progress
from aekit.core.rundir import write_metrics
from aekit.core.signals import INTERRUPTED, TERMINATED, Terminated, sigterm_as_interrupt
from aekit.data.base import LoadedData
from aekit.evaluation.validation import validation_loss
from aekit.models.checkpoint import save_model
from aekit.training.artefacts import finish
from aekit.training.console import print_start
from aekit.training.defaults import budget_spent, total_steps
from aekit.training.loggers import open_logger
from aekit.training.setup import Setup, prepare
from aekit.training.state import save_state
from aekit.training.step import lr_at, make_optimizer, param_groups, train_step, weights_finite

MAX_BAD_STEPS = 8  # non-finite steps (each skipped and halving the LR) before the run is stopped
DIVERGED = (
    "diverged: {n} steps had a NaN or Inf loss or gradient, even with the learning rate lowered to "
    "{lr:.2g}; likely causes: data with extreme values that need scaling, or --lr too high"
)
COMPLETED = "completed all epochs"
PLATEAU = "stopped early: no better validation loss in {n} epochs (--patience; best epoch {best})"


@dataclass
class Loop:
    """Where training stands; saved after every epoch (state.pt), and inside epochs with
    --checkpoint-every, so that a run resumes exactly."""

    gen: torch.Generator  # batch order and flips
    best: dict  # val_loss, epoch, mse of the best epoch so far (epoch 0: the untrained model)
    best_state: dict  # its weights
    step: int = 0
    epoch: int = 0  # the last completed epoch
    rows: list[dict] = field(default_factory=list)  # metrics.csv
    lr_factor: float = 1.0  # lowered by the NaN guard
    bad_steps: int = 0
    stopped: str = COMPLETED
    partial: dict | None = None  # in a mid-epoch checkpoint: the epoch's order, next batch, sums so far

    def keep_if_best(self, model, val: dict, epoch: int) -> bool:
        if math.isfinite(val["loss"]) and val["loss"] < self.best["val_loss"] and weights_finite(model):
            self.best = {"val_loss": val["loss"], "epoch": epoch, "mse": val["mse"]}
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return True
        return False

    def state(self, model, opt, elapsed: float, device: torch.device) -> dict:
        state = {
            "epoch": self.epoch,
            "step": self.step,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "best": self.best,
            "best_state": self.best_state,
            "rows": self.rows,
            "elapsed": elapsed,
            "lr_factor": self.lr_factor,
            "bad_steps": self.bad_steps,
            "partial": self.partial,
        }
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        return state

    @classmethod
    def restore(cls, state: dict, model, opt, device: torch.device) -> Loop:
        """Go on exactly where the last checkpoint left off (state.py): after its epoch, or inside
        the next one at the batch after the checkpoint."""
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen = torch.Generator()
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        return cls(
            gen, dict(state["best"]), state["best_state"], state["step"], state["epoch"], list(state["rows"]),
            state["lr_factor"], state["bad_steps"], partial=state.get("partial"),
        )  # fmt: skip


class Checkpoints:
    """--checkpoint-every: the state is also saved inside epochs, every N steps or every so many
    seconds since the last save (the end of an epoch included)."""

    def __init__(self, spec: str, save) -> None:
        self.unit, self.every = parse_every(spec)
        self.save = save  # save(now): state.pt from the loop as it stands
        self.last = time.perf_counter()

    def due(self, step: int, now: float, device: torch.device, ctx) -> bool:
        if self.unit == "steps":
            return step % self.every == 0
        return distributed.any_rank(now - self.last >= self.every, device, ctx)  # every rank at the same step

    def saved(self, now: float) -> None:
        self.last = now


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
    if resume is None:  # epoch 0 is the untrained model (for conv and mlp, exactly PCA): kept unless improved on
        val0 = validate(s)
        best_state = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
        loop = Loop(torch.Generator().manual_seed(cfg.seed + 1), {"val_loss": val0["loss"], "epoch": 0,
                    "mse": val0["mse"]}, best_state)  # fmt: skip
        save_model(run_dir, s.model, s.meta)
    else:
        if resume.get("data_machines", 1) != data_machines(s):  # the split of the data would change
            raise AekitError(
                f"the run read its image folder in node shards on {resume.get('data_machines', 1)} machine(s) "
                f"(RUN/shards.json) and this resume on {data_machines(s)}: resume it on as many machines"
            )
        loop = Loop.restore(resume, s.model, opt, s.device)
        t_start = time.perf_counter() - resume["elapsed"]  # the time budget counts what was spent
        if loop.partial is not None and len(loop.partial["order"]) != s.epoch_length:
            raise AekitError(
                f"the data hold {s.epoch_length} training items where the run's checkpoint has "
                f"{len(loop.partial['order'])}: resume with the run's own data"
            )
        where = f"after epoch {loop.epoch} of {cfg.epochs}"
        if loop.partial is not None:
            where = f"inside epoch {loop.epoch + 1} of {cfg.epochs}, after step {loop.step}"
        if verbose:
            console.print(f"resuming {where} (best so far: epoch {loop.best['epoch']})")
    steps = total_steps(cfg, s.epoch_items)
    progress = make_progress() if verbose else None
    task = progress.add_task("training", total=steps, info="") if progress else None
    if progress:
        progress.start()

    def save(now: float) -> None:  # atomically: a crash from here on resumes from this point
        save_state(run_dir, {**loop.state(s.model, opt, now - t_start, s.device), "data_machines": data_machines(s)})

    every = None if cfg.checkpoint_every is None else Checkpoints(cfg.checkpoint_every, save)
    try:
        for epoch in range(loop.epoch + 1, cfg.epochs + 1):
            t_epoch = time.perf_counter() - (loop.partial or {}).get("seconds", 0.0)
            run_epoch = stream_epoch if s.stream else train_epoch
            sums, seen, lr = run_epoch(s, opt, loop, epoch, t_start, steps, progress, task, every)
            train_seconds = time.perf_counter() - t_epoch
            val = validate(s)
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
            if progress:
                done = budget_spent(cfg, loop.step, steps, time.perf_counter() - t_start) * steps
                progress.update(task, completed=done, info=f"val {val['loss']:.4f}")
                progress.console.print(epoch_line(row, s))
            if cfg.patience and epoch - loop.best["epoch"] >= cfg.patience and loop.stopped == COMPLETED:
                loop.stopped = PLATEAU.format(n=cfg.patience, best=loop.best["epoch"])
            if on_epoch is not None and on_epoch(epoch, row):
                loop.stopped = "stopped early by on_epoch"
            if loop.stopped != COMPLETED:
                break
    except KeyboardInterrupt as e:
        loop.stopped = TERMINATED if isinstance(e, Terminated) else INTERRUPTED
        if progress:
            progress.stop()
        if s.ctx.main:  # the other ranks write to a folder of their own
            console.print(
                "[yellow]interrupted: the best model so far is kept; go on from the last checkpoint with "
                f"[bold]aekit train --resume {run_dir}[/bold][/yellow]",
                soft_wrap=True,
            )
    finally:
        if progress:
            progress.stop()
    summary = finish(s, data, loop.rows, loop.best, loop.best_state, loop.stopped, run_dir, t_start, verbose)
    if log is not None:
        log.end(summary, run_dir)
    return summary


def train_epoch(s: Setup, opt, loop: Loop, epoch: int, t_start: float, steps: int, progress, task, every=None):
    """One pass over the training items in a seeded order; returns the loss terms summed over the
    items on the device (no sync per step), the number of items seen, and the last learning rate.
    With `every` (Checkpoints) the state is saved inside the epoch too; a loop restored from such a
    checkpoint goes on with the same order from the batch after it."""
    cfg, ctx, device = s.cfg, s.ctx, s.device
    resumed, loop.partial = loop.partial, None
    t0, last_draw = time.perf_counter() - (resumed or {}).get("seconds", 0.0), 0.0
    step_items = s.shards.node_batch if s.shards else cfg.batch_size  # of `order` per step
    if resumed is None:
        sums: dict[str, torch.Tensor] = {}
        seen, start, lr = 0, 0, 0.0
        order, seed = epoch_order(s, loop.gen)
    else:  # the sums saved are those of all ranks: rank 0 goes on with them, the others from zero
        order, start, seen, lr = resumed["order"], resumed["next"], resumed["seen"], resumed["lr"]
        seed = resumed.get("seed")
        if s.shards:  # rank 0's order was saved: each machine makes its own again from the epoch's seed
            order = s.shards.order(s.train_idx, seed)
        sums = {k: v.to(device) for k, v in resumed["sums"].items()}
        if ctx.active and not ctx.main:
            sums, seen = {k: torch.zeros_like(v) for k, v in sums.items()}, 0
    agree = (lambda finite: not distributed.any_rank(not finite, device, ctx)) if ctx.active else None  # skip together
    for i in range(start, len(order), step_items):
        frac = budget_spent(cfg, loop.step, steps, time.perf_counter() - t_start)
        lr = lr_at(frac, cfg.lr)
        for group in opt.param_groups:
            group["lr"] = lr * loop.lr_factor * group["lr_scale"]
        xb, mb = batch_on_device(s, order, i, loop.gen)
        xn = s.normalizer.normalize(xb)
        terms = train_step(s.train_model, opt, xn, s.compute, mask=mb, epoch=epoch - 1 + i / len(order), agree=agree)
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
        if progress and now - last_draw > 0.25:  # the bar and its ETA follow the budget: steps or time
            done = budget_spent(cfg, loop.step, steps, now - t_start) * steps
            progress.update(task, completed=done, description=f"epoch {epoch}/{cfg.epochs}")
            last_draw = now
        if cfg.max_time and distributed.any_rank(now - t_start >= cfg.max_time, device, ctx):
            loop.stopped = f"time budget of {cfg.max_time:g} s spent"  # on every rank at the same step
            break
        if cfg.max_steps and loop.step >= cfg.max_steps:  # the same step on every rank
            loop.stopped = f"completed the budget of {cfg.max_steps} steps"
            break
        if every is not None and i + step_items < len(order) and every.due(loop.step, now, device, ctx):
            all_sums, all_seen = over_ranks(sums, seen, device, ctx)
            loop.partial = {
                "order": order.cpu(),
                **({"seed": seed} if seed is not None else {}),
                "next": i + step_items,
                "sums": {k: v.detach().float().cpu() for k, v in all_sums.items()},
                "seen": all_seen,
                "lr": lr,
                "seconds": now - t0,
            }
            every.save(now)
            every.saved(now)
            loop.partial = None
    if device.type == "cuda":
        torch.cuda.synchronize()
    sums, seen = over_ranks(sums, seen, device, ctx)  # metrics describe the whole data
    return sums, seen, lr


def stream_epoch(s: Setup, opt, loop: Loop, epoch: int, t_start: float, steps: int, progress, task, every=None):
    """train_epoch for tar shards streamed (data/stream.py): one pass over all shards in an order
    drawn from the epoch's seed, batches decoded by DataLoader workers. A mid-epoch checkpoint holds
    the seed and the batches done; a resume reads the epoch again from its start in the same order
    and leaves out those batches (read and decoded again, not trained on)."""
    from aekit.data.base import Skipped
    from aekit.data.stream import epoch_batches

    cfg, ctx, device = s.cfg, s.ctx, s.device
    resumed, loop.partial = loop.partial, None
    t0, last_draw = time.perf_counter() - (resumed or {}).get("seconds", 0.0), 0.0
    if resumed is None:
        sums: dict[str, torch.Tensor] = {}
        seen, done, lr = 0, 0, 0.0
        seed = int(torch.randint(0, 2**62, (1,), generator=loop.gen))
    else:
        seed, done, seen, lr = resumed["seed"], resumed["next"], resumed["seen"], resumed["lr"]
        sums = {k: v.to(device) for k, v in resumed["sums"].items()}
        if ctx.active and not ctx.main:
            sums, seen = {k: torch.zeros_like(v) for k, v in sums.items()}, 0
    known = {k.path for k in s.stream["skipped"]}
    batches = epoch_batches(s.stream, cfg.batch_size // ctx.world, seed, s.stream["exclude"], ctx.rank, ctx.world)
    agree = (lambda finite: not distributed.any_rank(not finite, device, ctx)) if ctx.active else None

    def pull() -> torch.Tensor | None:  # the next batch; None at the end of this rank's part
        while True:
            xb, bad = next(batches, (None, None))
            for key, reason in bad or ():
                if key not in known:
                    known.add(key)
                    s.stream["skipped"].append(Skipped(key, reason))
            if xb is not None and len(xb):
                return xb
            if bad is None:
                return None

    b = 0
    while True:
        xb = pull()
        if distributed.any_rank(xb is None, device, ctx):
            break  # every rank ends the epoch at the same step, when the first runs out
        b += 1
        if b <= done:  # trained on before the checkpoint this run resumed from
            continue
        frac = budget_spent(cfg, loop.step, steps, time.perf_counter() - t_start)
        lr = lr_at(frac, cfg.lr)
        for group in opt.param_groups:
            group["lr"] = lr * loop.lr_factor * group["lr_scale"]
        if cfg.augment == "flip":
            flips = torch.rand(len(xb), generator=loop.gen) < 0.5
            xb = xb.float() if xb.dtype != torch.uint8 else xb.clone()
            xb[flips] = xb[flips].flip(-1)
        xb = xb.to(device, non_blocking=True)
        if s.compute.channels_last:
            xb = xb.to(dtype=torch.float32, memory_format=torch.channels_last)
        xn = s.normalizer.normalize(xb)
        frac_epoch = epoch - 1 + min(seen / max(s.n_train, 1), 0.999)
        terms = train_step(s.train_model, opt, xn, s.compute, epoch=frac_epoch, agree=agree)
        if terms.pop("skipped", False):
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
        if progress and now - last_draw > 0.25:
            done_frac = budget_spent(cfg, loop.step, steps, now - t_start) * steps
            progress.update(task, completed=done_frac, description=f"epoch {epoch}/{cfg.epochs}")
            last_draw = now
        if cfg.max_time and distributed.any_rank(now - t_start >= cfg.max_time, device, ctx):
            loop.stopped = f"time budget of {cfg.max_time:g} s spent"
            break
        if cfg.max_steps and loop.step >= cfg.max_steps:
            loop.stopped = f"completed the budget of {cfg.max_steps} steps"
            break
        if every is not None and every.due(loop.step, now, device, ctx):
            all_sums, all_seen = over_ranks(sums, seen, device, ctx)
            loop.partial = {
                "order": torch.zeros(0, dtype=torch.long),  # no item order: the seed and the batches done
                "seed": seed,
                "next": b,
                "sums": {k: v.detach().float().cpu() for k, v in all_sums.items()},
                "seen": all_seen,
                "lr": lr,
                "seconds": now - t0,
            }
            every.save(now)
            every.saved(now)
            loop.partial = None
    if device.type == "cuda":
        torch.cuda.synchronize()
    sums, seen = over_ranks(sums, seen, device, ctx)
    return sums, seen, lr


def epoch_order(s: Setup, gen: torch.Generator) -> tuple[torch.Tensor, int | None]:
    """The epoch's order of the training items, drawn from `gen`; with node shards each machine's
    order of its own items from a seed drawn from `gen` (the same draws on every process, so that
    `gen`, saved by rank 0, resumes every machine), and that seed."""
    if s.shards is None:
        return s.train_idx[torch.randperm(len(s.train_idx), generator=gen)], None
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    return s.shards.order(s.train_idx, seed), seed


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


def batch_on_device(s: Setup, order: torch.Tensor, i: int, gen: torch.Generator):
    """This rank's part of the global batch order[i : i + batch_size], raw (B, C, H, W) on the
    device (e.g. uint8), with a seeded half of it mirrored left-right when augmenting; and its mask."""
    batch = order[i : i + (s.shards.node_batch if s.shards else s.cfg.batch_size)]
    flips = torch.rand(len(batch), generator=gen) < 0.5 if s.cfg.augment == "flip" else None
    if s.shards:  # this machine's items of the global batch, cut among its processes
        part = distributed.rank_slice(batch, distributed.Context(s.ctx.local_rank, s.ctx.local_world))
        batch, flips = batch[part], None if flips is None else flips[part]
    elif s.ctx.active:
        batch = distributed.pad_to_world(batch, order, s.ctx)
        if flips is not None:
            flips = torch.cat([flips, flips[: len(batch) - len(flips)]])
        part = distributed.rank_slice(batch, s.ctx)
        batch, flips = batch[part], None if flips is None else flips[part]
    xb = s.x_all[batch].to(s.device, non_blocking=True)
    mb = None if s.m_all is None else s.m_all[batch].to(s.device, non_blocking=True)
    if flips is not None:  # in place, while still 1 byte a value (torch cannot flip uint16)
        if xb.dtype != torch.uint8:
            xb = xb.float()
        mirrored = torch.nonzero(flips).flatten().to(s.device)
        xb[mirrored] = xb[mirrored].flip(-1)
        if mb is not None:
            mb[mirrored] = mb[mirrored].flip(-1)
    if s.compute.channels_last:  # float and channels_last in one pass, before normalising
        xb = xb.to(dtype=torch.float32, memory_format=torch.channels_last)
    return xb, mb


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
    units = "standardised" if s.kind.table else "pixels"
    return (
        f"epoch {row['epoch']:>3}  loss train {row['train_loss']:.5f} val {row['val_loss']:.5f}  "
        f"val MSE {row['val_mse']:.6f} ({units})  lr {row['lr']:.2e}  {row['images_per_s']:.0f} {s.kind.item}/s"
    )
