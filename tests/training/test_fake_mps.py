"""Whole runs on the Apple MPS stand-in (tests/standins.py): training, a mid-epoch checkpoint and
resume, the report and scoring, with tensors on "mps" that refuse float64, uint16, antialiasing
and .numpy() as MPS does. The CI machine has no Mac; this is the nearest it gets."""

from __future__ import annotations

import numpy as np
import pytest

import aekit
from tests.standins import MPS, fake_mps  # noqa: F401 (fake_mps: a fixture)


@pytest.mark.usefixtures("fake_mps")
def test_an_image_run_trains_resumes_and_scores_on_the_mps_standin(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (40, 16, 16), dtype=np.uint16) * 250  # 16-bit images
    options = dict(batch_size=8, latent_dim=4, width=8, augment="flip", cache_dir=None, verbose=False)
    run = aekit.train(x, out=tmp_path / "run", epochs=1, checkpoint_every="2", **options)
    assert (run.path / "report.html").is_file()
    assert (run.summary["device"], run.summary["compute"]) == ("mps", "mps, fp32")  # auto precision on MPS: fp32
    again = aekit.train(x, resume=run.path, epochs=2)
    assert again.summary["epochs_run"] == 2
    model = aekit.load(run.path)
    assert model.device == MPS
    scores = model.score(x[:5])
    assert scores.shape == (5,) and np.isfinite(scores).all()
    assert model.reconstruct(x[:2, :12, :10]).shape == (2, 16, 16)  # another size: resized


@pytest.mark.usefixtures("fake_mps")
def test_a_table_run_scores_on_the_mps_standin(tmp_path):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(120, 2)) @ rng.normal(size=(2, 6))  # float64 rows
    run = aekit.train(rows, out=tmp_path / "run", max_steps=40, cache_dir=None, verbose=False)
    model = aekit.load(run.path)
    for metric in ("mse", "mse+latent", "ensemble"):
        assert np.isfinite(model.score(rows[:7], metric=metric)).all()
    assert model.reconstruct(rows[:3]).dtype == np.float64
