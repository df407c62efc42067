"""The Python API: `aekit.train(data, **options) -> Run`, `aekit.load(run) -> Autoencoder`,
`aekit.report(run) -> Path`."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import distributed
from .config import TrainConfig, load_yaml, make_config
from .data import load_data
from .errors import AekitError
from .inference import Autoencoder, load
from .reporting import report, report_after_training
from .rundir import check_out, link_latest, make_run_dir, remove_if_empty


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
    verbose: bool = True,
    resume: str | Path | None = None,
    on_epoch: Callable[[int, dict], bool] | None = None,
    **options: Any,
) -> Run:
    """Train an autoencoder on `data`: a folder or image file, a numpy array or tensor of images
    (N,H,W / N,H,W,C / N,C,H,W), a `torch.utils.data.Dataset` yielding tensors, tuples or dicts,
    or a table: a .csv/.tsv/.parquet file or a 2-D array (N rows, F columns), which trains an MLP.

    `options` are TrainConfig fields (latent_dim=32, epochs=10, max_time=60, ...); they override
    the YAML file `config`. `out` defaults to runs/<timestamp> with runs/latest pointing at it.

    `resume="runs/x"` goes on with an interrupted run from its last completed epoch, exactly as
    if it had not stopped (same data, which defaults to the run's; only `epochs`, `max_time` and
    `device` may change).

    `on_epoch(epoch, metrics_row) -> bool` is called after each epoch; True stops training early.
    """
    from .trainer import fit

    if resume is not None:
        return _resume(resume, data, verbose=verbose, config=config, out=out, **options)
    if data is None:
        raise AekitError("no data given: pass a folder, file or array (or resume=RUN to continue a run)")
    cfg = make_config(load_yaml(config) if config else None, **options)
    ctx = distributed.start(cfg.device)  # several processes under torchrun (distributed.py)
    verbose = verbose and ctx.main
    if ctx.main:
        check_out(out)
    t0 = time.perf_counter()
    with distributed.local_rank_first(ctx):  # one rank per machine builds the decode cache
        dataset = load_for(data, cfg, verbose)
    if dataset.columns is None and (cfg.columns or cfg.id_column):
        flag = "--columns" if cfg.columns else "--id-column"
        raise AekitError(f"{flag} applies to tables (.csv, .parquet, 2-D arrays); {dataset.source} holds images")
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
        if out is None:
            link_latest(run_dir)  # only once the run has written its results
        report_after_training(run_dir, dataset, seed=cfg.seed, device=cfg.device, verbose=verbose)
    return Run(path=run_dir, summary=summary, config=cfg)


@contextmanager
def _writes_of(run_dir: Path, ctx):
    """Where this process writes: the run folder on rank 0, a temporary folder on the others."""
    if ctx.main:
        yield run_dir
        return
    with tempfile.TemporaryDirectory(prefix=f"aekit-rank{ctx.rank}-") as tmp:
        yield Path(tmp)


def load_for(data: Any, cfg: TrainConfig, verbose: bool):
    """Read DATA with the preprocessing options of `cfg` (through the decode cache)."""
    from .data.rasters import RasterOptions

    return load_data(
        data,
        channels=cfg.channels,
        image_size=cfg.image_size,
        extensions=cfg.extensions,
        show_progress=verbose,
        cache_dir=None if cfg.no_cache else (cfg.cache_dir or "default"),
        layout=cfg.layout,
        columns=cfg.columns,
        id_column=cfg.id_column,
        raster=RasterOptions(cfg.bands, cfg.patch_size, cfg.stride, cfg.nodata, cfg.seed),
    )


RESUMABLE_OPTIONS = ("epochs", "max_time", "device")


def _resume(run: str | Path, data: Any, *, verbose: bool, config: Any, out: Any, **options: Any) -> Run:
    """Continue RUN from its state.pt (see resume.py) with its own configuration."""
    from .resume import load_state
    from .trainer import fit

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
    state = load_state(run_dir)
    if state["epoch"] >= cfg.epochs:
        raise AekitError(
            f"{run_dir} has already trained all {cfg.epochs} epochs; pass --epochs N (more than "
            f"{state['epoch']}) to train longer"
        )
    if data is None:
        if not source or not Path(source).exists():
            raise AekitError(f"the run's data ({source}) is not a path that exists here; pass DATA with --resume")
        data = source
    ctx = distributed.start(cfg.device)
    verbose = verbose and ctx.main
    with distributed.local_rank_first(ctx):
        dataset = load_for(data, cfg, verbose)
    with _writes_of(run_dir, ctx) as write_dir:
        summary = fit(dataset, cfg, write_dir, verbose=verbose, resume=state)
    if ctx.main:
        report_after_training(run_dir, dataset, seed=cfg.seed, device=cfg.device, verbose=verbose)
    return Run(path=run_dir, summary=summary, config=cfg)


def encode(run: str | Path, data: Any, output: str | Path | None = None, **options: Any) -> tuple[list[str], Any]:
    """Latent codes of every item of `data` (folder, file, array): (ids, codes (N, latent_dim)).
    With `output` (.npy/.csv/.parquet) they are also written there, as `aekit encode` does.
    Codes are computed in the run's training precision unless `precision="fp32"` (see
    `encoding.encode_items`)."""
    import numpy as np

    from .encoding import encode_items

    ids, z, _, id_name = encode_items(run, data, **options)
    if output is not None:
        from .tables import write_vectors

        write_vectors(output, ids, z, id_name=id_name)
    return ids, np.asarray(z)


def score(run: str | Path, data: Any, output: str | Path | None = None, **options: Any):
    """Anomaly scores of every item of `data` with the run's threshold (see `aekit score --help`
    for the options: metric, threshold, threshold_percentile, contamination, ...). Returns
    `Scores(ids, scores, is_anomaly, threshold, summary)`; with `output` also writes the CSV,
    the worst-items picture and the summary."""
    from .scoring import score_to_file

    return score_to_file(run, data, output, **options)


def reconstruct(run: str | Path, data: Any, output: str | Path, **options: Any) -> dict:
    """Write the reconstruction of every item of `data` into the folder `output` (as `aekit reconstruct`)."""
    from .reconstruction import reconstruct_to_dir

    return reconstruct_to_dir(run, data, output, **options)


def evaluate(run: str | Path, data: Any, output: str | Path | None = None, **options: Any) -> dict:
    """The model next to PCA on `data`: MSE, PSNR, SSIM overall and per channel (as `aekit evaluate`)."""
    from .evaluation import evaluate as _evaluate

    return _evaluate(run, data, output=output, **options)


def export(run: str | Path, output: str | Path, format: str = "onnx", part: str = "full") -> Path:
    """Write the model as one ONNX or TorchScript file with its normalisation inside, plus a JSON
    sidecar (as `aekit export`); returns the file's path."""
    from .exporting import export as _export

    return _export(run, output, format=format, part=part)


def sample(run: str | Path, n: int = 16, output: str | Path | None = None, **options: Any):
    """(n, C, H, W) images decoded from the prior of a VAE run; with `output` also a grid PNG."""
    from .generation import sample as _sample

    return _sample(run, n, output, **options)


def interpolate(run: str | Path, a: str | Path, b: str | Path, steps: int = 8, output=None, **options: Any):
    """Images decoded between the codes of image files `a` and `b`; with `output` also a strip PNG."""
    from .generation import interpolate as _interpolate

    return _interpolate(run, a, b, steps, output, **options)


def sweep(data: Any, **options: Any):
    """Train one run per combination of `latent_dim`, `depth`, `lr` and `model` (lists, single
    values or "8,16,32" strings) into `out` (as `aekit sweep`); `search` ("grid", "random",
    "tpe"), `trials`, `max_time_per_trial` (or `max_time`), `config` and `verbose` as its flags;
    other `options` (epochs=..., image_size=...) apply to every trial. Returns `SweepResults`,
    best first: `res["val_mse"]`, `res.best`, `res.to_pandas()`. Running it again on the same
    `out` resumes it."""
    from .sweeping import run_sweep

    return run_sweep(data, **options)


__all__ = [
    "Autoencoder",
    "Run",
    "encode",
    "evaluate",
    "export",
    "interpolate",
    "load",
    "reconstruct",
    "report",
    "sample",
    "score",
    "sweep",
    "train",
]
