"""The models: plain `nn.Module`s built from the data's shape (registry.py), their output and loss
(base.py), the variational and denoising variants (vae.py, dae.py around wrapper.py), and how a run saves them."""

from aekit.models import conv, dae, mlp, vae  # noqa: E402,F401,I001  (registers the models and variants)
from aekit.models.base import AEModule, AEOutput, loss_fn, mse_terms
from aekit.models.registry import create_model, describe_models, list_models, register_model

__all__ = [
    "AEModule",
    "AEOutput",
    "create_model",
    "describe_models",
    "list_models",
    "loss_fn",
    "mse_terms",
    "register_model",
]
