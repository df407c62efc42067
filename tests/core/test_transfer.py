"""core/transfer.py: batches on their way to the device. The pinned path needs CUDA to pin; here its
buffer logic runs with plain memory (pinned=True on the CPU), and its CUDA calls are checked with
torch.empty and the copy event stood in for."""

from __future__ import annotations

import pytest
import torch

from aekit.core.transfer import HostGather, host_cast
from tests.standins import MPS, OnMPS, fake_mps  # noqa: F401 (fake_mps: a fixture)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def data(dtype=torch.uint8) -> torch.Tensor:
    return torch.randint(0, 250, (50, 2, 4, 4), generator=torch.Generator().manual_seed(0)).to(dtype)


def test_the_plain_path_is_indexing():
    src = data()
    gather = HostGather(src, CPU)
    assert not gather.pinned and gather.buffer is None
    idx = torch.tensor([7, 3, 3, 40])
    out = gather(idx)
    assert torch.equal(out, src[idx]) and out.dtype == torch.uint8
    out[:] = 0  # the rows are a copy (mirroring flips them in place)
    assert src[7].any()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.float32, torch.bool])
def test_the_buffered_path_gives_the_same_rows_through_one_reused_buffer(dtype):
    src = data(dtype)
    gather = HostGather(src, CPU, pinned=True)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    batches = [order[i : i + 16] for i in range(0, 50, 16)]  # 16, 16, 16, then 2
    outs = [gather(b) for b in batches]
    buffer = gather.buffer
    assert buffer.shape == (16, 2, 4, 4) and buffer.dtype == dtype
    for b, out in zip(batches, outs):  # each batch intact: none was overwritten by the next
        assert torch.equal(out, src[b]) and out.data_ptr() != buffer.data_ptr()
    gather(order[:5])
    assert gather.buffer is buffer  # smaller batches reuse it
    assert torch.equal(gather(order[:20]), src[order[:20]]) and len(gather.buffer) == 20  # a larger one grows it


def test_on_cuda_the_buffer_is_pinned_and_waits_for_the_last_copy(monkeypatch):
    made, real_empty = [], torch.empty

    def empty(*shape, **kw):
        made.append(kw.pop("pin_memory"))
        return real_empty(*shape, **kw)

    class Copy:  # torch.cuda.Event recorded after the last copy out of the buffer
        waited = 0

        def synchronize(self):
            Copy.waited += 1

    monkeypatch.setattr(torch, "empty", empty)
    gather = HostGather(data(), CUDA)
    assert gather.pinned
    rows = gather.rows(16)
    assert made == [True] and rows.shape == (16, 2, 4, 4)
    gather.copied = Copy()
    assert gather.rows(8).data_ptr() == rows.data_ptr() and Copy.waited == 1  # reused once the copy is done
    gather.rows(32)
    assert made == [True, True] and Copy.waited == 1  # a new buffer needs no wait


def test_host_cast_makes_what_the_device_holds():
    f64, u16, u8 = (
        torch.zeros(2, dtype=torch.float64),
        torch.zeros(2, dtype=torch.uint16),
        torch.zeros(2, dtype=torch.uint8),
    )
    assert host_cast(f64, CPU) is f64 and host_cast(u16, CPU) is u16  # the CPU takes anything
    assert host_cast(f64, CUDA).dtype == torch.float32 and host_cast(u16, CUDA) is u16
    assert host_cast(f64, MPS).dtype == host_cast(u16, MPS).dtype == torch.float32 and host_cast(u8, MPS) is u8


@pytest.mark.usefixtures("fake_mps")
def test_uint16_data_reach_the_mps_standin_as_float32():
    src = data(torch.uint16)
    out = HostGather(src, MPS)(torch.tensor([1, 2]))
    assert isinstance(out, OnMPS) and out.dtype == torch.float32
    assert torch.equal(out.cpu(), src[[1, 2]].float())
