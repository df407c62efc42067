"""Pick the training device: cuda, then mps, then cpu."""

from __future__ import annotations

import torch

from aekit.core.errors import AekitError


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise AekitError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise AekitError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu or auto")
    if kind == "mps" and not mps_available():
        raise AekitError(f"device {name!r} asked for, but Apple MPS is not available here; use --device cpu or auto")
    return torch.device(name)
