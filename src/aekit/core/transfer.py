"""Host to device: what a batch becomes on its way to the device (docs/devices.md).

Apple MPS has no float64 (and older torch no unsigned types but uint8): `host_cast` turns such
tensors into float32 on the host, before the copy, where any device would have converted them
to float32 right after it anyway.
"""

from __future__ import annotations

import torch

# what torch on MPS holds (float64 never; uint16/32/64 not before torch 2.x, depending on macOS)
MPS_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.float32)


def host_cast(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` (on the host) in a type `device` holds: float64 becomes float32 before it leaves the host
    (half the copy; MPS refuses it), and on MPS any type it lacks becomes float32. On the CPU, as is."""
    if device.type == "cpu":
        return t
    if t.dtype == torch.float64 or (device.type == "mps" and t.dtype not in MPS_DTYPES):
        return t.float()
    return t
