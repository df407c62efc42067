"""The ensemble score's parts and how they are combined (measures/ensemble.py)."""

import csv
import json

import numpy as np
import pytest
import torch

import aekit
from aekit.data.kind import DataKind
from aekit.measures import ensemble
from aekit.measures.detection import auroc
from aekit.models.checkpoint import _ensemble_ok


def test_local_part_finds_a_small_defect_that_the_mean_dilutes():
    """Two errors of the same mean: spread over the image, or in one 4x4 patch. Only the local part
    tells them apart, by the patch's own mean error."""
    target = torch.zeros(2, 1, 32, 32)
    recon = torch.zeros(2, 1, 32, 32)
    recon[0] += 0.125  # everywhere: squared error 1/64 per pixel
    recon[1, 0, 8:12, 16:20] = 1.0  # one 4x4 patch: 16 pixels of squared error 1, the same mean
    mse = ((recon - target) ** 2).mean(dim=(1, 2, 3))
    assert mse[0] == pytest.approx(mse[1])
    local = ensemble.local_errors(recon, target)
    assert local[0] == pytest.approx(1 / 64) and local[1] == pytest.approx(1.0)
    assert [ensemble.window_of(s, s) for s in (8, 28, 32, 128)] == [1, 4, 4, 16]


def test_local_part_counts_only_valid_pixels():
    target, recon = torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)  # windows of 2x2 at 16x16
    recon[0, 0, :2, :2] = 2.0  # squared error 4 in the corner window ...
    mask = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    mask[0, 0, :2, :2] = False  # ... which is nodata
    recon[0, 0, 4, 4] = 1.0  # one valid pixel off by 1 in a window of 4
    assert ensemble.local_errors(recon, target)[0] == pytest.approx(4.0)  # without the mask: the corner
    assert ensemble.local_errors(recon, target, mask)[0] == pytest.approx(0.25)


def test_max_combination_is_the_largest_robust_z_score():
    rng = np.random.default_rng(0)
    calib = {"mse": torch.from_numpy(rng.gamma(2.0, 1.0, 400)), "code_knn": torch.from_numpy(rng.normal(10, 2, 400))}
    cal = ensemble.calibration(calib, "max")
    for name, v in calib.items():
        q1, q2, q3 = np.percentile(v.numpy(), [25, 50, 75])
        assert cal["centers"][name] == pytest.approx(q2) and cal["scales"][name] == pytest.approx(q3 - q1)
    mid = cal["centers"]["mse"]
    items = {"mse": torch.tensor([mid, 50.0]), "code_knn": torch.tensor([10.0, 10.0])}
    score = ensemble.score_of(items, cal)
    z_knn = (10.0 - cal["centers"]["code_knn"]) / cal["scales"]["code_knn"]
    assert score[0] == pytest.approx(max(0.0, z_knn))  # mse at its median: z 0
    assert score[1] == pytest.approx((50.0 - mid) / cal["scales"]["mse"])  # one part far out is the score
    assert abs(float(ensemble.score_of(calib, cal).median())) < 0.5  # a typical item: about 0
    summed = ensemble.calibration(calib, "sum")
    assert summed["combine"] == "sum" and summed["scales"]["mse"] == pytest.approx(float(calib["mse"].mean()))
    assert ensemble.score_of(calib, summed).mean() == pytest.approx(2.0)  # about the number of parts


def test_a_constant_part_does_not_divide_by_zero():
    cal = ensemble.calibration({"spread": torch.full((50,), 3.0)}, "max")
    assert cal["scales"]["spread"] == pytest.approx(1e-12) and cal["centers"]["spread"] == 3.0
    many = ensemble.calibration({"spread": torch.tensor([1.0] * 40 + [5.0] * 2)}, "max")  # IQR 0, std > 0
    assert many["scales"]["spread"] == pytest.approx(float(torch.tensor([1.0] * 40 + [5.0] * 2).double().std()))


def test_images_combine_by_max_and_tables_by_sum(tmp_path):
    rng = np.random.default_rng(0)
    img = aekit.train(rng.integers(0, 255, (60, 16, 16), dtype=np.uint8), out=tmp_path / "img", epochs=1,
                      verbose=False, cache_dir=None)  # fmt: skip
    tab = aekit.train(rng.normal(size=(80, 5)).astype(np.float32), out=tmp_path / "tab", epochs=1, verbose=False)
    meta_i, meta_t = (json.loads((r.path / "model.json").read_text()) for r in (img, tab))
    assert meta_i["ensemble"]["combine"] == "max" and set(meta_i["ensemble"]["scales"]) == {
        "mse", "ssim", "local", "code_knn", "input_knn"}  # fmt: skip
    assert meta_t["ensemble"]["combine"] == "sum" and set(meta_t["ensemble"]["scales"]) == {
        "mse", "code_distance", "spread"}  # fmt: skip
    assert "robust z" in meta_i["threshold"]["explanation"]
    assert "each part 1 for a typical normal item" in meta_t["threshold"]["explanation"]
    assert ensemble.combine_of(DataKind.of_model(meta_i)) == "max"
    with open(img.path / "validation_scores.csv", newline="") as f:  # the items the score was calibrated on
        val = np.array([float(r["ensemble"]) for r in csv.DictReader(f)])
    assert 0.2 < (val > 0).mean() < 0.8  # the largest of several z-scores: typically a little above 0


def test_earlier_runs_keep_their_sum(tmp_path):
    """A run written before `combine` existed scores by the sum of its parts over their means."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, (60, 16, 16), dtype=np.uint8)
    run = aekit.train(x, out=tmp_path / "run", epochs=1, verbose=False, cache_dir=None)
    meta_path = run.path / "model.json"
    meta = json.loads(meta_path.read_text())
    scales = {"mse": 2.0, "ssim": 2.0, "code_knn": 1e30, "input_knn": 1e30}  # that version's parts; the kNN ones ~0
    meta["ensemble"] = {"scales": scales, "references": 54, "k": 5}
    meta_path.write_text(json.dumps(meta))
    model = aekit.load(run.path)
    mse, ssim = (model.score(x[:6], metric=m) for m in ("mse", "ssim"))
    np.testing.assert_allclose(model.score(x[:6]), (mse + ssim) / 2.0, rtol=1e-5)  # the sum, not the largest


@pytest.mark.parametrize(
    "change",
    [
        {"combine": "mean"},  # unknown combination
        {"combine": "max", "centers": None},  # max without centers
        {"combine": "max", "centers": {"mse": 0.0}},  # a center missing
        {"combine": "max", "centers": {"mse": float("nan"), "local": 0.0}},
        {"scales": {"mse": 1.0, "pixels": 1.0}},  # an unknown part
    ],
)
def test_found_ensemble_calibrations_are_refused(change):
    good = {"combine": "max", "scales": {"mse": 1.0, "local": 1.0}, "centers": {"mse": 0.0, "local": -2.5}}
    assert _ensemble_ok(good) and _ensemble_ok({"scales": {"mse": 1.0}})  # an earlier run's sum
    assert not _ensemble_ok(good | change)


def test_a_pasted_defect_scores_above_clean_images(tmp_path):
    """Smooth seeded images; a test half with a bright 3x3 speck: the default score ranks the specks
    above the clean ones."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:24, 0:24] / 24.0

    def smooth(n):
        a, b, c = rng.uniform(0.5, 2.0, (3, n, 1, 1))
        return (127 + 100 * np.sin(a * 3 * xx + b) * np.cos(c * 3 * yy)).astype(np.uint8)

    run = aekit.train(smooth(300), out=tmp_path / "run", max_steps=300, verbose=False, cache_dir=None, seed=0)
    test = smooth(80)
    for i in range(40):
        y, x = rng.integers(2, 20, 2)
        test[i, y : y + 3, x : x + 3] = 255 - test[i, y : y + 3, x : x + 3] // 4
    labels = np.r_[np.ones(40), np.zeros(40)]
    assert auroc(labels, aekit.load(run.path).score(test)) > 0.9
