"""How training steps run on a device: precision (autocast), memory format, torch.compile.

`compute_settings` turns the user's `precision` and `compile` options into concrete choices for
the device; `train_step` runs one optimisation step with them. The trainer and the throughput
benchmark's compute-limit measurement share this one step.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from dataclasses import dataclass

import torch
from torch import nn

from .models.base import loss_fn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class ComputeSettings:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None for fp32
    channels_last: bool
    compile: bool
    scaler: torch.amp.GradScaler | None = None  # fp16 only

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move the model to the device in the chosen memory format; compile if asked."""
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return torch.compile(model) if self.compile else model

    def describe(self) -> str:
        precision = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[self.amp_dtype]
        parts = [str(self.device), precision]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append("torch.compile")
        return ", ".join(parts)


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


_ALLOCATOR_TUNED = False


def tune_allocator() -> None:
    """Let glibc keep the memory of freed tensors for the next batch (Linux, once per process).

    By default glibc serves blocks over a few MiB (a batch of images, its activations) with mmap
    and hands freed memory back to the OS, so every batch page-faults its memory in again; CPU
    inference then spends about half its time on page faults. Blocks up to 32 MiB now come from
    the heap, which keeps up to 1 GiB of freed memory (measured: a 256-image encoder batch in
    8.5 ms instead of 16.5 ms). AEKIT_MALLOC=default leaves malloc as it is."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or not sys.platform.startswith("linux") or os.environ.get("AEKIT_MALLOC") == "default":
        return
    _ALLOCATOR_TUNED = True
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (32 MiB, glibc's maximum)
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        pass


def compute_settings(device: torch.device, precision: str = "auto", compile: bool = False) -> ComputeSettings:
    if device.type == "cpu":
        tune_allocator()
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        elif device.type == "cpu":
            precision = "bf16" if cpu_has_bf16() else "fp32"
        else:
            precision = "fp32"
    amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    # channels_last pays off with reduced precision on CPUs (oneDNN) and on tensor-core GPUs
    channels_last = amp is not None and device.type in ("cpu", "cuda")
    scaler = torch.amp.GradScaler(device.type) if amp is torch.float16 else None
    return ComputeSettings(device, amp, channels_last, compile, scaler)


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
) -> dict[str, torch.Tensor]:
    """One optimisation step on a normalised batch (B, C, H, W) whose reconstruction target is
    `target` (default the batch itself); returns the detached loss terms ("loss" and the model's
    others). `mask` (1 valid, 0 ignored) and `epoch` (for schedules such as KL warm-up) go to the
    model's loss. A step whose loss or gradients are not finite is skipped (the weights are left
    as they were) and reported as `terms["skipped"] = True`."""
    if s.channels_last:
        xn = xn.contiguous(memory_format=torch.channels_last)
    with torch.autocast(s.device.type, dtype=s.amp_dtype or torch.float32, enabled=s.amp_dtype is not None):
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
        if finite:
            opt.step()
    out = {k: v.detach() for k, v in terms.items()}
    if not finite:
        opt.zero_grad(set_to_none=True)
        out["skipped"] = True
    return out
