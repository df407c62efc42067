"""Anomaly thresholds: the rules, their sentences, and the choice at scoring time."""

import numpy as np
import pytest

from aekit.core.errors import AekitError
from aekit.measures.thresholds import (
    choose_threshold,
    stored_threshold,
    threshold_from,
    write_validation_scores,
)

ERRORS = np.arange(1, 101, dtype=np.float64)  # 1 .. 100


def test_percentile_rule_and_its_sentence():
    t = threshold_from(ERRORS, "mse", percentile=99, of="the 100 validation items")
    assert t["value"] == pytest.approx(np.quantile(ERRORS, 0.99))
    assert t["rule"] == "percentile" and t["n"] == 100 and t["contamination"] is None
    assert "99th percentile of the errors of the 100 validation items" in t["explanation"]
    assert "reconstruction MSE (pixels in [0, 1])" in t["explanation"]


def test_contamination_flags_that_fraction():
    t = threshold_from(ERRORS, "mae", contamination=0.05, of="x", units="standardised units")
    assert (ERRORS > t["value"]).sum() == 5
    assert t["rule"] == "contamination" and t["percentile"] is None
    assert "worst 0.05 fraction (5%)" in t["explanation"] and "standardised units" in t["explanation"]


def test_non_finite_errors_are_left_out_and_all_bad_is_an_error():
    t = threshold_from(np.array([1.0, np.nan, np.inf, 3.0]), "mse", percentile=100, of="x")
    assert t["value"] == 3.0 and t["n"] == 2
    with pytest.raises(AekitError, match="no finite errors"):
        threshold_from(np.array([np.nan]), "mse", of="x")


@pytest.mark.parametrize("p,c", [(0, None), (101, None), (None, 1.0), (None, 0.0)])
def test_bad_rules_are_refused(p, c):
    with pytest.raises(AekitError):
        threshold_from(ERRORS, "mse", percentile=p, contamination=c, of="x")


def test_ordinals():
    assert "1st percentile" in threshold_from(ERRORS, "mse", percentile=1, of="x")["explanation"]
    assert "12th percentile" in threshold_from(ERRORS, "mse", percentile=12, of="x")["explanation"]
    assert "95.5 percentile" in threshold_from(ERRORS, "mse", percentile=95.5, of="x")["explanation"]


def test_choice_at_scoring_time(tmp_path):
    stored = threshold_from(ERRORS, "mse", percentile=99, of="v")
    ssim = threshold_from(ERRORS / 100, "ssim", percentile=99, of="v")
    meta = {"normalization": {"scale": 255.0}, "threshold": {**stored, "by_metric": {"ssim": ssim}}}
    assert stored_threshold(meta, "mse") == stored and stored_threshold(meta, "ssim") == ssim
    assert stored_threshold({}, "mse") is None
    scores = np.linspace(0, 1, 20)
    assert choose_threshold(tmp_path, meta, "mse", scores) == stored  # default: training's
    given = choose_threshold(tmp_path, meta, "mse", scores, threshold=0.5)
    assert given["value"] == 0.5 and given["rule"] == "given"
    flagged = choose_threshold(tmp_path, meta, "mse", scores, contamination=0.1)
    assert (scores > flagged["value"]).sum() == 2
    with pytest.raises(AekitError, match="no validation_scores.csv"):
        choose_threshold(tmp_path, meta, "mse", scores, percentile=90)
    write_validation_scores(tmp_path, [f"i{k}" for k in range(100)], {"mse": ERRORS, "mae": ERRORS, "ssim": ERRORS})
    p90 = choose_threshold(tmp_path, meta, "mse", scores, percentile=90)
    assert p90["value"] == pytest.approx(np.quantile(ERRORS, 0.9))
    with pytest.raises(AekitError, match="at most one"):
        choose_threshold(tmp_path, meta, "mse", scores, threshold=1.0, contamination=0.1)
    with pytest.raises(AekitError, match="finite number"):
        choose_threshold(tmp_path, meta, "mse", scores, threshold=-1.0)
