"""state.pt: fp16's gradient scaler is saved and restored, and the file still loads with
torch.load(weights_only=True)."""

from __future__ import annotations

import pytest
import torch

from aekit.training.state import Loop, load_state, save_state


def fp16_setup():
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, opt, torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=3)


def test_the_fp16_scaler_round_trips_through_state_pt(tmp_path):
    model, opt, scaler = fp16_setup()
    for step in range(4):  # a few steps: the scale moves (it grows every 3 finite steps; an overflow halves it)
        opt.zero_grad()
        loss = model(torch.randn(8, 4)).square().mean() * (float("inf") if step == 1 else 1.0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    saved = scaler.state_dict()
    assert saved["scale"] != 2.0**16 and saved["_growth_tracker"] > 0  # not the initial state
    loop = Loop(torch.Generator().manual_seed(0), {"val_loss": 1.0, "epoch": 0, "mse": 1.0}, model.state_dict())
    save_state(tmp_path, loop.state(model, opt, 1.5, torch.device("cpu"), scaler))
    state = load_state(tmp_path)  # torch.load(weights_only=True): numbers and tensors only
    assert state["scaler"] == saved
    model2, opt2, fresh = fp16_setup()
    Loop.restore(state, model2, opt2, torch.device("cpu"), fresh)
    assert fresh.get_scale() == saved["scale"] and fresh.state_dict() == saved
    weights_only = torch.load(tmp_path / "state.pt", weights_only=True)
    assert weights_only["scaler"]["scale"] == pytest.approx(saved["scale"])


def test_fp32_states_have_no_scaler_and_old_states_resume_with_a_fresh_one(tmp_path):
    model, opt, scaler = fp16_setup()
    loop = Loop(torch.Generator(), {"val_loss": 1.0, "epoch": 0, "mse": 1.0}, model.state_dict())
    state = loop.state(model, opt, 0.0, torch.device("cpu"))
    assert "scaler" not in state
    Loop.restore(state, model, opt, torch.device("cpu"), scaler)  # a state.pt of an older aekit
    assert scaler.get_scale() == 2.0**16
