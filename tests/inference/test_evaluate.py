"""`aekit evaluate` on labelled data: AUROC, average precision and F1 of the anomaly score, the
curves, the record the report shows; and the metrics themselves against scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import aekit
from aekit.cli.main import main
from aekit.core.errors import AekitError
from aekit.measures import detection as d
from tests.conftest import FAST, smooth_images, write_pngs

F = 6


def factor_rows(n: int, seed: int) -> np.ndarray:
    """Rows of F columns driven by 2 hidden factors: what an autoencoder of them learns."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    mix = np.random.default_rng(99).normal(size=(2, F))
    return (np.tanh(z) @ mix + 0.05 * rng.normal(size=(n, F))).astype(np.float32)


def write_csv(path: Path, x: np.ndarray, labels: list[str] | None = None) -> Path:
    head = ["id", *[f"c{j}" for j in range(F)], *(["status"] if labels else [])]
    lines = [",".join(head)]
    for i, row in enumerate(x):
        lines.append(",".join([f"r{i}", *(f"{v:.7g}" for v in row), *([labels[i]] if labels else [])]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(run trained on normal rows, CSV of new normal rows, CSV of anomalous rows)."""
    root = tmp_path_factory.mktemp("detect")
    train = write_csv(root / "train.csv", factor_rows(400, 0))
    run = aekit.train(train, out=root / "run", max_steps=150, latent_dim=2, verbose=False, cache_dir=None).path
    normal = write_csv(root / "normal.csv", factor_rows(60, 1))
    anomalous = factor_rows(30, 2)
    anomalous[:, :3] = np.random.default_rng(3).normal(size=(30, 3)) * 1.5  # the factors no longer explain them
    return run, normal, write_csv(root / "anomalous.csv", anomalous)


@pytest.mark.parametrize("seed", range(6))
def test_auroc_and_average_precision_equal_sklearns_also_with_ties(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n = 40 + 10 * seed
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.integers(0, 4, n).astype(float) if seed % 2 else rng.normal(size=n)  # odd seeds: many ties
    assert d.auroc(y, s) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
    assert d.average_precision(y, s) == pytest.approx(metrics.average_precision_score(y, s), abs=1e-12)
    fpr, tpr = d.roc_curve(y, s)
    ref_fpr, ref_tpr, _ = metrics.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    t = float(np.median(s))
    at = d.at_threshold(y, s, t)
    flags = s > t
    assert at["precision"] == pytest.approx(metrics.precision_score(y, flags, zero_division=0))
    assert at["recall"] == pytest.approx(metrics.recall_score(y, flags))
    assert at["f1"] == pytest.approx(metrics.f1_score(y, flags, zero_division=0))
    assert at["tp"] + at["fp"] + at["tn"] + at["fn"] == n and at["flagged"] == flags.sum()


def test_metrics_edge_cases():
    assert d.auroc([0, 0, 1, 1], [1, 1, 1, 1]) == 0.5  # all tied: chance
    assert d.auroc([0, 1], [0.0, 1.0]) == 1.0 and d.auroc([0, 1], [1.0, 0.0]) == 0.0
    assert d.average_precision([0, 1, 1], [0.1, 0.9, 0.8]) == 1.0
    none_flagged = d.at_threshold([0, 1], [0.1, 0.2], 5.0)
    assert none_flagged["precision"] == 0 and none_flagged["f1"] == 0 and none_flagged["flagged"] == 0
    with pytest.raises(AekitError, match="all 3 items are normal"):
        d.auroc([0, 0, 0], [1, 2, 3])
    with pytest.raises(AekitError, match="NaN"):
        d.auroc([0, 1], [np.nan, 1])
    np.testing.assert_array_equal(d.parse_labels(["0", "1", "Normal", "ANOMALY", "1.0", "true", " outlier "], "x"),
                                  [0, 1, 0, 1, 1, 1, 1])  # fmt: skip
    with pytest.raises(AekitError, match="label 'maybe' \\(row 1\\) is neither normal"):
        d.parse_labels(["0", "maybe"], "column 'y'")


def test_evaluate_normal_against_anomalous_rows(table_run, tmp_path, capsys):
    run, normal, anomalous = table_run
    out = tmp_path / "eval" / "m.json"
    argv = ["evaluate", str(run), "--normal", str(normal), "--anomalous", str(anomalous), "-o", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().err
    assert "AUROC" in printed and "average precision" in printed and "60 normal and 30 anomalous" in printed
    res = json.loads(out.read_text())
    assert (res["n_normal"], res["n_anomalous"], res["n_items"], res["labels"]) == (60, 30, 90, "two sets")
    # the very scores of `aekit score` (same function), measured against sklearn's metrics
    metrics = pytest.importorskip("sklearn.metrics")
    s = np.concatenate(
        [aekit.score(run, normal, verbose=False).scores, aekit.score(run, anomalous, verbose=False).scores]
    )
    y = np.r_[np.zeros(60), np.ones(30)]
    assert res["auroc"] == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-9)
    assert res["average_precision"] == pytest.approx(metrics.average_precision_score(y, s), abs=1e-9)
    assert res["auroc"] > 0.9  # broken correlations are what a model of 2 factors cannot reconstruct
    model = aekit.load(run)
    at = res["at_threshold"]
    assert at["threshold"] == pytest.approx(model.threshold) and res["threshold"]["rule"] == "percentile"
    assert at["tp"] == int((s[60:] > model.threshold).sum()) and at["fp"] == int((s[:60] > model.threshold).sum())
    assert at["f1"] == pytest.approx(metrics.f1_score(y, s > model.threshold))
    curves = Image.open(out.with_name("m_curves.png"))
    assert res["plot"] == str(out.with_name("m_curves.png")) and curves.width > 500
    # recorded in the run folder, and shown by its report
    recorded = json.loads((run / "detection.json").read_text())
    assert (
        recorded["auroc"] == res["auroc"]
        and (run / "detection.png").read_bytes() == out.with_name("m_curves.png").read_bytes()
    )
    page = aekit.report(run).read_text()
    assert '<section id="detection">' in page and f"{res['auroc']:.4f}" in page and "normal.csv</code> (normal)" in page


def test_labels_from_a_column_give_the_same_numbers(table_run, tmp_path):
    run, normal, anomalous = table_run
    both = aekit.evaluate(run, normal=str(normal), anomalous=str(anomalous), verbose=False)
    x = np.concatenate([_values(p) for p in (normal, anomalous)])
    labels = ["normal"] * 60 + ["anomalous"] * 30
    order = np.random.default_rng(0).permutation(90)  # mixed rows: labels travel with them
    mixed = write_csv(tmp_path / "mixed.csv", x[order], [labels[i] for i in order])
    assert (
        main(["evaluate", str(run), str(mixed), "--label-column", "status", "-o", str(tmp_path / "c.json"), "--quiet"])
        == 0
    )
    res = json.loads((tmp_path / "c.json").read_text())
    assert res["labels"] == "column status" and (res["n_normal"], res["n_anomalous"]) == (60, 30)
    for key in ("auroc", "average_precision"):
        assert res[key] == pytest.approx(both[key], abs=1e-6)
    assert res["at_threshold"]["tp"] == both["at_threshold"]["tp"]
    # Python: labels given per item (0/1), for an array
    given = aekit.evaluate(run, x, labels=np.r_[np.zeros(60), np.ones(30)], verbose=False)
    assert given["auroc"] == pytest.approx(both["auroc"], abs=1e-6) and given["labels"] == "given"
    # the legacy form is unchanged: reconstruction next to PCA
    assert aekit.evaluate(run, str(normal), verbose=False)["vs_pca"] in ("better", "equal", "worse")


def _values(path: Path) -> np.ndarray:
    rows = path.read_text().splitlines()[1:]
    return np.array([[float(v) for v in r.split(",")[1 : 1 + F]] for r in rows], np.float32)


def test_labels_from_image_folders(tmp_path):
    data = tmp_path / "test"
    write_pngs(data / "good", smooth_images(12, 28, 28, 1, seed=5))
    noise = np.random.default_rng(6).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8)
    write_pngs(data / "scratch", noise)
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "test" / "good"), *FAST, "--epochs", "3", "--out", str(run)]) == 0
    res = aekit.evaluate(run, data, normal_folders="good", verbose=False, cache_dir=None)
    assert (res["n_normal"], res["n_anomalous"]) == (12, 8) and res["labels"] == "normal folders good"
    assert res["auroc"] > 0.9  # noise is far from smooth blobs
    with pytest.raises(AekitError, match="no item of .* is in a folder named nothere; its folders: good, scratch"):
        aekit.evaluate(run, data, normal_folders="nothere", verbose=False, cache_dir=None)
    with pytest.raises(AekitError, match="--label-column is for tables"):
        aekit.evaluate(run, data, label_column="y", verbose=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give DATA to compare the model with PCA, or --normal DATA and --anomalous DATA"),
        (["--normal", "n.csv"], "--normal needs --anomalous too"),
        (["--anomalous", "a.csv"], "--anomalous needs --normal too"),
        (["d.csv", "--normal", "n.csv", "--anomalous", "a.csv"], "give either DATA with labels"),
        (["--normal", "n", "--anomalous", "a", "--label-column", "y"], "--label-column labels DATA; with --normal"),
        (["--label-column", "y"], "--label-column labels the items of DATA: give DATA too"),
        (["d.csv", "--label-column", "y", "--normal-folders", "good"], "give one way to label DATA"),
        (["d.csv", "--threshold", "0.1"], "--threshold is for anomaly detection"),
        (["--normal", "n", "--anomalous", "a", "-o", "m.csv"], "must end in .json"),
    ],
)
def test_bad_combinations_are_one_line_errors(args, message, capsys):
    assert main(["evaluate", "no/such/run", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
