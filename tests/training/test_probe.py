"""The --precision auto probe: each precision keeps its fastest step, so interference picks nothing."""

import time

import pytest
import torch
from torch import nn

from aekit.training import probe


def fake_steps(monkeypatch, cost: dict[str, float], busy_calls: set[int]):
    """train_step that sleeps cost[precision] s, plus 50 ms on the calls numbered in busy_calls."""
    calls = []

    def step(model, opt, xn, compute):
        precision = "fp32" if compute.amp_dtype is None else "bf16"
        calls.append(precision)
        time.sleep(cost[precision] + (0.05 if len(calls) - 1 in busy_calls else 0.0))

    monkeypatch.setattr(probe, "train_step", step)
    return calls


@pytest.mark.parametrize("fast", ["fp32", "bf16"])
def test_probe_picks_the_faster_despite_interference(monkeypatch, fast):
    slow = {"fp32": "bf16", "bf16": "fp32"}[fast]
    cost = {fast: 0.004, slow: 0.012}
    # calls: warm-up fp32, warm-up bf16, then rounds (fp32, bf16) ...: the fast one is disturbed in
    # rounds 1 and 3, the slow one in none; without the minimum it would look slower
    order = ["fp32", "bf16"]
    busy = {2 + 2 * r + order.index(fast) for r in (0, 2)}
    calls = fake_steps(monkeypatch, cost, busy)
    choice, seconds = probe.fastest_precision(nn.Linear(4, 4), torch.zeros(2, 4), torch.device("cpu"))
    assert choice == ("bf16" if fast == "bf16" else "fp32")
    assert calls[:2] == ["fp32", "bf16"] and calls[2:6] == ["fp32", "bf16", "fp32", "bf16"]  # turns
    assert len(calls) == 2 + 2 * probe.PROBE_ROUNDS
    assert seconds[fast] < 0.008 and seconds[slow] >= 0.012


def test_probe_keeps_fp32_when_bf16_is_not_clearly_faster(monkeypatch):
    fake_steps(monkeypatch, {"fp32": 0.010, "bf16": 0.009}, set())
    choice, _ = probe.fastest_precision(nn.Linear(4, 4), torch.zeros(2, 4), torch.device("cpu"))
    assert choice == "fp32"  # 0.9x is within MARGIN


def test_probe_stops_adding_rounds_after_its_time(monkeypatch):
    monkeypatch.setattr(probe, "PROBE_SECONDS", 0.0)
    calls = fake_steps(monkeypatch, {"fp32": 0.001, "bf16": 0.001}, set())
    probe.fastest_precision(nn.Linear(4, 4), torch.zeros(2, 4), torch.device("cpu"))
    assert len(calls) == 4  # the warm-ups and one round: a big model is not timed for long
