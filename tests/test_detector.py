"""aekit.AutoencoderDetector: the scikit-learn / PyOD estimator interface, scikit-learn's own
estimator checks, and outliers found end to end (tables and images)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

import aekit
import aekit.measures.detection
from aekit.detector import AutoencoderDetector
from tests.conftest import smooth_images

F = 8


def factor_rows(n: int, seed: int) -> np.ndarray:
    """Rows of F columns driven by 2 hidden factors."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    mix = np.random.default_rng(99).normal(size=(2, F))
    return (np.tanh(z) @ mix + 0.05 * rng.normal(size=(n, F))).astype(np.float32)


def test_scikit_learn_estimator_checks():
    pytest.importorskip("sklearn", minversion="1.6")
    from sklearn.utils.estimator_checks import check_estimator

    det = AutoencoderDetector(latent_dim=1, max_steps=2, device="cpu")  # each check fits in about a second
    t0 = time.perf_counter()
    results = check_estimator(
        det,
        # Every check that runs applies and passes. scikit-learn's outlier-detector checks
        # (predict in {-1, 1}, decision_function < 0 for outliers) do not run: the class follows
        # PyOD (predict 1 = outlier, decision_function higher = more anomalous) and does not
        # declare itself a scikit-learn outlier detector.
        expected_failed_checks={},
        on_fail=None,
    )
    failed = {r["check_name"]: repr(r["exception"])[:300] for r in results if r["status"] == "failed"}
    assert not failed, failed
    assert len(results) > 30  # the checks really ran: fit, clone, pickle, dtypes, NaN, sparse, 1-D, ...
    print(f"{len(results)} checks in {time.perf_counter() - t0:.0f} s")


def test_outliers_are_flagged_and_the_conventions_hold(tmp_path):
    x = factor_rows(500, 0)
    det = AutoencoderDetector(latent_dim=2, contamination=0.05, max_steps=300, out=tmp_path / "run")
    assert det.fit(x) is det
    assert det.n_features_in_ == F and det.decision_scores_.shape == (500,)
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_scores_, 0.95))
    assert abs(det.labels_.mean() - 0.05) <= 1 / 500 and set(np.unique(det.labels_)) == {0, 1}
    np.testing.assert_allclose(det.decision_function(x), det.decision_scores_, rtol=1e-6)

    normal = factor_rows(200, 1)
    outliers = factor_rows(100, 2)
    outliers[:, :4] += np.random.default_rng(3).choice([-2.0, 2.0], size=(100, 4))  # off the 2-factor surface
    pred_out, pred_normal = det.predict(outliers), det.predict(normal)
    assert pred_out.dtype.kind == "i" and set(np.unique(pred_out)) <= {0, 1}
    assert pred_out.mean() > 0.9, pred_out.mean()  # most outliers flagged (PyOD: 1 = outlier)
    assert pred_normal.mean() < 0.15, pred_normal.mean()  # few normal rows
    s_out, s_normal = det.decision_function(outliers), det.decision_function(normal)
    assert np.median(s_out) > 10 * np.median(s_normal)  # higher = more anomalous
    np.testing.assert_array_equal(det.score_samples(outliers), -s_out)  # scikit-learn: higher = more normal
    np.testing.assert_array_equal(det.predict(outliers), (s_out > det.threshold_).astype(int))

    # the scores are aekit's: the run kept in `out` scores the same with aekit.load
    assert det.run_path_ == tmp_path / "run" and (tmp_path / "run" / "report.html").is_file()
    np.testing.assert_allclose(aekit.load(det.run_path_).score(outliers), s_out, rtol=1e-6)
    with pytest.raises(ValueError, match="X has 3 features, but AutoencoderDetector is expecting 8"):
        det.predict(outliers[:, :3])

    # fit_predict, and a temporary run folder that is gone after fit
    again = AutoencoderDetector(latent_dim=2, contamination=0.05, max_steps=300)
    np.testing.assert_array_equal(again.fit_predict(x), det.labels_)  # seeded: the same model
    assert again.run_path_ is None


def test_image_arrays():
    good = smooth_images(60, 16, 16, 1, seed=0)[..., 0]  # (N, H, W) uint8
    noise = np.random.default_rng(1).integers(0, 256, (20, 16, 16), dtype=np.uint8)
    det = AutoencoderDetector(latent_dim=8, max_steps=20, width=8, batch_size=16).fit(good)
    assert det.n_features_in_ == 256 and det.width == 8
    assert det.predict(noise).mean() > 0.9
    assert det.decision_function(noise).min() > np.median(det.decision_scores_)
    with pytest.raises(ValueError, match="fitted on"):
        det.predict(noise[:, :8])


def test_parameters_follow_the_scikit_learn_rules():
    det = AutoencoderDetector(contamination=0.2, lr=3e-4, epochs=5)
    params = det.get_params()
    assert params["contamination"] == 0.2 and params["lr"] == 3e-4 and params["epochs"] == 5
    assert params["latent_dim"] is None and params["weight_decay"] is None  # None: aekit's default
    assert "threshold_percentile" not in params and "no_cache" not in params  # not for the detector
    assert det.set_params(lr=1e-2, latent_dim=3) is det and (det.lr, det.latent_dim) == (1e-2, 3)
    assert type(det)(**det.get_params()).get_params() == det.get_params()  # what clone does
    with pytest.raises(TypeError, match="unexpected keyword argument 'learning_rate'"):
        AutoencoderDetector(learning_rate=1)
    with pytest.raises(ValueError, match="contamination must be in"):
        AutoencoderDetector(contamination=0.7).fit(factor_rows(20, 0))
    with pytest.raises(ValueError, match="unknown model"):
        AutoencoderDetector(model="nope", max_steps=1).fit(factor_rows(20, 0))  # aekit's errors as ValueError
    with pytest.raises(ValueError, match="is not fitted yet"):
        AutoencoderDetector().predict(factor_rows(2, 0))


def test_works_without_scikit_learn():
    code = """
import sys
sys.modules["sklearn"] = None  # import sklearn fails
import numpy as np
from aekit.detector import AutoencoderDetector, NotFittedError
assert AutoencoderDetector.__mro__[1].__name__ == "_Params"
det = AutoencoderDetector(contamination=0.1, max_steps=20, latent_dim=2)
assert det.get_params()["contamination"] == 0.1 and det.set_params(max_steps=10).max_steps == 10
assert "max_steps=10" in repr(det) and "seed" not in repr(det)
try:
    det.predict(np.zeros((2, 4)))
except NotFittedError:
    pass
else:
    raise AssertionError("predict before fit must raise NotFittedError")
x = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
pred = det.fit(x).predict(x)
assert pred.shape == (60,) and 0 < pred.sum() <= 7
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def outlier_data(n: int, f: int, contamination: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PyOD's test data, drawn the same way (pyod.utils.data.generate_data): inliers close around a
    point, outliers uniform in a wide box; y 1 for outliers."""
    rng = np.random.default_rng(seed)
    n_out = int(n * contamination)
    inliers = 0.3 * rng.normal(size=(n - n_out, f)) + 2
    outliers = rng.uniform(-4, 4, size=(n_out, f))
    return np.vstack([inliers, outliers]).astype(np.float32), np.r_[np.zeros(n - n_out), np.ones(n_out)]


def test_the_api_checks_of_pyods_autoencoder_tests_pass():
    """The checks of PyOD's own tests of its AutoEncoder (pyod/test/test_auto_encoder.py), its
    internals (_mu, _sigma, model) aside, run against AutoencoderDetector."""
    x_train, y_train = outlier_data(1200, 30, 0.1, 0)
    x_test, y_test = outlier_data(300, 30, 0.1, 1)
    clf = AutoencoderDetector(contamination=0.1, max_steps=150, device="cpu").fit(x_train)
    for attr in ("decision_scores_", "labels_", "threshold_"):
        assert getattr(clf, attr, None) is not None, attr
    assert len(clf.decision_scores_) == len(x_train)
    scores = clf.decision_function(x_test)
    assert scores.shape == (300,) and aekit.measures.detection.auroc(y_test, scores) >= 0.8
    assert clf.predict(x_test).shape == y_test.shape
    for method in ("linear", "unify"):
        proba = clf.predict_proba(x_test, method=method)
        assert proba.shape == (300, 2) and proba.min() >= 0 and proba.max() <= 1
        np.testing.assert_allclose(proba.sum(1), 1.0)
    assert clf.predict_proba(x_test).tolist() == clf.predict_proba(x_test, method="linear").tolist()
    with pytest.raises(ValueError):
        clf.predict_proba(x_test, method="something")
    labels, confidence = clf.predict(x_test, return_confidence=True)
    assert labels.shape == confidence.shape == y_test.shape and 0 <= confidence.min() <= confidence.max() <= 1
    proba, confidence = clf.predict_proba(x_test, method="linear", return_confidence=True)
    assert 0 <= proba.min() and proba.max() <= 1 and confidence.shape == y_test.shape
    assert 0 <= confidence.min() <= confidence.max() <= 1
    rejected = clf.predict_with_rejection(x_test, return_stats=False)
    assert rejected.shape == y_test.shape and set(np.unique(rejected)) <= {-2, 0, 1}
    _, (expected, upper, cost) = clf.predict_with_rejection(x_test, return_stats=True)
    assert 0 <= expected <= 1 and 0 <= upper <= 1 and cost >= 0
    # the confidence says how far from the threshold a prediction is: sure far from it
    far = np.argsort(np.abs(scores - clf.threshold_))[-10:]
    assert confidence[far].min() > 0.99
    assert clf.fit_predict(x_train).shape == y_train.shape
    assert clf.fit_predict_score(x_test, y_test) >= 0.8
    assert 0 <= clf.fit_predict_score(x_test, y_test, scoring="prc_n_score") <= 1
    with pytest.raises(NotImplementedError):
        clf.fit_predict_score(x_test, y_test, scoring="something")


def test_every_training_option_is_an_explicit_parameter():
    """scikit-learn reads an estimator's parameters from its __init__: each aekit train option the
    detector takes is a parameter of its own, none behind **kwargs."""
    import dataclasses
    import inspect

    from aekit.config.train import TrainConfig
    from aekit.detector import NOT_OPTIONS

    params = inspect.signature(AutoencoderDetector.__init__).parameters
    named = {n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY} - {"self"}
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - set(NOT_OPTIONS)
    assert fields <= named, f"add to AutoencoderDetector.__init__ (or to NOT_OPTIONS): {sorted(fields - named)}"
    assert set(AutoencoderDetector().get_params()) == named
    with pytest.raises(TypeError, match="latent_dims"):
        AutoencoderDetector(latent_dims=3)


class Frame:
    """What the detector reads of a pandas DataFrame: values and column names."""

    def __init__(self, values: np.ndarray, columns: list[str]):
        self.values, self.columns = values, columns

    def __array__(self, dtype=None, copy=None):
        return self.values


def test_the_detector_names_the_columns_that_make_a_row_odd():
    names = [f"sensor_{i}" for i in range(F)]
    x = factor_rows(300, 0)
    det = AutoencoderDetector(latent_dim=2, max_steps=200).fit(Frame(x, names))
    odd = x[:5].copy()
    odd[:, 3] += 10 * x[:, 3].std()
    assert [t.split(";")[0] for t in det.top_features(Frame(odd, names))] == ["sensor_3"] * 5
    shares = det.explain(Frame(odd, names))
    assert shares.shape == (5, F) and np.allclose(shares.sum(1), 1) and (shares.argmax(1) == 3).all()


def test_a_detector_fitted_on_a_gpu_predicts_after_unpickling_on_a_machine_without_one(tmp_path):
    """The pickled model holds CPU tensors and the device it ran on; unpickled where that device is
    missing (a subprocess without CUDA), it runs on the CPU with the same scores."""
    import os
    import pickle

    import torch

    x = factor_rows(200, 0)
    det = AutoencoderDetector(latent_dim=2, max_steps=30).fit(x)
    want = det.decision_function(x[:20])
    det.model_.device = det.model_.compute.device = torch.device("cuda")  # as fitted on a GPU
    (tmp_path / "det.pkl").write_bytes(pickle.dumps(det))
    np.save(tmp_path / "x.npy", x[:20])
    code = (
        "import pickle, sys, numpy as np, torch\n"
        "assert not torch.cuda.is_available()\n"
        "det = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "assert det.model_.device.type == 'cpu', det.model_.device\n"
        "np.save(sys.argv[2], det.predict(np.load(sys.argv[3])))\n"
        "np.save(sys.argv[4], det.decision_function(np.load(sys.argv[3])))\n"
    )
    args = [str(tmp_path / n) for n in ("det.pkl", "labels.npy", "x.npy", "scores.npy")]
    subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, check=True)
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), want, rtol=1e-6)
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), (want > det.threshold_).astype(int))
