"""Options left to aekit, decided for the data at hand: architecture, latent size, budget.

The budget: with none of --epochs, --max-steps and --max-time, training takes BUDGET_STEPS
optimisation steps (the learning-rate schedule warms up and decays over them, whatever the size of
an epoch) and stops after BUDGET_SECONDS at the latest, whichever comes first; early stopping
(--patience) may end it sooner. With --max-steps, --epochs or --max-time, the given limits apply,
and epochs default as below. A time budget covers the end of the run too: training stops early
enough for the last validation pass and the end's work (`end_reserve`), estimated from the time
of the last validation pass.

Images and tables differ: a table (N, F, 1, 1) trains the `mlp` model with a latent size of a
quarter of its columns, for at least TABLE_STEPS steps (its epochs are a few steps each), in fp32
(bf16 would round standardised values to about 3 digits) and without flips (a row has no left
and right). Everything resolved here is written into the run's config.yaml.
"""

from __future__ import annotations

import math
from dataclasses import replace

from aekit.config.train import (
    BUDGET_SECONDS,
    BUDGET_STEPS,
    IMAGE_EPOCHS,
    IMAGE_LATENT_DIM,
    TABLE_STEPS,
    TrainConfig,
)
from aekit.core.errors import AekitError
from aekit.data.base import LoadedData
from aekit.measures.ensemble import MAX_REFERENCES
from aekit.measures.latent_score import MAX_ITEMS as LATENT_ITEMS
from aekit.models.mlp import auto_latent_dim

# The end of a run, per item, in units of a validation pass's time per item: the final pass over the
# validation items (metrics with SSIM, PCA, the score's parts), the latent statistics and the ensemble's
# references over training items (in fp32, where validation runs in the training's precision). Fitted
# to the end's measured time in 120 s runs of benchmarks/time_to_quality.py at 28x28, 32x32 and
# 128x128 (BENCHMARKS.md, "The end of a run").
FINAL_PASS_COST = 5.0
LATENT_COST = 0.6
REFERENCE_COST = 0.3
END_SECONDS = 2.0  # the end's pictures, summary and report


def resolve_for_data(cfg: TrainConfig, data: LoadedData, n_train: int) -> TrainConfig:
    """`cfg` with arch, latent_dim and epochs decided for `data` (n_train training items)."""
    tabular = data.columns is not None
    if tabular:
        cfg = replace(cfg, augment="none", precision="fp32" if cfg.precision == "auto" else cfg.precision)
    latent = cfg.latent_dim or (
        auto_latent_dim(data.shape[0]) if tabular else min(IMAGE_LATENT_DIM, auto_latent_dim(math.prod(data.shape)))
    )
    cfg = replace(cfg, **budget(cfg, n_train, tabular))
    return replace(cfg, arch=resolve_arch(cfg, data), latent_dim=latent)


def budget(cfg: TrainConfig, n_train: int, tabular: bool) -> dict:
    """epochs, max_steps and max_time for `cfg` on n_train training items (see the module's doc)."""
    per_epoch = math.ceil(max(n_train, 1) / cfg.batch_size)
    if cfg.epochs is None and cfg.max_steps is None and cfg.max_time is None:
        return {"epochs": math.ceil(BUDGET_STEPS / per_epoch), "max_steps": BUDGET_STEPS, "max_time": BUDGET_SECONDS}
    epochs = cfg.epochs
    if epochs is None:
        epochs = (
            math.ceil(cfg.max_steps / per_epoch) if cfg.max_steps else default_epochs(n_train, cfg.batch_size, tabular)
        )
    return {"epochs": epochs, "max_steps": cfg.max_steps, "max_time": cfg.max_time}


def total_steps(cfg: TrainConfig, n_train: int) -> int:
    """The optimisation steps the run will take unless time or early stopping ends it sooner."""
    steps = cfg.epochs * math.ceil(max(n_train, 1) / cfg.batch_size)
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def describe_budget(cfg: TrainConfig, n_train: int) -> str:
    """The start table's line: '3000 steps (104 epochs of 29 steps), at most 10 min, ...'."""
    per_epoch = math.ceil(max(n_train, 1) / cfg.batch_size)
    steps = total_steps(cfg, n_train)
    epochs = steps / per_epoch
    shown = f"{epochs:.0f}" if epochs >= 10 or epochs.is_integer() else f"{epochs:.1f}"  # counts, not 1.5e+03
    text = f"{steps} steps ({shown} epochs of {per_epoch} steps)"
    if cfg.max_time:
        text += f", at most {format_seconds(cfg.max_time)}"
    if cfg.patience:
        text += f", or until {cfg.patience} epochs (and a twentieth of the steps) bring no better validation loss"
    return text


def format_seconds(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:.3g} min"


def default_epochs(n_train: int, batch_size: int, tabular: bool) -> int:
    """With only --max-time: 30 for images; tables take enough epochs for TABLE_STEPS steps."""
    if not tabular:
        return IMAGE_EPOCHS
    return max(IMAGE_EPOCHS, math.ceil(TABLE_STEPS / math.ceil(max(n_train, 1) / batch_size)))


def resolve_arch(cfg: TrainConfig, data: LoadedData) -> str:
    """`auto` is conv for images and mlp for tables; a conv model on a table is refused (a user's
    model is taken as it is: it sees a table as (B, F, 1, 1))."""
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
    return "mlp" if cfg.arch == "auto" else cfg.arch


def budget_spent(cfg: TrainConfig, step: int, steps: int, elapsed: float, reserve: float = 0.0) -> float:
    """The fraction of the budget spent, in [0, 1]: steps, or time when that runs out first (the time
    budget less `reserve` seconds kept for the end of the run). The learning-rate schedule and the
    progress bar follow it."""
    frac = step / max(steps, 1)
    if cfg.max_time:
        frac = max(frac, elapsed / max(cfg.max_time - reserve, 1e-9))
    return min(frac, 1.0)


def end_reserve(cfg: TrainConfig, n_train: int, n_eval: int, val_seconds: float) -> float:
    """Seconds of a time budget kept for what follows the last training step: the epoch's validation
    pass, then the end of the run (a pass over the n_eval validation items; the latent statistics
    and the ensemble's references over up to LATENT_ITEMS and MAX_REFERENCES training items; each
    at its cost per item relative to the validation pass's; and END_SECONDS), estimated from the last
    validation pass (`val_seconds` for n_eval items). At most half the budget: a short budget still
    trains."""
    if not cfg.max_time or n_eval <= 0:
        return 0.0
    per_item = val_seconds / n_eval
    items = (
        FINAL_PASS_COST * n_eval
        + LATENT_COST * min(n_train, LATENT_ITEMS)
        + REFERENCE_COST * min(n_train, MAX_REFERENCES)
    )
    return min(val_seconds + per_item * items + END_SECONDS, cfg.max_time / 2)
