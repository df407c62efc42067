"""The training budget decided for the data (training/defaults.py) and how the loop keeps it."""

import json

import numpy as np
import pytest

import aekit
from aekit.config.train import BUDGET_SECONDS, BUDGET_STEPS, TrainConfig
from aekit.training.defaults import (
    END_SECONDS,
    FINAL_PASS_COST,
    LATENT_COST,
    REFERENCE_COST,
    budget,
    budget_spent,
    describe_budget,
    end_reserve,
    total_steps,
)
from aekit.training.step import lr_at
from tests.conftest import smooth_images


def test_no_limits_given_means_the_step_and_time_budget():
    b = budget(TrainConfig(), n_train=1800, tabular=False)  # 29 steps an epoch at batch 64
    assert b == {"epochs": 104, "max_steps": BUDGET_STEPS, "max_time": BUDGET_SECONDS}
    big = budget(TrainConfig(), n_train=60000, tabular=False)  # 938 steps an epoch: the budget ends in epoch 4
    assert big["epochs"] == 4 and total_steps(TrainConfig(**big), 60000) == BUDGET_STEPS
    text = describe_budget(TrainConfig(**big, patience=10), 60000)
    assert text.startswith("3000 steps (3.2 epochs of 938 steps), at most 10 min") and "10 epochs" in text


def test_given_limits_are_kept():
    assert budget(TrainConfig(epochs=5), 1800, False) == {"epochs": 5, "max_steps": None, "max_time": None}
    assert budget(TrainConfig(max_steps=100), 1800, False)["epochs"] == 4  # ceil(100 / 29)
    only_time = budget(TrainConfig(max_time=60), 1800, False)
    assert only_time == {"epochs": 30, "max_steps": None, "max_time": 60}
    assert total_steps(TrainConfig(epochs=5, max_steps=100), 1800) == 100
    assert total_steps(TrainConfig(epochs=2, max_steps=100), 1800) == 58


def test_budget_spent_follows_steps_or_time_whichever_is_further():
    cfg = TrainConfig(max_time=100)
    assert budget_spent(cfg, 30, 300, elapsed=5) == pytest.approx(0.1)
    assert budget_spent(cfg, 30, 300, elapsed=50) == pytest.approx(0.5)
    assert budget_spent(cfg, 30, 300, elapsed=500) == 1.0
    assert budget_spent(TrainConfig(), 300, 300, elapsed=1e6) == 1.0
    assert budget_spent(cfg, 30, 300, elapsed=40, reserve=20) == pytest.approx(0.5)  # 40 s of the 80 s that train


def test_a_time_budget_keeps_time_for_the_end_of_the_run():
    """What end_reserve keeps: the validation pass, the end's pass over the validation items, the
    training items that the latent statistics (at most 20000) and the references (at most 2048)
    read, each at its cost relative to validation, and END_SECONDS; never more than half the budget."""
    cfg = TrainConfig(max_time=600)
    assert end_reserve(TrainConfig(epochs=3), 1000, 100, 1.0) == 0.0  # no time budget, nothing kept
    # 1000 training items, 100 validation items in 1 s (0.01 s an item)
    want = 1 + 0.01 * (FINAL_PASS_COST * 100 + LATENT_COST * 1000 + REFERENCE_COST * 1000) + END_SECONDS
    assert end_reserve(cfg, 1000, 100, 1.0) == pytest.approx(want)
    # 100000 training items: the statistics read 20000 of them, the references 2048
    want = 2 + 0.002 * (FINAL_PASS_COST * 1000 + LATENT_COST * 20000 + REFERENCE_COST * 2048) + END_SECONDS
    assert end_reserve(TrainConfig(max_time=6000), 100_000, 1000, 2.0) == pytest.approx(want)
    assert end_reserve(TrainConfig(max_time=10), 100_000, 1000, 2.0) == 5.0  # half the budget at most


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_patience_must_be_a_whole_number(bad):
    with pytest.raises(aekit.core.errors.AekitError, match="patience"):
        TrainConfig(patience=bad)


def test_max_steps_stops_training_and_the_schedule_ends_there(tmp_path):
    x = smooth_images(64, 12, 12, 1)[..., 0]
    run = aekit.train(x, max_steps=10, batch_size=8, width=8, latent_dim=4, out=tmp_path / "r", verbose=False)
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["stopped"] == "completed the budget of 10 steps" and s["epochs_run"] == 2  # 7 steps an epoch
    rows = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    last_lr = float(rows[-1].split(",")[rows[0].split(",").index("lr")])
    assert last_lr == pytest.approx(lr_at(9 / 10, 1e-3))  # the decay ends at step 10, not at epoch 2's end (14)
    assert "max_steps: 10" in (tmp_path / "r" / "config.yaml").read_text() and run.path == tmp_path / "r"


def test_patience_stops_a_run_that_no_longer_improves(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (48, 8, 8), dtype=np.uint8)  # noise: nothing to learn
    run = aekit.train(x, epochs=40, patience=3, batch_size=8, width=8, latent_dim=2, verbose=False,
                      out=tmp_path / "r", lr=3e-3)  # fmt: skip
    s = run.summary
    assert s["stopped"].startswith("stopped early: no better validation loss in 3 epochs")
    assert s["epochs_run"] == s["best_epoch"] + 3 < 40


@pytest.mark.parametrize(("shape", "latent"), [((1, 8, 8), 16), ((3, 8, 8), 48), ((1, 28, 28), 64), ((3, 64, 64), 64)])
def test_image_latent_never_exceeds_a_quarter_of_the_values(shape, latent):
    """64 numbers for an 8x8 gray image would be no bottleneck at all (the model copies its input)."""
    from types import SimpleNamespace

    from aekit.training.defaults import resolve_for_data

    data = SimpleNamespace(columns=None, shape=shape, array=np.zeros((10, *shape), np.uint8), scale=255.0, mask=None)
    assert resolve_for_data(TrainConfig(), data, n_train=100).latent_dim == latent
    assert resolve_for_data(TrainConfig(latent_dim=5), data, n_train=100).latent_dim == 5


def test_patience_waits_a_twentieth_of_the_budget_when_epochs_are_a_step_or_two():
    """A one-class training set of 120 images is 2 steps an epoch: 10 epochs without improvement
    were 20 steps, inside the learning-rate warm-up, and runs stopped at their PCA start."""
    from types import SimpleNamespace

    from aekit.training.fit import plateaued

    cfg = TrainConfig(patience=10)
    loop = SimpleNamespace(step=20, best={"epoch": 0, "step": 0})
    assert not plateaued(loop, cfg, epoch=10, steps=3000)  # 20 steps of 3000: too early
    loop.step = 150
    assert plateaued(loop, cfg, epoch=75, steps=3000)  # 150 steps: a twentieth
    assert not plateaued(loop, TrainConfig(patience=0), epoch=75, steps=3000)
    big = SimpleNamespace(step=4000, best={"epoch": 2, "step": 1876})  # epochs of 938 steps: epochs decide
    assert plateaued(big, cfg, epoch=12, steps=12000) and not plateaued(big, cfg, epoch=11, steps=12000)
