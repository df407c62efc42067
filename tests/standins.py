"""CPU stand-ins for what a GPU machine does, so that device bugs show on the CPU CI machine.

- `OnMPS`: a CPU tensor that says it lives on Apple MPS (`.device` is mps) and refuses what MPS
  refuses: antialiased interpolation (NotImplementedError, as torch says on a Mac) and float64
  (TypeError, as torch says: "MPS framework doesn't support float64"). `.cpu()` gives a `FromMPS`
  tensor, a CPU tensor that goes back "to MPS" with `.to(device)`: the round trip a fix must make.
- `tiny_autoencoder()`: an `aekit.Autoencoder` of an untrained conv model, built in milliseconds.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

MPS = torch.device("mps")
MPS_ANTIALIAS = "The operator 'aten::_upsample_bilinear2d_aa.out' is not currently implemented for the MPS device."
MPS_FLOAT64 = "Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support float64."


def _is_float64(func, args, kwargs) -> bool:
    if func is torch.Tensor.double:
        return True
    if func is torch.Tensor.to:
        return torch.float64 in (*args[1:], kwargs.get("dtype"))
    return False


def _to_mps(func, args, kwargs) -> bool:
    """`t.to(mps)` / `t.to(device=mps)` / `t.to("mps")`."""
    if func is not torch.Tensor.to:
        return False
    targets = [*args[1:], kwargs.get("device")]
    return any(str(a) == "mps" or (isinstance(a, torch.device) and a.type == "mps") for a in targets)


class OnMPS(torch.Tensor):
    """A CPU tensor standing in for one on MPS (see the module's docstring). Results of operations on
    it stay `OnMPS`, as results of operations on an MPS tensor stay on MPS."""

    @property
    def device(self) -> torch.device:
        return MPS

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.interpolate and kwargs.get("antialias"):
            raise NotImplementedError(MPS_ANTIALIAS)
        if _is_float64(func, args, kwargs):
            raise TypeError(MPS_FLOAT64)
        if func is torch.Tensor.cpu:
            with torch._C.DisableTorchFunctionSubclass():
                return args[0].clone().as_subclass(FromMPS)
        if _to_mps(func, args, kwargs):
            return args[0]
        return super().__torch_function__(func, types, args, kwargs)


class FromMPS(torch.Tensor):
    """A CPU tensor copied from an `OnMPS` one: `.to(mps)` makes it `OnMPS` again."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _to_mps(func, args, kwargs):
            with torch._C.DisableTorchFunctionSubclass():
                return args[0].clone().as_subclass(OnMPS)
        return super().__torch_function__(func, types, args, kwargs)


def on_mps(t: torch.Tensor) -> OnMPS:
    return t.clone().as_subclass(OnMPS)


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
    return Autoencoder(model, normalizer, meta, device="cpu", **kw)
