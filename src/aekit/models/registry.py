"""A small explicit model registry: `register_model(name, description)` as a decorator,
`create_model(name, **kwargs)`, `list_models()`.

A registered factory takes the keyword arguments saved in model.json (`in_shape`, `latent_dim`,
`depth`, ...) and returns a plain `nn.Module` following the protocol in models/base.py.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from aekit.core.errors import AekitError
from aekit.models.base import AEModule

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}
_VARIANTS: dict[str, Callable[..., nn.Module]] = {}  # "vae", "dae": wrappers around a backbone


def register_model(name: str, description: str) -> Callable:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        _DESCRIPTIONS[name] = description
        return fn

    return deco


def create_model(name: str, *, variant: str = "ae", variant_options: dict | None = None, **kwargs) -> nn.Module:
    """Build a registered backbone, as a plain, variational or denoising autoencoder (`variant`
    ae, or a registered variant: vae.py, dae.py); kwargs are the ones saved in `model.json`."""
    if name not in _REGISTRY:
        raise AekitError(f"unknown architecture {name!r}; registered: {', '.join(list_models())}")
    backbone = _REGISTRY[name](**kwargs)
    if not isinstance(backbone, AEModule):
        raise AekitError(
            f"model {name!r} built a {type(backbone).__name__}, not an AEModule; "
            "subclass aekit.models.base.AEModule (see its docstring for the protocol)"
        )
    return wrap(backbone, variant, kwargs["latent_dim"], variant_options)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def describe_models() -> dict[str, str]:
    return {name: _DESCRIPTIONS[name] for name in list_models()}


def register_variant(name: str) -> Callable:
    """Register `factory(backbone, latent_dim, **options) -> nn.Module` as the variant `name`."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _VARIANTS[name] = factory
        return factory

    return deco


def wrap(backbone: nn.Module, variant: str, latent_dim: int, options: dict | None) -> nn.Module:
    if variant == "ae":
        return backbone
    if variant not in _VARIANTS:
        raise AekitError(f"unknown model {variant!r}; choose one of {', '.join(['ae', *sorted(_VARIANTS)])}")
    return _VARIANTS[variant](backbone, latent_dim, **dict(options or {}))
