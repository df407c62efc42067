"""How models run on a device: precision (autocast), memory format, torch.compile, the allocator.

`compute_settings` turns the user's `precision` and `compile` options into concrete choices for
the device; training (training/step.py) and inference (inference/model.py) both run with them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
from dataclasses import dataclass

import torch
from torch import nn

from aekit.core.errors import AekitError


@dataclass
class ComputeSettings:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None for fp32
    channels_last: bool
    compile: bool
    scaler: torch.amp.GradScaler | None = None  # fp16 only

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move the model to the device in the chosen memory format; compile if asked."""
        return self.compiled(self.place(model))

    def place(self, model: nn.Module) -> nn.Module:
        """The model on the device, in the chosen memory format (the same parameters)."""
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def compiled(self, module: nn.Module) -> nn.Module:
        """`torch.compile(module)` when compile is on; under DDP, `module` is the DDP wrapper."""
        return torch.compile(module) if self.compile else module

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the reduced precision when one is on; in fp32 no autocast context at all.

        Every forward pass (train_step, inference batches) enters this, never `torch.autocast`
        itself: torch before 2.5 refuses `torch.autocast("mps", enabled=False)` ("unsupported
        autocast device_type"), disabled or not, so an fp32 context would crash every step on a Mac."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

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


def make_repeatable(s: ComputeSettings) -> bool:
    """fp32 on CUDA: cuDNN's deterministic algorithms, its autotuner off, and TF32 off for matmuls
    and convolutions (on since Ampere for cuDNN: fp32 convolutions would run with a 10-bit
    mantissa), so that a run repeats bit for bit with the same seed on the same GPU and software,
    and a resumed run ends as one never stopped. Returns True when it set them (for the rest of the
    process). bf16 and fp16 autocast are not bit for bit and are left alone: they are chosen for
    speed; the CPU is deterministic as it is."""
    if s.device.type != "cuda" or s.amp_dtype is not None:
        return False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return True


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


MPS_AUTOCAST_TORCH = (2, 5)  # the first torch whose autocast takes device_type "mps"


def torch_version() -> tuple[int, int]:
    """(major, minor) of the installed torch."""
    m = re.match(r"(\d+)\.(\d+)", torch.__version__)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def check_autocast(device: torch.device, precision: str) -> None:
    """bf16/fp16 on Apple MPS need autocast on MPS, which torch has since 2.5: a one-line error before."""
    if device.type == "mps" and precision != "fp32" and torch_version() < MPS_AUTOCAST_TORCH:
        need = ".".join(map(str, MPS_AUTOCAST_TORCH))
        raise AekitError(
            f"--precision {precision} on Apple MPS needs torch {need} or newer (this is torch {torch.__version__}); "
            f"pass --precision fp32, or upgrade torch (pip install 'torch>={need}')"
        )


NATIVE_BF16 = (8, 0)  # CUDA compute capability with bf16 tensor cores: Ampere (A100, RTX 30xx) and later


def cuda_has_bf16(device: torch.device) -> bool:
    """True on GPUs with native bf16 (compute capability 8.0 and up). `torch.cuda.is_bf16_supported()`
    is also True on older ones (T4, V100, RTX 20xx: 7.x), where bf16 is emulated and slower than fp32.
    `--precision auto` picks fp32 there, not fp16: fp16 would need a gradient scaler and can overflow
    in a user's model, and fp32 gives the exact, repeatable results; `--precision fp16` is the
    user's choice for the speed of those GPUs' fp16 tensor cores."""
    return torch.cuda.get_device_capability(device) >= NATIVE_BF16


def compute_settings(device: torch.device, precision: str = "auto", compile: bool = False) -> ComputeSettings:
    if device.type == "cpu":
        tune_allocator()
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if cuda_has_bf16(device) else "fp32"
        elif device.type == "cpu":
            precision = "bf16" if cpu_has_bf16() else "fp32"
        else:
            precision = "fp32"
    check_autocast(device, precision)
    amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    # channels_last pays off with reduced precision on CPUs (oneDNN) and on tensor-core GPUs
    channels_last = amp is not None and device.type in ("cpu", "cuda")
    scaler = torch.amp.GradScaler(device.type) if amp is torch.float16 else None
    return ComputeSettings(device, amp, channels_last, compile, scaler)


def autocast_on(device_type: str) -> bool:
    """Whether an autocast context is active for `device_type` (torch >= 2.4 takes the device; before,
    cuda and cpu had a function each, and MPS had no autocast)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        if device_type == "cuda":
            return torch.is_autocast_enabled()
        return device_type == "cpu" and torch.is_autocast_cpu_enabled()


def fp32_region(t: torch.Tensor) -> contextlib.AbstractContextManager:
    """A context in which operations on `t`'s device run in fp32: autocast switched off where one is
    on, no context otherwise (torch < 2.5 refuses `torch.autocast("mps", enabled=False)`)."""
    if not autocast_on(t.device.type):
        return contextlib.nullcontext()
    return torch.autocast(t.device.type, enabled=False)
