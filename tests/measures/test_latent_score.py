"""The mse+latent score: its statistics, its formula, and what it catches that the MSE misses."""

import json

import numpy as np
import pytest
import torch

import aekit
from aekit.core.errors import AekitError
from aekit.measures.detection import auroc
from aekit.measures.latent_score import combined


def test_a_typical_item_scores_one_per_term():
    rng = np.random.default_rng(0)
    z = torch.from_numpy(rng.normal(size=(5000, 3)) * [1.0, 5.0, 0.2])
    mse = torch.from_numpy(rng.uniform(0.5, 1.5, size=5000) * 0.01)
    cov = torch.cov(z.T, correction=0)
    stats = {"mean": z.mean(0).tolist(), "precision": torch.linalg.inv(cov).tolist(), "mse_scale": float(mse.mean())}
    score = combined(mse, z, stats)
    assert float(score.mean()) == pytest.approx(2.0, abs=1e-6)  # 1 (MSE over its mean) + 1 (Mahalanobis / dims)
    # the distance is in units of each direction's spread: 5 along the wide axis is as far as 1 along the narrow
    far = combined(torch.full((2,), 0.01), torch.tensor([[0.0, 25.0, 0.0], [0.0, 0.0, 1.0]]), stats)
    assert float(far[0] - far[1]) == pytest.approx(0.0, abs=0.05 * float(far[0]))


def test_catches_rows_far_out_along_the_manifold_that_the_mse_misses(tmp_path):
    """Rows that lie on the data's plane but far out on it are reconstructed well (low MSE), and
    their codes lie far from the training codes: mse+latent flags them."""
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(2, 8))

    def rows(n, spread):
        return (rng.normal(size=(n, 2)) * spread @ mixing + 0.05 * rng.normal(size=(n, 8))).astype(np.float32)

    train, normal, far = rows(600, 1.0), rows(100, 1.0), rows(100, 6.0)
    run = aekit.train(train, out=tmp_path / "run", max_steps=300, verbose=False, cache_dir=None, seed=0)
    model = aekit.load(run.path)
    test, labels = np.concatenate([normal, far]), np.r_[np.zeros(100), np.ones(100)]
    by_mse = auroc(labels, model.score(test, metric="mse"))
    by_both = auroc(labels, model.score(test, metric="mse+latent"))
    assert by_both > 0.95 and by_both > by_mse + 0.1, (by_mse, by_both)
    assert model.score_metric == "ensemble"  # the default score, which has the latent distance as a part
    assert auroc(labels, model.score(test)) > by_mse + 0.1
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["latent_score"]["n"] > 500  # the training rows (90% of 600)
    rule = meta["threshold"]["by_metric"]["mse+latent"]  # beside the default score's threshold
    assert rule["metric"] == "mse+latent" and rule["value"] > 1.0 and "latent distance" in rule["explanation"]
    assert set(meta["threshold"]["by_metric"]) == {"mse", "mae", "mse+latent"}
    assert "mse_plus_latent" in (run.path / "validation_scores.csv").read_text().splitlines()[0]


def test_runs_without_statistics_say_how_to_score(tmp_path):
    rng = np.random.default_rng(1)
    run = aekit.train(rng.normal(size=(80, 6)).astype(np.float32), out=tmp_path / "run", epochs=1, verbose=False)
    meta_path = run.path / "model.json"
    meta = json.loads(meta_path.read_text())
    del meta["latent_score"], meta["ensemble"]  # as an older aekit wrote it
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(AekitError, match="--metric mse"):
        aekit.load(run.path).score(np.zeros((2, 6), np.float32), metric="mse+latent")
    with pytest.raises(AekitError, match="--metric mse"):
        aekit.load(run.path).score(np.zeros((2, 6), np.float32), metric="ensemble")
