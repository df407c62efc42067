"""The learning-rate schedule, the optimizer's parameter groups and the finite-weights guard."""

import math

import pytest
import torch

from aekit.models import create_model
from aekit.training.step import WARMUP, lr_at, param_groups, weights_finite


def test_schedule_warms_up_linearly_then_decays_to_zero():
    peak = 1e-3
    assert lr_at(0.0, peak) == pytest.approx(0.1 * peak)  # starts at a tenth of the peak
    assert lr_at(WARMUP / 2, peak) == pytest.approx(0.55 * peak)
    assert lr_at(WARMUP, peak) == pytest.approx(peak)
    mid = WARMUP + (1 - WARMUP) / 2
    assert lr_at(mid, peak) == pytest.approx(0.5 * peak)  # half-way through the cosine
    assert lr_at(1.0, peak) == pytest.approx(0.0, abs=1e-15)
    assert lr_at(1.7, peak) == pytest.approx(0.0, abs=1e-15)  # past the budget: stays at zero


def test_schedule_never_increases_after_warm_up():
    values = [lr_at(p / 1000, 1.0) for p in range(int(WARMUP * 1000) + 1, 1001)]
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:]))
    warm = [lr_at(p / 1000, 1.0) for p in range(int(WARMUP * 1000))]
    assert all(b > a for a, b in zip(warm, warm[1:]))


def test_param_groups_follow_the_models_lr_scales():
    model = create_model("conv", in_shape=(1, 16, 16), latent_dim=4, depth=2, width=8)
    scales = model.lr_scales()
    assert scales, "the conv model slows its PCA-initialised linear path down"
    groups = param_groups(model)
    by_scale = {g["lr_scale"]: g["params"] for g in groups}
    assert set(by_scale) == {1.0, *scales.values()}
    named = dict(model.named_parameters())
    slow = {id(p) for n, p in named.items() if any(n.startswith(prefix) for prefix in scales)}
    for factor, params in by_scale.items():
        assert all((id(p) in slow) == (factor != 1.0) for p in params)
    assert sum(len(ps) for ps in by_scale.values()) == len(named)  # every parameter exactly once


def test_a_model_without_scales_has_one_group():
    model = create_model("basic", in_shape=(1, 16, 16), latent_dim=4, depth=2)
    groups = param_groups(model)
    assert len(groups) == 1 and groups[0]["lr_scale"] == 1.0


def test_weights_finite_sees_nan_and_inf():
    model = torch.nn.Linear(3, 2)
    assert weights_finite(model)
    with torch.no_grad():
        model.weight[0, 0] = math.nan
    assert not weights_finite(model)
    with torch.no_grad():
        model.weight[0, 0] = math.inf
    assert not weights_finite(model)


def test_a_step_is_skipped_when_another_process_says_so():
    """Under torchrun the skip decision is agreed by all ranks: a rank whose own loss is finite
    still skips the step when another's was not, so the weights never diverge between ranks."""
    from aekit.core.compute import compute_settings
    from aekit.models import create_model
    from aekit.training.step import make_optimizer, train_step

    torch.manual_seed(0)
    model = create_model("basic", in_shape=(1, 8, 8), latent_dim=2)
    opt = make_optimizer(model.parameters(), 1e-2, 0.0)
    settings = compute_settings(torch.device("cpu"), "fp32")
    x = torch.randn(4, 1, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    out = train_step(model, opt, x, settings, agree=lambda finite: seen.append(finite) or False)
    assert seen == [True] and out["skipped"] is True
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    out = train_step(model, opt, x, settings, agree=lambda finite: finite)
    assert "skipped" not in out and not all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_an_fp32_step_never_enters_autocast(monkeypatch):
    """torch < 2.5 raises on torch.autocast("mps", enabled=False): fp32 steps must not call it."""
    from aekit.core.compute import compute_settings
    from aekit.training.step import make_optimizer, train_step

    def refuse(*a, **k):
        raise RuntimeError("unsupported autocast device_type 'mps'")

    monkeypatch.setattr(torch, "autocast", refuse)
    model = create_model("conv", in_shape=(1, 16, 16), latent_dim=4, depth=2, width=8)
    opt = make_optimizer(model.parameters(), 1e-3, 0.0)
    before = [p.detach().clone() for p in model.parameters()]
    terms = train_step(model, opt, torch.randn(4, 1, 16, 16), compute_settings(torch.device("cpu"), "fp32"))
    assert "skipped" not in terms and math.isfinite(float(terms["loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # it stepped
