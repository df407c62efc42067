"""Options left to aekit, decided for the data at hand: architecture, latent size, epochs.

Images and tables differ: a table (N, F, 1, 1) trains the `mlp` model with a latent size of a
quarter of its columns, for at least TABLE_STEPS steps (its epochs are a few steps each), in fp32
(bf16 would round standardised values to about 3 digits) and without flips (a row has no left
and right). Everything resolved here is written into the run's config.yaml.
"""

from __future__ import annotations

import math
from dataclasses import replace

from aekit.config.train import IMAGE_EPOCHS, IMAGE_LATENT_DIM, TABLE_STEPS, TrainConfig
from aekit.core.errors import AekitError
from aekit.data.base import LoadedData
from aekit.models.mlp import auto_latent_dim


def resolve_for_data(cfg: TrainConfig, data: LoadedData, n_train: int) -> TrainConfig:
    """`cfg` with arch, latent_dim and epochs decided for `data` (n_train training items)."""
    tabular = data.columns is not None
    if tabular:
        cfg = replace(cfg, augment="none", precision="fp32" if cfg.precision == "auto" else cfg.precision)
    latent = cfg.latent_dim or (auto_latent_dim(data.shape[0]) if tabular else IMAGE_LATENT_DIM)
    epochs = cfg.epochs or default_epochs(n_train, cfg.batch_size, tabular)
    return replace(cfg, arch=resolve_arch(cfg, data), latent_dim=latent, epochs=epochs)


def default_epochs(n_train: int, batch_size: int, tabular: bool) -> int:
    """30 for images; tables take enough epochs for TABLE_STEPS steps (600 rows: 334 epochs, ~5 s)."""
    if not tabular:
        return IMAGE_EPOCHS
    return max(IMAGE_EPOCHS, math.ceil(TABLE_STEPS / math.ceil(max(n_train, 1) / batch_size)))


def resolve_arch(cfg: TrainConfig, data: LoadedData) -> str:
    """`auto` is conv for images and mlp for tables; a conv model on a table is refused."""
    if data.columns is None:
        return "conv" if cfg.arch == "auto" else cfg.arch
    if cfg.arch in ("conv", "basic"):
        raise AekitError(
            f"--arch {cfg.arch} is for images, and {data.source} is a table of {len(data.columns)} columns; "
            "leave --arch out (tables train the mlp model) or pass --arch mlp"
        )
    if cfg.image_size is not None or cfg.channels is not None:
        flag = "--image-size" if cfg.image_size is not None else "--channels"
        raise AekitError(f"{flag} applies to images, and {data.source} is a table; leave {flag} out (see --columns)")
    return "mlp"
