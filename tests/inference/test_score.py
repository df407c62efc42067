"""Anomaly scores: the threshold fixed at training time, its overrides, and `aekit score`."""

import csv
import json

import numpy as np
import pytest

import aekit
from aekit.cli.main import main
from tests.conftest import FAST


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def run(rgb_folder, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(rgb_folder), *FAST, "--val-fraction", "0.2", "--out", str(out)]) == 0
    return out


def test_digits_of_an_unseen_class_are_flagged(tmp_path):
    digits = pytest.importorskip("sklearn.datasets").load_digits()
    x = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # 8x8 gray, 0-16 -> 0-255
    seen = np.isin(digits.target, (0, 1, 2))
    rng = np.random.default_rng(0)
    seen_idx = rng.permutation(np.flatnonzero(seen))
    train, held_out = seen_idx[:450], seen_idx[450:]
    r = aekit.train(x[train], epochs=20, latent_dim=8, verbose=False, out=tmp_path / "run")
    model = aekit.load(r.path)
    assert model.threshold == pytest.approx(r.summary["threshold"]["value"])
    unseen = (model.score(x[~seen]) > model.threshold).mean()
    familiar = (model.score(x[held_out]) > model.threshold).mean()
    assert unseen > 0.6, unseen  # most digits 3-9 are anomalies to a model of 0-2
    assert familiar < 0.15, familiar  # new digits 0-2 mostly are not


def test_threshold_is_the_percentile_of_the_stored_validation_errors(run):
    meta = json.loads((run / "model.json").read_text())
    t = meta["threshold"]
    rows = read_csv(run / "validation_scores.csv")
    summary = json.loads((run / "summary.json").read_text())
    assert len(rows) == summary["n_val"] == t["n"] == 4
    errors = np.array([float(r["ensemble"]) for r in rows])  # the default score
    assert t["metric"] == "ensemble" and t["rule"] == "percentile" and t["percentile"] == 99.0
    assert t["value"] == pytest.approx(np.percentile(errors, 99), rel=1e-5)
    assert "99th percentile" in t["explanation"] and f"{t['value']:.6g}" in t["explanation"]
    assert set(t["by_metric"]) == {"mse", "mae", "ssim", "mse+latent"}
    mse = np.array([float(r["score"]) for r in rows])
    assert t["by_metric"]["mse"]["value"] == pytest.approx(np.percentile(mse, 99), rel=1e-5)
    ssim = np.array([float(r["one_minus_ssim"]) for r in rows])
    assert t["by_metric"]["ssim"]["value"] == pytest.approx(np.percentile(ssim, 99), rel=1e-5)


def test_score_is_the_reconstruction_error_of_each_item(run, rgb_folder):
    model = aekit.load(run)
    x = np.random.default_rng(0).integers(0, 256, (5, 20, 24, 3), dtype=np.uint8)
    recon = model.reconstruct(x.astype(np.float32))  # float in: no rounding
    expected = ((np.clip(recon, 0, 255) / 255.0 - x / 255.0) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(model.score(x, metric="mse"), expected, rtol=1e-4)
    mae = model.score(x, metric="mae")
    np.testing.assert_allclose(mae, np.abs(np.clip(recon, 0, 255) / 255.0 - x / 255.0).mean(axis=(1, 2, 3)), rtol=1e-4)
    ssim = model.score(x, metric="ssim")
    assert ssim.shape == (5,) and np.all((ssim >= 0) & (ssim <= 2))


def test_score_command_writes_sorted_scores_grid_and_summary(run, rgb_folder, tmp_path, capsys):
    out = tmp_path / "res" / "scores.csv"
    assert main(["score", str(run), str(rgb_folder), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "threshold: an item is anomalous when" in err
    rows = read_csv(out)
    assert len(rows) == 20 and list(rows[0]) == ["path", "score", "is_anomaly", "rank"]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert {r["path"] for r in rows} == {f"{d}/img{i:03d}.png" for d in "ab" for i in range(10)}
    summary = json.loads((tmp_path / "res" / "scores_summary.json").read_text())
    value = json.loads((run / "model.json").read_text())["threshold"]["value"]
    assert summary["threshold"]["value"] == pytest.approx(value)
    assert [r["is_anomaly"] == "true" for r in rows] == [s > value for s in scores]
    assert summary["n_anomalies"] == sum(s > value for s in scores)
    assert (tmp_path / "res" / "scores_worst.png").stat().st_size > 0
    # the same numbers from the Python API, in the data's order
    res = aekit.score(run, rgb_folder)
    by_path = dict(zip(res.ids, res.scores))
    for r in rows:
        assert float(r["score"]) == pytest.approx(by_path[r["path"]], rel=1e-5)


def test_threshold_overrides(run, rgb_folder, tmp_path):
    def flagged(*flags):
        out = tmp_path / "s.csv"
        assert main(["score", str(run), str(rgb_folder), "-o", str(out), "--quiet", *flags]) == 0
        summary = json.loads((tmp_path / "s_summary.json").read_text())
        return sum(r["is_anomaly"] == "true" for r in read_csv(out)), summary["threshold"]

    n, rule = flagged("--threshold=-1000000")  # the ensemble's robust z-scores go below 0
    assert n == 20 and rule["rule"] == "given"
    n, rule = flagged("--contamination", "0.25")
    assert n == 5 and rule["rule"] == "contamination"
    n, rule = flagged("--threshold-percentile", "50")
    val = [float(r["ensemble"]) for r in read_csv(run / "validation_scores.csv")]  # the default score's
    assert rule["value"] == pytest.approx(np.percentile(val, 50), rel=1e-5)
    n, rule = flagged("--metric", "ssim")
    assert rule["metric"] == "ssim" and "1 - SSIM" in rule["explanation"]


def test_training_with_contamination_stores_that_rule(rgb_folder, tmp_path):
    r = aekit.train(rgb_folder, epochs=1, latent_dim=4, width=8, val_fraction=0.5, contamination=0.2, verbose=False,
                    out=tmp_path / "run")  # fmt: skip
    t = r.summary["threshold"]
    assert t["rule"] == "contamination" and t["contamination"] == 0.2 and t["percentile"] is None
    val = [float(x["ensemble"]) for x in read_csv(r.path / "validation_scores.csv")]  # the default score's
    assert t["value"] == pytest.approx(np.quantile(val, 0.8), rel=1e-5)


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--threshold", "1", "--contamination", "0.1"], "at most one"),
        (["--contamination", "1.5"], "contamination"),
        (["--threshold-percentile", "0"], "percentile"),
        (["--metric", "psnr"], "invalid choice"),
    ],
)
def test_bad_score_options(run, rgb_folder, tmp_path, capsys, flags, needle):
    try:
        code = main(["score", str(run), str(rgb_folder), "-o", str(tmp_path / "s.csv"), *flags])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()


def test_worst_picture_names_each_item_with_its_score_and_flag(run, rgb_folder, tmp_path, monkeypatch):
    import aekit.core.plots

    calls = []
    real = aekit.core.plots.recon_grid

    def recording(*args, **kw):
        calls.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(aekit.core.plots, "recon_grid", recording)
    top = np.sort(aekit.score(run, rgb_folder).scores)[::-1]
    threshold = float(top[1] + top[2]) / 2  # the two worst items are above it
    out = tmp_path / "s.csv"
    argv = [
        "score",
        str(run),
        str(rgb_folder),
        "-o",
        str(out),
        "--quiet",
        "--worst",
        "5",
        "--threshold",
        str(threshold),
    ]
    assert main(argv) == 0
    rows = read_csv(out)[:5]  # worst first: the items of the picture, in its order
    (kw,) = calls
    text = kw["text"]
    assert text.names == [r["path"] for r in rows]
    assert text.values == pytest.approx([float(r["score"]) for r in rows], rel=1e-5)
    assert text.flags == [r["is_anomaly"] == "true" for r in rows] == [True, True, False, False, False]
    assert text.value_name == "score"
    assert text.title.startswith(f"the 5 highest ensemble scores of 20 items; threshold {threshold:.4g}")
    assert (tmp_path / "s_worst.png").stat().st_size > 0
