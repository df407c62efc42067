"""A small explicit model registry: `create_model(name, **kwargs)` and `list_models()`."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..errors import AekitError
from .base import AEOutput

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str) -> Callable:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        _DESCRIPTIONS[name] = description
        return fn

    return deco


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; kwargs are the ones saved in `model.json`."""
    if name not in _REGISTRY:
        raise AekitError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _REGISTRY[name](**kwargs)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def describe_models() -> dict[str, str]:
    return {name: _DESCRIPTIONS[name] for name in list_models()}


from . import conv, mlp  # noqa: E402,F401  (registers the models)

__all__ = ["AEOutput", "create_model", "describe_models", "list_models", "register_model"]
