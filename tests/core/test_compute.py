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
