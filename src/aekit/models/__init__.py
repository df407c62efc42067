"""A small explicit model registry: `create_model(name, **kwargs)` and `list_models()`."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..errors import AekitError
from .base import AEOutput, loss_fn, mse_terms

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str) -> Callable:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        _DESCRIPTIONS[name] = description
        return fn

    return deco


def create_model(name: str, *, variant: str = "ae", variant_options: dict | None = None, **kwargs) -> nn.Module:
    """Build a registered backbone, as a plain, variational or denoising autoencoder (`variant`
    ae, vae or dae, see variants.py); kwargs are the ones saved in `model.json`."""
    from .variants import wrap

    if name not in _REGISTRY:
        raise AekitError(f"unknown architecture {name!r}; registered: {', '.join(list_models())}")
    return wrap(_REGISTRY[name](**kwargs), variant, kwargs["latent_dim"], variant_options)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def describe_models() -> dict[str, str]:
    return {name: _DESCRIPTIONS[name] for name in list_models()}


from . import conv, mlp  # noqa: E402,F401  (registers the models)

__all__ = ["AEOutput", "create_model", "describe_models", "list_models", "loss_fn", "mse_terms", "register_model"]
