"""One optimisation step and what drives it: the optimizer, its parameter groups and the learning-rate schedule.

The trainer and the throughput benchmark's compute-limit measurement share this one step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from aekit.core.compute import ComputeSettings
from aekit.models.base import loss_fn


def make_optimizer(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with its fused kernel where this torch has one for the parameters' device (CPU since
    torch 2.4, CUDA): one kernel for all parameters instead of a Python loop over them, 2.5 ms ->
    0.2 ms a step for the `basic` model on a 2-core CPU; the per-parameter loop otherwise."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    xn: torch.Tensor,
    s: ComputeSettings,
    *,
    target: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    epoch: float = math.inf,
    agree: Callable[[bool], bool] | None = None,
) -> dict[str, torch.Tensor]:
    """One optimisation step on a normalised batch (B, C, H, W) whose reconstruction target is
    `target` (default the batch itself); returns the detached loss terms ("loss" and the model's
    others). `mask` (1 valid, 0 ignored) and `epoch` (for schedules such as KL warm-up) go to the
    model's loss. A step whose loss or gradients are not finite is skipped (the weights are left
    as they were) and reported as `terms["skipped"] = True`. `agree(finite) -> bool` makes that
    decision common to several processes (under torchrun: finite on every rank), so that no rank
    steps or stops on its own."""
    if s.channels_last:
        xn = xn.contiguous(memory_format=torch.channels_last)
    with s.autocast():  # fp32: no autocast context (compute.py)
        out = model(xn)
    # the loss is computed in fp32 whatever the autocast dtype
    terms = loss_fn(model)(out, xn if target is None else target, mask, epoch)
    loss = terms["loss"]
    opt.zero_grad(set_to_none=True)
    if s.scaler is not None:  # fp16: the scaler skips steps with overflowing gradients itself
        finite = bool(torch.isfinite(loss))
        s.scaler.scale(loss).backward()
        s.scaler.step(opt)
        s.scaler.update()
    else:
        loss.backward()
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, math.inf) if params else torch.zeros(())
        finite = bool(torch.isfinite(loss) & torch.isfinite(grad_norm))  # one host sync per step
        if agree is not None:
            finite = agree(finite)
        if finite:
            opt.step()
    out = {k: v.detach() for k, v in terms.items()}
    if not finite:
        opt.zero_grad(set_to_none=True)
        out["skipped"] = True
    return out


WARMUP = 0.03  # fraction of training spent warming the learning rate up


def lr_at(progress: float, peak: float) -> float:
    """Linear warm-up, then cosine decay to zero; `progress` in [0, 1] (steps or time budget)."""
    if progress < WARMUP:
        return peak * (0.1 + 0.9 * progress / WARMUP)
    t = min(1.0, (progress - WARMUP) / (1 - WARMUP))
    return peak * 0.5 * (1 + math.cos(math.pi * t))


def param_groups(model: torch.nn.Module) -> list[dict]:
    """Optimizer groups; a model may slow some parameters down with `lr_scales()` {prefix: factor}."""
    scales = model.lr_scales()
    groups: dict[float, list] = {}
    for name, p in model.named_parameters():
        factor = next((f for prefix, f in scales.items() if name.startswith(prefix)), 1.0)
        groups.setdefault(factor, []).append(p)
    return [{"params": ps, "lr_scale": f} for f, ps in groups.items()]


def weights_finite(model: torch.nn.Module) -> bool:
    """No NaN or Inf in any parameter: such weights are never kept as the best model."""
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())
