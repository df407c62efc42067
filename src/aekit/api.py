"""The Python API: `aekit.train(data, **options) -> Run`, `aekit.load(run) -> Autoencoder`,
`aekit.report(run) -> Path`."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path
from typing import Any

from aekit.config import commands as c
from aekit.config.fields import default_of
from aekit.config.train import TrainConfig, parse_plugins
from aekit.core.errors import AekitError, did_you_mean
from aekit.inference.model import Autoencoder, load
from aekit.inference.score import Scores
from aekit.models.registry import load_plugins, register_model
from aekit.reporting.report import report
from aekit.training.workflow import Run
from aekit.training.workflow import train as _train


def takes(command: str, *classes: type):
    """The function's `**options` are the fields of the option dataclasses `classes`: an unknown
    keyword is a one-line error naming the valid ones (values are checked by the function, as
    for the command line), and `inspect.signature` / `help()` list every option with its default."""
    fields = {f.name: f for cls in classes for f in dataclasses.fields(cls)}

    def wrap(fn):
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        own = [p.name for p in params]
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default_of(f))
            for name, f in fields.items()
            if name not in own
        ]
        valid = [*own, *(p.name for p in extra)]
        imports_plugins = "plugins" in fields and TrainConfig not in classes  # training imports and records them

        @functools.wraps(fn)
        def checked(*args: Any, **kw: Any):
            unknown = sorted(set(kw) - set(valid))
            if unknown:
                raise AekitError(
                    f"aekit.{command}: unknown option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}"
                    + did_you_mean(unknown[0], valid)
                )
            if imports_plugins:  # the user's modules, imported here (SECURITY.md)
                load_plugins(parse_plugins(kw.pop("plugins", None)))
            return fn(*args, **kw)

        checked.__signature__ = sig.replace(parameters=[*params, *extra])
        return checked

    return wrap


train = takes("train", TrainConfig)(_train)


@takes("encode", c.EncodeOptions)
def encode(run: str | Path, data: Any, output: str | Path | None = None, **options: Any) -> tuple[list[str], Any]:
    """Latent codes of every item of `data` (folder, file, array): (ids, codes (N, latent_dim)).
    With `output` (.npy/.csv/.parquet) they are also written there, as `aekit encode` does.
    Codes are computed in the run's training precision unless `precision="fp32"` (see
    `inference.encode.encode_items`)."""
    import numpy as np

    from aekit.inference.encode import encode_items, encode_to_file

    o = c.EncodeOptions(run=run, data=data, output=output, **options)
    got = encode_items(o) if output is None else encode_to_file(o)[1]
    return got.ids, np.asarray(got.codes)


@takes("score", c.ScoreOptions)
def score(run: str | Path, data: Any, output: str | Path | None = None, **options: Any) -> Scores:
    """Anomaly scores of every item of `data` with the run's threshold (see `aekit score --help`
    for the options: metric, threshold, threshold_percentile, contamination, ...). Returns
    `Scores(ids, scores, is_anomaly, threshold, summary)`; with `output` also writes the CSV,
    the worst-items picture and the summary."""
    from aekit.inference.score import score_to_file

    return score_to_file(c.ScoreOptions(run=run, data=data, output=output, **options))


@takes("reconstruct", c.ReconstructOptions)
def reconstruct(run: str | Path, data: Any, output: str | Path, **options: Any) -> dict:
    """Write the reconstruction of every item of `data` into the folder `output` (as `aekit reconstruct`)."""
    from aekit.inference.reconstruct import reconstruct_to_dir

    return reconstruct_to_dir(c.ReconstructOptions(run=run, data=data, output=output, **options))


@takes("evaluate", c.EvaluateOptions)
def evaluate(
    run: str | Path, data: Any = None, output: str | Path | None = None, *, labels: Any = None, **options: Any
) -> dict:
    """The model next to PCA on `data`: MSE, PSNR, SSIM overall and per channel (as `aekit evaluate`).

    With `normal=` and `anomalous=` data (or `data` with `label_column=`, `normal_folders=` or
    `labels=`, one 0/1 per item, 1 = anomalous): how well the anomaly score separates them, as a
    dict with `auroc`, `average_precision`, `at_threshold` (precision, recall, f1, counts at the
    run's threshold), `n_normal`, `n_anomalous` (see `aekit evaluate --help`)."""
    from aekit.inference.evaluate import evaluate as _evaluate

    return _evaluate(c.EvaluateOptions(run=run, data=data, output=output, **options), labels)


@takes("export", c.ExportOptions)
def export(run: str | Path, output: str | Path | None = None, **options: Any) -> Path:
    """Write the model as one ONNX or TorchScript file with its normalisation inside, plus a JSON
    sidecar (as `aekit export`; default RUN/model.onnx); returns the file's path."""
    from aekit.exporting import export as _export

    return _export(c.ExportOptions(run=run, output=output, **options))


@takes("sample", c.SampleOptions)
def sample(run: str | Path, n: int = c.SampleOptions.n, output: str | Path | None = None, **options: Any) -> Any:
    """(n, C, H, W) images decoded from the prior of a VAE run; with `output` also a grid PNG."""
    from aekit.inference.generate import sample as _sample

    return _sample(c.SampleOptions(run=run, n=n, output=output, **options))


@takes("interpolate", c.InterpolateOptions)
def interpolate(
    run: str | Path,
    a: str | Path,
    b: str | Path,
    steps: int = c.InterpolateOptions.steps,
    output: str | Path | None = None,
    **options: Any,
) -> Any:
    """Images decoded between the codes of image files `a` and `b`; with `output` also a strip PNG."""
    from aekit.inference.generate import interpolate as _interpolate

    return _interpolate(c.InterpolateOptions(run=run, a=a, b=b, steps=steps, output=output, **options))


@takes("sweep", c.SweepOptions, TrainConfig)
def sweep(data: Any, **options: Any):
    """Train one run per combination of `latent_dim`, `depth`, `lr` and `model` (lists, single
    values or "8,16,32" strings) into `out` (as `aekit sweep`); `search` ("grid", "random",
    "tpe"), `trials`, `max_time_per_trial` (or `max_time`), `config` and `verbose` as its flags;
    other `options` (epochs=..., image_size=...) apply to every trial. Returns `SweepResults`,
    best first: `res["val_mse"]`, `res.best`, `res.to_pandas()`. Running it again on the same
    `out` resumes it."""
    from aekit.sweeps.run import run_sweep

    return run_sweep(data, **options)


__all__ = [
    "Autoencoder",
    "Run",
    "Scores",
    "encode",
    "evaluate",
    "export",
    "interpolate",
    "load",
    "reconstruct",
    "register_model",
    "report",
    "sample",
    "score",
    "sweep",
    "train",
]
