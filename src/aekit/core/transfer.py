"""Host to device: what a batch becomes on its way to the device, and how it gets there (docs/devices.md).

- `host_cast`: Apple MPS has no float64 (and older torch no unsigned types but uint8): such tensors
  become float32 on the host, before the copy, where any device would have converted them to
  float32 right after it anyway.
- `HostGather`: the rows of a batch gathered from the data on the host (in memory or mapped from
  the decode cache) and copied to the device. On CUDA they are gathered into a page-locked (pinned)
  buffer that is reused from batch to batch, so the copy is asynchronous (`non_blocking` only is
  from pinned memory) and the data set is never held twice (pinning the whole array copied it).
- `non_blocking` copies are asked for on CUDA only (`asynchronous`): on MPS a non_blocking copy
  from host memory can silently corrupt the data (pytorch/pytorch#139550, #83015).
"""

from __future__ import annotations

import torch

# what torch on MPS holds (float64 never; uint16/32/64 not before torch 2.x, depending on macOS)
MPS_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.float32)


def asynchronous(device: torch.device) -> bool:
    """Whether a copy to `device` may be `non_blocking`: on CUDA only (MPS corrupts such copies)."""
    return device.type == "cuda"


def host_cast(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` (on the host) in a type `device` holds: float64 becomes float32 before it leaves the host
    (half the copy; MPS refuses it), and on MPS any type it lacks becomes float32. On the CPU, as is."""
    if device.type == "cpu":
        return t
    if t.dtype == torch.float64 or (device.type == "mps" and t.dtype not in MPS_DTYPES):
        return t.float()
    return t


class HostGather:
    """`gather(idx)`: rows `idx` of the host tensor `src` (N, ...) on `device`, equal to
    `src[idx].to(device)`. With `pinned` (default: on CUDA) the rows go through one reusable
    buffer (pinned on CUDA), filled by `torch.index_select(out=)` once the previous batch's
    copy out of it is done, and are copied from it asynchronously."""

    def __init__(self, src: torch.Tensor, device: torch.device, pinned: bool | None = None) -> None:
        self.src, self.device = src, device
        self.pinned = device.type == "cuda" if pinned is None else pinned
        self.buffer: torch.Tensor | None = None
        self.copied = None  # CUDA: the event after the last copy out of the buffer

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        if not self.pinned:
            return host_cast(self.src[idx], self.device).to(self.device, non_blocking=asynchronous(self.device))
        rows = self.rows(len(idx))
        torch.index_select(self.src, 0, idx, out=rows)
        out = host_cast(rows, self.device).to(self.device, non_blocking=asynchronous(self.device), copy=True)
        if self.device.type == "cuda":
            self.copied = torch.cuda.Event()
            self.copied.record()
        return out

    def rows(self, n: int) -> torch.Tensor:
        """The buffer's first n rows, free to be written: a larger one when n rows do not fit (the
        old one is freed by torch once its copy is done)."""
        if self.buffer is None or len(self.buffer) < n:
            shape = (n, *self.src.shape[1:])
            self.buffer = torch.empty(shape, dtype=self.src.dtype, pin_memory=self.device.type == "cuda")
        elif self.copied is not None:
            self.copied.synchronize()  # the last batch has left the buffer
        return self.buffer[:n]
