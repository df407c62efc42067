"""Self-describing model files: weights in safetensors, everything needed to rebuild in model.json.

model.json holds the architecture name and its keyword arguments, the input shape and dtype, the
normalisation and the aekit version: `load_model` rebuilds the network from these alone, with no
pickle and no training code. A user's model must be registered in this process (an entry point,
or the module the user names with --plugin); model.json's "factory" ("mypkg.models:MyAE") only
names it in the error when it is not: a run folder is data and never decides what is imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

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
        model = create_model(meta["arch"], **meta["model_kwargs"])
        normalizer = Normalizer(norm["scale"], norm["mean"], norm["std"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise AekitError(f"{run_dir / 'model.json'} is not a valid aekit model description ({e})") from None
    try:
        state = load_file(str(run_dir / "model.safetensors"))
    except Exception as e:
        raise AekitError(f"cannot read {run_dir / 'model.safetensors'}: {e}") from None
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
    """The network of model.json built on the meta device (no memory) against the shapes in the
    weights file's header: a changed model.json is a one-line error, never a huge allocation. A model
    that cannot be built on the meta device, or an unreadable file, is left to the full load."""
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
