"""CPU stand-ins for what a GPU machine does, so that device bugs show on the CPU CI machine.

`fake_mps` (a fixture) makes this machine look like a Mac with Apple MPS and no CUDA, on the CPU:

- `torch.backends.mps.is_available()` is True and `torch.cuda.is_available()` False, so
  `--device auto` and `resolve_device("mps")` pick "mps";
- `t.to("mps")` of any tensor, and any factory given `device="mps"` (`torch.arange(..., device=
  x.device)`), give an `OnMPS` tensor: a CPU tensor whose `.device` says mps and which refuses what
  MPS refuses, with torch's own words: float64 and uint16 (TypeError), antialiased bilinear
  interpolation (NotImplementedError) and `.numpy()` (TypeError); and a `non_blocking` copy to it
  (RuntimeError), which on MPS can silently corrupt the data (pytorch/pytorch#139550). Operations on it give `OnMPS`
  tensors, as operations on an MPS tensor stay on MPS; `.cpu()` / `.to("cpu")` give plain tensors.
- a module moved `.to("mps")` keeps its parameters on the CPU (plain tensors): the stand-in is about
  the data that flows through it.

`tiny_autoencoder()` builds an `aekit.Autoencoder` of an untrained conv model in milliseconds.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

MPS = torch.device("mps")
MPS_ANTIALIAS = "The operator 'aten::_upsample_bilinear2d_aa.out' is not currently implemented for the MPS device."
MPS_FLOAT64 = "Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support float64."
MPS_NUMPY = "can't convert mps:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory first."
MPS_NON_BLOCKING = "a non_blocking copy to MPS can silently corrupt the data (pytorch/pytorch#139550)"
MPS_LACKS = {
    torch.float64: MPS_FLOAT64,
    torch.uint16: "Trying to convert UInt16 to the MPS backend but it does not have support for that dtype.",
}


def _is(device, kind: str) -> bool:
    return isinstance(device, (str, torch.device)) and torch.device(device).type == kind


def _to_float64(func, args, kwargs) -> bool:
    if func is torch.Tensor.double:
        return True
    return func is torch.Tensor.to and torch.float64 in (*args[1:], kwargs.get("dtype"))


def _moves_to(func, args, kwargs, kind: str) -> bool:
    """`t.to(kind)` / `t.to(device=kind, ...)` / `t.to(torch.device(kind), dtype)`."""
    return func is torch.Tensor.to and any(_is(a, kind) for a in (*args[1:], kwargs.get("device")))


def _on_cpu(args, kwargs) -> tuple[list, dict]:
    """The arguments of a call with every "mps" device made "cpu"."""
    args = ["cpu" if _is(a, "mps") else a for a in args]
    return args, {k: "cpu" if k == "device" and _is(v, "mps") else v for k, v in kwargs.items()}


def on_mps(t: torch.Tensor) -> OnMPS:
    """A copy of `t` "on MPS"; a type MPS lacks is refused as MPS refuses it."""
    if t.dtype in MPS_LACKS:
        raise TypeError(MPS_LACKS[t.dtype])
    with torch._C.DisableTorchFunctionSubclass():
        return t.clone().as_subclass(OnMPS)


class OnMPS(torch.Tensor):
    """A CPU tensor standing in for one on MPS (see the module's docstring)."""

    @property
    def device(self) -> torch.device:
        return MPS

    def __deepcopy__(self, memo):
        with torch._C.DisableTorchFunctionSubclass():
            return memo.setdefault(id(self), on_mps(self))

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.interpolate and kwargs.get("antialias"):
            raise NotImplementedError(MPS_ANTIALIAS)
        if _to_float64(func, args, kwargs):
            raise TypeError(MPS_FLOAT64)
        if func is torch.Tensor.numpy:
            raise TypeError(MPS_NUMPY)
        if func is torch.Tensor.cpu or _moves_to(func, args, kwargs, "cpu"):
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs).clone()  # a plain tensor: on the host now
        return super().__torch_function__(func, types, args, kwargs)


class FakeMPS(TorchFunctionMode):
    """Moves to "mps" and factories on "mps" give OnMPS tensors (see the module's docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _moves_to(func, args, kwargs, "mps") or _is(kwargs.get("device"), "mps"):
            if kwargs.get("non_blocking") or (func is torch.Tensor.to and True in args[2:]):
                raise RuntimeError(MPS_NON_BLOCKING)
            args, kwargs = _on_cpu(args, kwargs)
            if func is torch.Tensor.to and isinstance(args[0], OnMPS):
                return func(*args, **kwargs)  # already there (a dtype change is checked by OnMPS)
            return on_mps(func(*args, **kwargs))
        return func(*args, **kwargs)


@pytest.fixture
def fake_mps(monkeypatch):
    """This machine as a Mac with MPS and no CUDA, for the test's duration (see the module's docstring)."""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with FakeMPS():
        yield MPS


def tiny_autoencoder(channels: int = 1, size: int = 16, latent: int = 4, seed: int = 0, **kw):
    """An aekit.Autoencoder of a small untrained conv model (pixels 0-255), without a training run."""
    from aekit.data.normalize import Normalizer
    from aekit.inference.model import Autoencoder
    from aekit.models import create_model

    torch.manual_seed(seed)
    model = create_model("conv", in_shape=(channels, size, size), latent_dim=latent, depth=2, width=8)
    normalizer = Normalizer(255.0, [0.5] * channels, [0.25] * channels)
    meta = {
        "arch": "conv",
        "input": {"channels": channels, "height": size, "width": size, "dtype": "uint8", "layout": "NCHW"},
        "normalization": normalizer.to_dict(),
        "latent_dim": latent,
        "score_metric": "mse",
    }
    return Autoencoder(model, normalizer, meta, **{"device": "cpu", **kw})
