"""The model registry: `register_model(name)` as a decorator, `create_model(name, **kwargs)`,
`list_models()`; the built-in models and users' own.

A registered factory (a class or a function) takes the keyword arguments saved in model.json
(`in_shape=(C, H, W)` and `latent_dim`; the built-in ones also `depth` and `width`, a user's only
when --depth / --width are given) and returns a plain `nn.Module` following the protocol in
models/base.py (an `AEModule`), or any module with `encode(x) -> z` and `decode(z) -> x`.

Trust (SECURITY.md): only what the user installed or named runs. A user's model is found among the
registered models, the entry points of installed packages (group `aekit.models`, by name) and the
modules the user names (`--plugin MODULE`, `plugins=[...]`, imported by `load_plugins`). A run
folder's model.json records the import path of a user's factory (`"factory": "mypkg.models:MyAE"`)
only to say, when the model is not available, which `--plugin` to pass: nothing is ever imported
or called because a file names it. Weights are only ever read from safetensors.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from importlib import metadata

from torch import nn

from aekit.core.errors import AekitError
from aekit.models.base import AEModule, AEOutput

ENTRY_POINTS = "aekit.models"  # the entry-point group of installed packages' models
AUTO = "auto"  # --arch auto: conv for images, mlp for tables (training/defaults.py)
PLUGIN_HINT = (
    "your own: aekit.register_model in a module passed with --plugin MODULE, or an entry point in the group "
    f"{ENTRY_POINTS}; see `aekit models`"
)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}
_VARIANTS: dict[str, Callable[..., nn.Module]] = {}  # "vae", "dae": wrappers around a backbone


def register_model(name: str, description: str | None = None) -> Callable:
    """Register a model factory under `name` (a decorator for a class or a function): `--arch name`,
    `aekit.train(..., arch=name)`. `description` (default: the first line of its docstring) is what
    `aekit models` shows. A name is registered once; registering the same factory again (the module
    imported again) is allowed."""
    if not isinstance(name, str) or not name.strip() or name == AUTO or any(c.isspace() for c in name):
        raise AekitError(f"a model name is a word without spaces, not {AUTO!r}; got {name!r}")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if not callable(fn):
            raise AekitError(f"register_model({name!r}) decorates a class or function that builds the model")
        old = _REGISTRY.get(name)
        if old is not None and old is not fn and _path(old) != _path(fn):
            raise AekitError(f"model name {name!r} is already registered by {_path(old) or old!r}; choose another")
        _REGISTRY[name] = fn
        doc = (inspect.getdoc(fn) or "").strip().splitlines()
        _DESCRIPTIONS[name] = description or (doc[0] if doc else f"user model {_path(fn) or fn!r}")
        return fn

    return deco


def _path(fn: Callable) -> str | None:
    """ "module:qualname" of a factory that another process can import; None for one defined in a
    script run as __main__ or inside a function."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or not qualname or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def is_builtin(name: str) -> bool:
    return str(getattr(find_model(name), "__module__", "")).startswith("aekit.")


def factory_path(name: str) -> str | None:
    """What model.json records to find a user's model `name` again in another process: the import
    path of its factory; None when another process cannot import it (defined in __main__)."""
    return _path(find_model(name))


def load_plugins(modules: list[str] | None) -> None:
    """Import the modules that register users' models (--plugin)."""
    for module in modules or []:
        try:
            importlib.import_module(module)
        except Exception as e:  # any failure of the user's module: one line, no traceback
            raise AekitError(f"cannot import --plugin {module}: {type(e).__name__}: {e}") from None


def _entry_points() -> dict[str, metadata.EntryPoint]:
    try:
        return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINTS)}
    except Exception:  # a broken distribution's metadata must not stop aekit
        return {}


def find_model(name: str, hint: str = "") -> Callable[..., nn.Module]:
    """The factory registered as `name`, or an installed entry point of that name (group
    aekit.models); `hint` ends the one-line error when none is found. Nothing else is imported."""
    if name not in _REGISTRY and name in (eps := _entry_points()):
        try:
            obj = eps[name].load()  # an installed package's own declaration: trusted as installed code
        except Exception as e:
            raise AekitError(
                f"cannot load model {name!r} from entry point {eps[name].value} ({type(e).__name__}: {e})"
            ) from None
        if name not in _REGISTRY and callable(obj) and not inspect.ismodule(obj):
            register_model(name)(obj)
    if name not in _REGISTRY:
        raise AekitError(
            hint or f"unknown arch {name!r}; registered: {', '.join([AUTO, *list_models()])} ({PLUGIN_HINT})"
        )
    return _REGISTRY[name]


_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def plugin_hint(name: str, factory: object, where: str) -> str:
    """The error for a model `name` that `where` (model.json, a config file) names and that is not
    registered here: which --plugin would register it, never an import of it."""
    module = str(factory).partition(":")[0] if isinstance(factory, str) else ""
    unknown = f"unknown arch {repr(name)[:80]} in {where}"
    if not _MODULE_PATH.fullmatch(module) or len(module) > 200:  # echo only what reads as a module path
        registered = ", ".join(list_models())
        return f"{unknown}; registered: {registered}; for your own model pass the --plugin MODULE that registers it"
    return (
        f"{unknown}: {where} says {module} builds it, and aekit never imports code because a file names it; "
        f"if you trust that module, pass --plugin {module} (Python: plugins=[{module!r}])"
    )


class PlainModule(AEModule):
    """A user's module with `encode(x) -> z` and `decode(z) -> recon` but no AEOutput: trained on
    mean squared error like any other."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.in_shape = getattr(net, "in_shape", None)

    def encode(self, x):
        return self.net.encode(x)

    def decode(self, z):
        return self.net.decode(z)

    def forward(self, x) -> AEOutput:
        z = self.net.encode(x)
        return AEOutput(self.net.decode(z), z)


def create_model(name: str, *, variant: str = "ae", variant_options: dict | None = None, **kwargs) -> nn.Module:
    """Build a registered backbone, as a plain, variational or denoising autoencoder (`variant`
    ae, or a registered variant: vae.py, dae.py); kwargs are the ones saved in `model.json`."""
    backbone = find_model(name)(**kwargs)
    if not isinstance(backbone, AEModule):
        if not (isinstance(backbone, nn.Module) and callable(getattr(backbone, "encode", None))
                and callable(getattr(backbone, "decode", None))):  # fmt: skip
            raise AekitError(
                f"model {name!r} built a {type(backbone).__name__}, not an nn.Module with encode(x) and decode(z); "
                "subclass aekit.models.AEModule (see its docstring for the protocol)"
            )
        backbone = PlainModule(backbone)
    if variant != "ae" and not hasattr(backbone, "encode_features"):
        raise AekitError(
            f"--model {variant} wraps a backbone with encode_features(x) -> (z, features) and feature_dim "
            f"(models/wrapper.py), and {name!r} has none; train it with --model ae"
        )
    return wrap(backbone, variant, kwargs["latent_dim"], variant_options)


def list_models() -> list[str]:
    """Registered models and installed packages' entry points (group aekit.models), by name."""
    return sorted(set(_REGISTRY) | set(_entry_points()))


def describe_models() -> dict[str, str]:
    eps = _entry_points()
    return {name: _DESCRIPTIONS.get(name) or f"entry point {eps[name].value}" for name in list_models()}


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
