"""The training workflow: read the data, make the run folder, fit, write the report; or resume a run.

`aekit.train` and `aekit train` are this module's `train`; sweeps call it once per trial.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aekit.config.train import TrainConfig, load_yaml, make_config, parse_plugins
from aekit.core import distributed
from aekit.core.errors import AekitError
from aekit.core.progress import console
from aekit.core.rundir import check_out, link_latest, lock, make_run_dir, remove_if_empty, unlock
from aekit.data.source import Request, open_data, reachable
from aekit.inference.model import Autoencoder, load
from aekit.models.registry import AUTO, find_model, load_plugins, plugin_hint
from aekit.reporting.report import report_after_training
from aekit.training.loggers import check_logger


@dataclass
class Run:
    """A finished training run: its folder and its summary (the contents of summary.json)."""

    path: Path
    summary: dict
    config: TrainConfig

    def load(self, device: str = "auto") -> Autoencoder:
        return load(self.path, device=device)


def train(
    data: Any = None,
    *,
    out: str | Path | None = None,
    config: str | Path | None = None,
    verbose: bool = False,
    resume: str | Path | None = None,
    on_epoch: Callable[[int, dict], bool] | None = None,
    **options: Any,
) -> Run:
    """Train an autoencoder on `data`: a folder or image file, a numpy array or tensor of images
    (N,H,W / N,H,W,C / N,C,H,W), a `torch.utils.data.Dataset` yielding tensors, tuples or dicts,
    or a table: a .csv/.tsv/.parquet file or a 2-D array (N rows, F columns), which trains an MLP.

    `options` are TrainConfig fields (latent_dim=32, epochs=10, max_time=60, ...); they override
    the YAML file `config`. `out` defaults to runs/<timestamp> with runs/latest pointing at it.

    `resume="runs/x"` goes on with an interrupted run from its last checkpoint (the end of an
    epoch, or inside one with `checkpoint_every`), exactly as if it had not stopped (same data,
    which defaults to the run's; only `epochs`, `max_steps`, `max_time`, `patience`, `device` and
    `checkpoint_every` may change).

    `on_epoch(epoch, metrics_row) -> bool` is called after each epoch; True stops training early.
    """
    from aekit.training.fit import fit

    if resume is None and elastic_restart() and out is not None and (Path(out) / "state.pt").is_file():
        if verbose and int(os.environ.get("RANK", "0")) == 0:
            console.print(f"torchrun restart {elastic_restart()}: going on with {out} from its last checkpoint")
        return _resume(out, data, verbose=verbose, config=None, out=None, **_resumable(options))
    if resume is not None:
        return _resume(resume, data, verbose=verbose, config=config, out=out, **options)
    if data is None:
        raise AekitError("no data given: pass a folder, file or array (or resume=RUN to continue a run)")
    cfg = make_config(load_yaml(config) if config else None, **options)
    check_models(cfg, options.get("plugins"))
    ctx = distributed.start(cfg.device)  # several processes under torchrun (distributed.py)
    verbose = verbose and ctx.main
    if ctx.main:
        check_out(out)
    t0 = time.perf_counter()
    dataset = read_data(data, cfg, verbose, ctx)
    dataset.load_seconds = round(time.perf_counter() - t0, 3)
    run_dir = Path(distributed.broadcast(str(make_run_dir(out)) if ctx.main else None, ctx))
    try:
        with _writes_of(run_dir, ctx) as write_dir:
            summary = fit(dataset, cfg, write_dir, verbose=verbose, on_epoch=on_epoch)
    except BaseException:
        if ctx.main:
            remove_if_empty(run_dir)  # e.g. an option the data cannot take: leave nothing behind
        raise
    if ctx.main:
        try:
            if out is None:
                link_latest(run_dir)  # only once the run has written its results
            report_after_training(run_dir, dataset, seed=cfg.seed, device=cfg.device, verbose=verbose)
        finally:
            unlock(run_dir)  # taken by make_run_dir: one run writes a folder at a time
    return Run(path=run_dir, summary=summary, config=cfg)


@contextmanager
def _writes_of(run_dir: Path, ctx):
    """Where this process writes: the run folder on rank 0, a temporary folder on the others."""
    if ctx.main:
        yield run_dir
        return
    with tempfile.TemporaryDirectory(prefix=f"aekit-rank{ctx.rank}-") as tmp:
        yield Path(tmp)


def launch_config(config: str | Path | None, options: dict) -> TrainConfig:
    """The configuration `aekit train --devices N` would train with: its device is checked before
    torchrun starts (several processes on Apple MPS are refused once, not once per process)."""
    return make_config(load_yaml(config) if config else None, **options)


def check_models(cfg: TrainConfig, named: Any) -> None:
    """The modules the user named (--plugin, plugins=) imported and --arch found among the registered
    models, and --log's package installed, before any data is read: one-line errors otherwise.

    Only `named` modules are imported: `plugins` in a YAML file (--config, a run's config.yaml) is
    data, never a reason to import code (SECURITY.md); it only says which --plugin to pass."""
    check_logger(cfg)
    named = parse_plugins(named)
    load_plugins(named)
    if cfg.arch != AUTO:
        unnamed = [m for m in cfg.plugins if m not in named]
        find_model(cfg.arch, hint=plugin_hint(cfg.arch, f"{unnamed[0]}:", "config file") if unnamed else "")


def read_data(data: Any, cfg: TrainConfig, verbose: bool, ctx: distributed.Context):
    """DATA as this process trains on it: the one way in (data/source.py) with `cfg`'s preprocessing."""
    return open_data(data, Request.for_training(cfg), ctx=ctx, verbose=verbose)


RESUMABLE_OPTIONS = ("epochs", "max_steps", "max_time", "patience", "device", "checkpoint_every", "plugins")


def elastic_restart() -> int:
    """How often torchrun has restarted this job after a failure (TORCHELASTIC_RESTART_COUNT):
    from the first restart on, the same command goes on with its run instead of refusing it."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def _resumable(options: dict) -> dict:
    return {k: v for k, v in options.items() if k in RESUMABLE_OPTIONS}


def check_resume(run: str | Path, data: Any = None, *, config: Any = None, out: Any = None, **options: Any):
    """What `--resume RUN` would go on with, (config, state, data): or the one-line error saying why
    it cannot (not a run, changed options, nothing left to train, data missing). `aekit train
    --devices N --resume RUN` calls it before starting torchrun, so the error is said once."""
    from aekit.training.state import load_state

    run_dir = Path(run)
    if not (run_dir / "config.yaml").is_file():
        raise AekitError(f"{run_dir} is not a run folder (no config.yaml); pass the folder written by aekit train")
    if config is not None or out is not None:
        raise AekitError("--resume continues a run in its own folder with its own config; drop --config and --out")
    changed = sorted(k for k, v in options.items() if v is not None and k not in RESUMABLE_OPTIONS)
    if changed:
        raise AekitError(
            f"cannot change {', '.join(changed)} when resuming (the run must go on as it started); "
            f"only {', '.join(RESUMABLE_OPTIONS)} may be given"
        )
    saved = load_yaml(run_dir / "config.yaml")
    source = saved.pop("data", None)
    cfg = make_config(saved, **options)
    check_models(cfg, options.get("plugins"))
    state = load_state(run_dir)
    if state["epoch"] >= cfg.epochs:
        raise AekitError(
            f"{run_dir} has already trained all {cfg.epochs} epochs; pass --epochs N (more than "
            f"{state['epoch']}) to train longer"
        )
    if cfg.max_steps and state["step"] >= cfg.max_steps:
        raise AekitError(
            f"{run_dir} has already trained its budget of {cfg.max_steps} steps; pass --max-steps N (more than "
            f"{state['step']}) to train longer"
        )
    if data is None:
        if not source or not reachable(source):
            raise AekitError(f"the run's data ({source}) is not a path that exists here; pass DATA with --resume")
        data = source
    return cfg, state, data


def _resume(run: str | Path, data: Any, *, verbose: bool, config: Any, out: Any, **options: Any) -> Run:
    """Continue RUN from its state.pt (see state.py) with its own configuration."""
    from aekit.training.fit import fit

    run_dir = Path(run)
    cfg, state, data = check_resume(run, data, config=config, out=out, **options)
    ctx = distributed.start(cfg.device)
    verbose = verbose and ctx.main
    if ctx.main:
        lock(run_dir)  # two resumes of one run would write the same files
    try:
        dataset = read_data(data, cfg, verbose, ctx)
        with _writes_of(run_dir, ctx) as write_dir:
            summary = fit(dataset, cfg, write_dir, verbose=verbose, resume=state)
        if ctx.main:
            report_after_training(run_dir, dataset, seed=cfg.seed, device=cfg.device, verbose=verbose)
    finally:
        if ctx.main:
            unlock(run_dir)
    return Run(path=run_dir, summary=summary, config=cfg)
