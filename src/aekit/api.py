"""The Python API: `aekit.train(data, **options) -> Run`, `aekit.load(run) -> Autoencoder`,
`aekit.report(run) -> Path`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aekit.inference.model import Autoencoder, load
from aekit.reporting.report import report
from aekit.training.workflow import Run, train


def encode(run: str | Path, data: Any, output: str | Path | None = None, **options: Any) -> tuple[list[str], Any]:
    """Latent codes of every item of `data` (folder, file, array): (ids, codes (N, latent_dim)).
    With `output` (.npy/.csv/.parquet) they are also written there, as `aekit encode` does.
    Codes are computed in the run's training precision unless `precision="fp32"` (see
    `encoding.encode_items`)."""
    import numpy as np

    from aekit.inference.encode import encode_items

    ids, z, _, id_name = encode_items(run, data, **options)
    if output is not None:
        from aekit.inference.vectors import write_vectors

        write_vectors(output, ids, z, id_name=id_name)
    return ids, np.asarray(z)


def score(run: str | Path, data: Any, output: str | Path | None = None, **options: Any):
    """Anomaly scores of every item of `data` with the run's threshold (see `aekit score --help`
    for the options: metric, threshold, threshold_percentile, contamination, ...). Returns
    `Scores(ids, scores, is_anomaly, threshold, summary)`; with `output` also writes the CSV,
    the worst-items picture and the summary."""
    from aekit.inference.score import score_to_file

    return score_to_file(run, data, output, **options)


def reconstruct(run: str | Path, data: Any, output: str | Path, **options: Any) -> dict:
    """Write the reconstruction of every item of `data` into the folder `output` (as `aekit reconstruct`)."""
    from aekit.inference.reconstruct import reconstruct_to_dir

    return reconstruct_to_dir(run, data, output, **options)


def evaluate(run: str | Path, data: Any, output: str | Path | None = None, **options: Any) -> dict:
    """The model next to PCA on `data`: MSE, PSNR, SSIM overall and per channel (as `aekit evaluate`)."""
    from aekit.inference.evaluate import evaluate as _evaluate

    return _evaluate(run, data, output=output, **options)


def export(run: str | Path, output: str | Path, format: str = "onnx", part: str = "full") -> Path:
    """Write the model as one ONNX or TorchScript file with its normalisation inside, plus a JSON
    sidecar (as `aekit export`); returns the file's path."""
    from aekit.exporting import export as _export

    return _export(run, output, format=format, part=part)


def sample(run: str | Path, n: int = 16, output: str | Path | None = None, **options: Any):
    """(n, C, H, W) images decoded from the prior of a VAE run; with `output` also a grid PNG."""
    from aekit.inference.generate import sample as _sample

    return _sample(run, n, output, **options)


def interpolate(run: str | Path, a: str | Path, b: str | Path, steps: int = 8, output=None, **options: Any):
    """Images decoded between the codes of image files `a` and `b`; with `output` also a strip PNG."""
    from aekit.inference.generate import interpolate as _interpolate

    return _interpolate(run, a, b, steps, output, **options)


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
