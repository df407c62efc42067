import sys

import pytest
import torch

import aekit.core.compute as compute


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_cpu_settings_tune_glibc_once_unless_told_not_to(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(compute.ctypes, "CDLL", lambda name: libc)
    monkeypatch.setattr(compute, "_ALLOCATOR_TUNED", False)
    monkeypatch.setenv("AEKIT_MALLOC", "default")
    compute.compute_settings(torch.device("cpu"))
    assert libc.calls == []
    monkeypatch.delenv("AEKIT_MALLOC")
    compute.compute_settings(torch.device("cpu"))
    compute.compute_settings(torch.device("cpu"), "fp32")
    assert libc.calls == [(-3, 32 << 20), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD; once


def test_tuning_survives_a_libc_without_mallopt(monkeypatch):
    monkeypatch.setattr(compute.ctypes, "CDLL", lambda name: object())  # musl: no mallopt
    monkeypatch.setattr(compute, "_ALLOCATOR_TUNED", False)
    monkeypatch.delenv("AEKIT_MALLOC", raising=False)
    compute.tune_allocator()  # no error


def refuse_autocast(*args, **kwargs):
    raise RuntimeError("unsupported autocast device_type 'mps'")  # what torch < 2.5 says on a Mac, even disabled


def test_fp32_enters_no_autocast_and_reduced_precision_does(monkeypatch):
    monkeypatch.setattr(torch, "autocast", refuse_autocast)
    with compute.compute_settings(torch.device("cpu"), "fp32").autocast():
        pass  # fp32: torch.autocast is never called
    with pytest.raises(RuntimeError, match="unsupported autocast"):
        compute.compute_settings(torch.device("cpu"), "bf16").autocast()
    monkeypatch.undo()
    with compute.compute_settings(torch.device("cpu"), "bf16").autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_reduced_precision_on_mps_needs_torch_2_5_and_says_so(monkeypatch):
    from aekit.core.errors import AekitError

    mps = torch.device("mps")
    assert compute.compute_settings(mps, "auto").amp_dtype is None  # auto on MPS: fp32, any torch
    monkeypatch.setattr(torch, "__version__", "2.4.1")
    assert compute.compute_settings(mps, "fp32").amp_dtype is None
    for precision in ("bf16", "fp16"):
        with pytest.raises(AekitError, match=rf"--precision {precision} on Apple MPS needs torch 2\.5 or newer"):
            compute.compute_settings(mps, precision)
    monkeypatch.setattr(torch, "__version__", "2.5.0")
    assert compute.compute_settings(mps, "bf16").amp_dtype is torch.bfloat16


@pytest.mark.parametrize(
    "capability, precision",
    [((7, 0), None), ((7, 5), None), ((8, 0), torch.bfloat16), ((8, 6), torch.bfloat16), ((9, 0), torch.bfloat16)],
)
def test_auto_precision_on_cuda_is_bf16_from_ampere_on_else_fp32(monkeypatch, capability, precision):
    """V100 (7.0) and T4/RTX 20xx (7.5) report bf16 as supported (emulated): auto gives fp32 there."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what those GPUs say
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.amp, "GradScaler", lambda *a, **k: pytest.fail("no scaler outside fp16"))
    s = compute.compute_settings(torch.device("cuda"), "auto")
    assert s.amp_dtype is precision and s.scaler is None
    assert s.channels_last == (precision is not None)
    assert compute.compute_settings(torch.device("cuda"), "bf16").amp_dtype is torch.bfloat16  # asked for: kept


FLAGS = [
    (torch.backends.cudnn, "deterministic", True),
    (torch.backends.cudnn, "benchmark", False),
    (torch.backends.cuda.matmul, "allow_tf32", False),
    (torch.backends.cudnn, "allow_tf32", False),
]


def test_fp32_on_cuda_is_made_bit_for_bit_and_nothing_else_is():
    saved = [getattr(m, n) for m, n, _ in FLAGS]
    try:
        for module, name, want in FLAGS:
            setattr(module, name, not want)  # the opposite
        untouched = [
            compute.ComputeSettings(torch.device("cuda"), torch.bfloat16, True, False),
            compute.ComputeSettings(torch.device("cuda"), torch.float16, True, False),
            compute.ComputeSettings(torch.device("cpu"), None, False, False),
            compute.ComputeSettings(torch.device("mps"), None, False, False),
        ]
        for s in untouched:
            assert not compute.make_repeatable(s)
            assert [getattr(m, n) for m, n, want in FLAGS] == [not want for _, _, want in FLAGS], s
        assert compute.make_repeatable(compute.ComputeSettings(torch.device("cuda:1"), None, False, False))
        assert [getattr(m, n) for m, n, _ in FLAGS] == [want for _, _, want in FLAGS]
    finally:  # torch's global flags as they were (monkeypatch cannot delete-restore cuBLAS's)
        for (module, name, _), value in zip(FLAGS, saved):
            setattr(module, name, value)
