"""Self-describing model files: weights in safetensors, everything needed to rebuild in model.json.

model.json holds the architecture name and its keyword arguments, the input shape and dtype, the
normalisation and the aekit version: `load_model` rebuilds the network from these alone, with no
pickle and no training code. A user's model must be registered in this process (an entry point,
or the module the user names with --plugin); model.json's "factory" ("mypkg.models:MyAE") only
names it in the error when it is not: a run folder is data and never decides what is imported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from aekit.config.choices import ENSEMBLE_PARTS, METRICS
from aekit.core.errors import AekitError
from aekit.core.rundir import atomic_write, resolve_run, write_json
from aekit.data.normalize import Normalizer
from aekit.models import create_model
from aekit.models.pca import PCA
from aekit.models.registry import find_model, plugin_hint
from aekit.version import __version__

FORMAT_VERSION = 1


def model_meta(arch: str, kwargs: dict[str, Any], normalizer: Normalizer, dtype: str, **extra: Any) -> dict:
    c, h, w = kwargs["in_shape"]
    return {
        "format": FORMAT_VERSION,
        "aekit_version": __version__,
        "arch": arch,
        "model_kwargs": {**kwargs, "in_shape": [c, h, w]},
        "input": {"channels": c, "height": h, "width": w, "dtype": dtype, "layout": "NCHW"},
        "normalization": normalizer.to_dict(),
        "latent_dim": kwargs["latent_dim"],
        **extra,
    }


def save_model(run_dir: Path, model: nn.Module, meta: dict) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(run_dir / "model.safetensors", lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    write_json(run_dir / "model.json", meta)


def load_model(run: str | Path) -> tuple[nn.Module, Normalizer, dict]:
    """Rebuild a trained model and its normaliser from a run directory."""
    run_dir = resolve_run(run)
    try:
        meta = json.loads((run_dir / "model.json").read_text())
        norm = meta["normalization"]
        arch = meta["arch"]
        if not isinstance(arch, str):
            raise TypeError(f"arch is {type(arch).__name__}, not a name")
        find_model(arch, hint=plugin_hint(arch, meta.get("factory"), f"{run_dir / 'model.json'}"))
        check_shapes(run_dir, meta)  # before any memory is taken for the network model.json describes
        check_meta(meta)
        model = _built(meta)
        normalizer = Normalizer(norm["scale"], norm["mean"], norm["std"])
    except (ValueError, KeyError, TypeError) as e:  # ValueError: not JSON, not UTF-8, or a value out of range
        raise AekitError(f"{run_dir / 'model.json'} is not a valid aekit model description ({_line(e)})") from None
    try:
        state = load_file(str(run_dir / "model.safetensors"))
    except Exception as e:
        raise AekitError(f"cannot read {run_dir / 'model.safetensors'}: {_line(e)}") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # same names, other shapes: model.json or the weights were changed
        first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e)[:200])
        raise AekitError(
            f"weights in {run_dir} do not fit the architecture in model.json ({first.rstrip('.')}); the run "
            "folder was changed after training: restore it or train again"
        ) from None
    if missing or unexpected:
        raise AekitError(
            f"weights in {run_dir} do not fit the architecture in model.json "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.eval()
    return model, normalizer, meta


def check_shapes(run_dir: Path, meta: dict) -> None:
    """The network of model.json built on the meta device (no memory) against the names and shapes
    in the weights file's header: a changed model.json is a one-line error, never a huge allocation.
    A model that cannot be built on the meta device, or an unreadable file, is left to the full load."""
    try:
        with torch.device("meta"):
            built = create_model(meta["arch"], **meta["model_kwargs"]).state_dict()
        with safe_open(str(run_dir / "model.safetensors"), "pt") as f:
            stored = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except (KeyError, TypeError):
        raise
    except Exception:
        return
    for name, t in built.items():
        if name in stored and list(t.shape) != stored[name]:
            raise AekitError(
                f"weights in {run_dir} do not fit the architecture in model.json (size mismatch for {name}: "
                f"{stored[name]} in the weights, {list(t.shape)} in model.json); the run folder was changed after "
                "training: restore it or train again"
            )
    missing, unexpected = sorted(set(built) - set(stored)), sorted(set(stored) - set(built))
    if missing or unexpected:  # e.g. a deeper network than the weights hold: said before it is built
        raise AekitError(
            f"weights in {run_dir} do not fit the architecture in model.json "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def _built(meta: dict) -> nn.Module:
    """The network model.json describes; a ValueError saying why it cannot be built (a changed value
    the factory refuses, such as a negative size)."""
    try:
        return create_model(meta["arch"], **meta["model_kwargs"])
    except AekitError:
        raise
    except Exception as e:  # whatever a factory (a user's too) raises on values it was never meant to get
        raise ValueError(f"the network cannot be built from model_kwargs: {type(e).__name__}: {_line(e)}") from None


def _line(e: Exception) -> str:
    """An exception's message on one line."""
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)[:300]


INPUT_DTYPES = ("uint8", "uint16", "int16", "int32", "int64", "float32")  # what training stores (data/rasters.py)


def check_meta(meta: Any) -> None:
    """Raise TypeError or ValueError naming the first field of model.json that inference reads and
    that is not what training writes: shapes, types, normalisation, table and raster reading,
    scores. A changed model.json is then one line at load time, never a traceback, a division by
    zero or a huge allocation later."""
    if not isinstance(meta, dict):
        raise TypeError(f"it holds a {type(meta).__name__}, not an object")
    kwargs, inp, norm = meta["model_kwargs"], meta["input"], meta["normalization"]
    if not isinstance(kwargs, dict) or not isinstance(inp, dict) or not isinstance(norm, dict):
        raise TypeError("model_kwargs, input and normalization must be objects")
    shape = kwargs["in_shape"]
    if not _counts(shape, 3):
        raise ValueError(f"model_kwargs.in_shape must be 3 positive integers, got {shape!r}")
    if [inp.get("channels"), inp.get("height"), inp.get("width")] != list(shape):
        raise ValueError(f"input channels, height, width must be model_kwargs.in_shape {shape}")
    if inp.get("dtype") not in INPUT_DTYPES:
        raise ValueError(f"input dtype must be one of {', '.join(INPUT_DTYPES)}, got {inp.get('dtype')!r}")
    latent = meta["latent_dim"]
    if not _counts([latent], 1) or kwargs.get("latent_dim", latent) != latent:
        raise ValueError(f"latent_dim must be a positive integer, that of model_kwargs, got {latent!r}")
    c = shape[0]
    scale, mean, std = norm["scale"], norm["mean"], norm["std"]
    if not (_numbers([scale], 1) and scale > 0 and _numbers(mean, c) and _numbers(std, c) and min(std) > 0):
        raise ValueError(f"normalization must hold a scale > 0 and {c} means and stds > 0")
    table = meta.get("table")
    if table is not None and not (
        isinstance(table, dict)
        and isinstance(table.get("columns"), list)
        and len(table["columns"]) == c
        and all(isinstance(n, str) for n in table["columns"])
        and isinstance(table.get("id_column"), (str, type(None)))
    ):
        raise ValueError(f"table must name {c} columns and an id_column (or null)")
    raster = meta.get("raster")
    if raster is not None and not (
        isinstance(raster, dict)
        and _counts(raster.get("bands"), c)
        and (raster.get("patch_size") is None or _counts(raster["patch_size"], 2))
        and (raster.get("stride") is None or _counts([raster["stride"]], 1))
        and (raster.get("nodata") is None or _numbers([raster["nodata"]], 1, finite=False))
    ):
        raise ValueError(f"raster must list {c} bands, a patch size, a stride and nodata (or nulls)")
    if meta.get("score_metric", "mse") not in METRICS:
        raise ValueError(f"score_metric must be one of {', '.join(METRICS)}, got {meta.get('score_metric')!r}")
    stats = meta.get("latent_score")
    if stats and not (
        isinstance(stats, dict)
        and _numbers(stats.get("mean"), latent)
        and isinstance(stats.get("precision"), list)
        and len(stats["precision"]) == latent
        and all(_numbers(row, latent) for row in stats["precision"])
        and _numbers([stats.get("mse_scale")], 1)
        and stats["mse_scale"] > 0
    ):
        raise ValueError(
            f"latent_score must hold a mean of {latent}, a {latent}x{latent} precision and an mse_scale > 0"
        )
    ensemble = meta.get("ensemble")
    if ensemble is not None and not (stats and _ensemble_ok(ensemble)):
        raise ValueError(
            f"ensemble must hold a scale > 0 for each of its parts ({', '.join(ENSEMBLE_PARTS)}), "
            "a finite center for each with combine 'max', and combine 'max' or 'sum'"
        )
    threshold = meta.get("threshold")
    if threshold:
        by_metric = threshold.get("by_metric") or {} if isinstance(threshold, dict) else {}
        rules = [threshold, *(by_metric.values() if isinstance(by_metric, dict) else [by_metric])]
        if not all(isinstance(r, dict) and _numbers([r.get("value")], 1) and r.get("metric") in METRICS for r in rules):
            raise ValueError("threshold must hold a metric and a finite value for each metric")


def _ensemble_ok(ensemble: Any) -> bool:
    """model.json's "ensemble": scales > 0 for known parts; combine "sum" (absent in earlier runs) or
    "max" with a finite center for each part."""
    if not isinstance(ensemble, dict):
        return False
    scales, combine = ensemble.get("scales"), ensemble.get("combine", "sum")
    if not (isinstance(scales, dict) and scales and set(scales) <= set(ENSEMBLE_PARTS)):
        return False
    if not all(_float(v, True) and v > 0 for v in scales.values()) or combine not in ("max", "sum"):
        return False
    centers = ensemble.get("centers")
    return combine == "sum" or (
        isinstance(centers, dict) and set(centers) == set(scales) and all(_float(v, True) for v in centers.values())
    )


def _counts(values: Any, n: int) -> bool:
    """`values` is a list of n positive integers (not booleans)."""
    return (
        isinstance(values, list)
        and len(values) == n
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
    )


def _numbers(values: Any, n: int, finite: bool = True) -> bool:
    """`values` is a list of n numbers (not booleans) that floats hold (not 10**400), finite unless
    `finite` is False."""
    return isinstance(values, list) and len(values) == n and all(_float(v, finite) for v in values)


def _float(value: Any, finite: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        as_float = float(value)
    except OverflowError:
        return False
    return not finite or math.isfinite(as_float)


REFERENCE_FILE = "reference.safetensors"


def save_references(run_dir: Path, refs: dict) -> None:
    """The ensemble score's kNN references: whitened codes and pooled inputs of training items."""
    tensors = {"codes": refs["codes"].contiguous(), "inputs": refs["inputs"].contiguous()}
    atomic_write(run_dir / REFERENCE_FILE, lambda p: save_file(tensors, str(p)))


def load_references(run_dir: Path, meta: dict) -> dict:
    """The references of a run whose model.json has an ensemble score; one-line errors otherwise."""
    path = run_dir / REFERENCE_FILE
    try:
        t = load_file(str(path))
        codes, inputs = t["codes"].float(), t["inputs"].float()
    except Exception as e:  # missing, truncated or altered: say which, never a traceback
        raise AekitError(
            f"cannot read {path} (the ensemble score's references): {_line(e)}; restore the run folder, or score "
            "with --metric mse"
        ) from None
    if codes.ndim != 2 or inputs.ndim != 2 or len(codes) != len(inputs) or not len(codes):
        raise AekitError(f"{path} does not hold this run's references (shapes changed); restore it or train again")
    if codes.shape[1] != meta["latent_dim"] or not (torch.isfinite(codes).all() and torch.isfinite(inputs).all()):
        raise AekitError(f"{path} does not fit this run's model (latent size or values); restore it or train again")
    return {"codes": codes, "inputs": inputs}


def save_pca(run_dir: Path, pca: PCA) -> None:
    tensors = {"mean": pca.mean.contiguous(), "components": pca.components.contiguous()}
    atomic_write(run_dir / "pca.safetensors", lambda p: save_file(tensors, str(p)))


def load_pca(run_dir: Path) -> PCA:
    path = run_dir / "pca.safetensors"
    if not path.is_file():
        raise AekitError(f"{run_dir} has no pca.safetensors (written by aekit train since 0.1); retrain to evaluate")
    try:
        t = load_file(str(path))
        pca = PCA(t["mean"], t["components"])
    except Exception as e:  # a truncated or altered file: say which, never a traceback
        raise AekitError(f"cannot read {path}: {e}; restore the run folder or train again") from None
    if pca.mean.ndim != 1 or pca.components.ndim != 2 or pca.components.shape[0] != pca.mean.shape[0]:
        raise AekitError(f"{path} does not hold a PCA of this run (shapes changed); restore it or train again")
    if not (torch.isfinite(pca.mean).all() and torch.isfinite(pca.components).all()):
        raise AekitError(f"{path} holds NaN or Inf values; restore the run folder or train again")
    return pca


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def to_device(model: nn.Module, normalizer: Normalizer, device: torch.device) -> None:
    model.to(device)
    normalizer.to(device)
