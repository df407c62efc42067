"""`aekit.AutoencoderDetector`: an anomaly detector with the scikit-learn / PyOD interface.

    det = AutoencoderDetector(contamination=0.05, max_steps=1000).fit(X_train)   # X: (N, F) rows
    det.decision_function(X)   # anomaly scores: HIGHER = MORE ANOMALOUS (PyOD convention)
    det.predict(X)             # 0 normal, 1 outlier (PyOD convention)
    det.score_samples(X)       # -decision_function(X): higher = more normal (scikit-learn convention)

Fitting trains an autoencoder with `aekit.train` on X (an MLP for 2-D arrays: tables; the conv
models for image arrays N,H,W / N,H,W,C / N,C,H,W) and keeps it in memory; the score of an item
is its reconstruction error, as `aekit score` computes it (`metric`). `threshold_` is the
(1 - contamination) quantile of the training items' scores, as in PyOD.

scikit-learn is not needed: with it installed the class is a `sklearn.base.BaseEstimator` (clone,
pipelines, grid search); without it, `get_params` and `set_params` work the same way.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from aekit.config.train import TrainConfig
from aekit.core.errors import AekitError

# TrainConfig options that make no sense for an in-memory array, or that set the run's own
# threshold rule (the detector has `contamination` and `threshold_` instead)
NOT_OPTIONS = (
    "contamination",
    "threshold_percentile",
    "cache_dir",
    "columns",
    "id_column",
    "extensions",
    "bands",
    "patch_size",
    "stride",
    "nodata",
    "rgb_bands",
)
OWN = ("latent_dim", "contamination", "max_steps", "seed", "device", "metric", "out", "verbose")
TRAIN_OPTIONS = tuple(
    f for f in TrainConfig.__dataclass_fields__ if f not in NOT_OPTIONS and f not in OWN
)  # keyword parameters, default None: aekit's default


class _Params:
    """get_params / set_params as scikit-learn defines them, for when it is not installed."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any):
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for estimator {type(self).__name__}; valid: {valid}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != _defaults().get(k)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


try:
    from sklearn.base import BaseEstimator as _Base
    from sklearn.exceptions import NotFittedError
except ImportError:  # aekit does not need scikit-learn
    _Base = _Params

    class NotFittedError(ValueError, AttributeError):
        """A method that needs a fitted detector was called before `fit`."""


class AutoencoderDetector(_Base):
    """Anomaly detector: an autoencoder trained on (mostly) normal data; an item's score is its
    reconstruction error.

    Sign convention (as PyOD): `decision_function(X)` and `decision_scores_` are anomaly scores,
    higher = more anomalous; `predict(X)` is 1 for outliers (score above `threshold_`) and 0 for
    normal items. `score_samples(X)` is `-decision_function(X)`, scikit-learn's convention (higher
    = more normal, as IsolationForest.score_samples).

    Parameters
    ----------
    latent_dim
        size of the code (default: aekit's, a quarter of the columns for tables, 2 to 64).
    contamination
        expected fraction of outliers in the training data, in (0, 0.5]: `threshold_` is the
        (1 - contamination) quantile of the training scores (default 0.1).
    max_steps
        optimisation steps (default: aekit's budget, 3000 steps or 10 minutes).
    seed
        random seed of the split, initialisation and batch order (default 0): refitting on the
        same data gives the same model.
    device
        "auto", "cpu", "cuda", "cuda:N" or "mps".
    metric
        the score: "mse", "mae" or "mse+latent"; images also "ssim" (1 - SSIM); default (None): the
        run's, "mse+latent" for tables and "mse" for images (as `aekit score`).
    out
        a new folder for the training run (kept: `aekit report`, `aekit.load` work on it);
        default None, a temporary folder removed after `fit` (the model stays in memory).
    verbose
        print aekit's progress while fitting (default False).
    training options
        model, arch, plugins, depth, width, channels, layout, image_size, beta, kl_warmup_epochs,
        free_bits, recon_loss, noise, epochs, patience, batch_size, lr, weight_decay, val_fraction,
        augment, max_time, checkpoint_every, precision, compile, log, log_dir: the `aekit train`
        options of the same names (see `aekit train --help`); None (the default) means aekit's
        default.

    Attributes
    ----------
    decision_scores_
        scores of the training items (after `fit`).
    threshold_
        the outlier threshold.
    labels_
        0/1 of the training items.
    n_features_in_
        columns (or values per image).
    model_
        the trained `aekit.Autoencoder`.
    run_path_
        the run folder (None when temporary).
    """

    def __init__(
        self,
        latent_dim: int | None = None,
        contamination: float = 0.1,
        *,
        max_steps: int | None = None,
        seed: int = 0,
        device: str = "auto",
        metric: str | None = None,
        out: str | Path | None = None,
        verbose: bool = False,
        model: str | None = None,
        arch: str | None = None,
        plugins: list[str] | None = None,
        depth: int | None = None,
        width: int | None = None,
        channels: int | None = None,
        layout: str | None = None,
        image_size: list[int] | None = None,
        beta: float | None = None,
        kl_warmup_epochs: float | None = None,
        free_bits: float | None = None,
        recon_loss: str | None = None,
        noise: str | None = None,
        epochs: int | None = None,
        patience: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        val_fraction: float | None = None,
        augment: str | None = None,
        max_time: float | None = None,
        checkpoint_every: str | None = None,
        precision: str | None = None,
        compile: bool | None = None,
        log: str | None = None,
        log_dir: str | None = None,
    ) -> None:
        given = locals()
        for name in self._get_param_names():  # each parameter as its attribute, unchanged (scikit-learn's rule)
            setattr(self, name, given[name])

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> AutoencoderDetector:
        """Train on X (rows (N, F), or images); `y` is ignored (unsupervised)."""
        from aekit.inference.model import load
        from aekit.training.workflow import train

        if not (isinstance(self.contamination, (int, float)) and 0 < self.contamination <= 0.5):
            raise ValueError(f"contamination must be in (0, 0.5], got {self.contamination!r}")
        x = self._check_X(X, reset=True)
        options = {name: getattr(self, name) for name in TRAIN_OPTIONS if getattr(self, name) is not None}
        options.update(latent_dim=self.latent_dim, max_steps=self.max_steps, seed=self.seed, device=self.device)
        with tempfile.TemporaryDirectory(prefix="aekit-detector-") as tmp:
            out = Path(self.out) if self.out is not None else Path(tmp) / "run"
            try:
                run = train(x, out=out, verbose=bool(self.verbose), cache_dir=None, **options)
                self.model_ = load(run.path, device=self.device)
                self.run_path_ = run.path if self.out is not None else None
                self.decision_scores_ = self._score(x)
            except AekitError as e:  # scikit-learn's convention for bad input and options
                raise ValueError(str(e)) from None
        self.threshold_ = float(np.quantile(self.decision_scores_, 1 - self.contamination))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        return self

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit on X and return its labels (0 normal, 1 outlier): `labels_`."""
        return self.fit(X).labels_

    # -- scoring ----------------------------------------------------------------------------
    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly score of each item of X, float64 (N,): its reconstruction error; HIGHER = MORE
        ANOMALOUS (PyOD's convention; see `score_samples` for scikit-learn's)."""
        self._check_fitted()
        return self._score(self._check_X(X, reset=False))

    def predict(self, X: Any, return_confidence: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """1 for outliers (score above `threshold_`), 0 for normal items (PyOD's convention); with
        `return_confidence`, also each prediction's confidence in [0, 1] (`predict_confidence`)."""
        scores = self.decision_function(X)
        labels = (scores > self.threshold_).astype(int)
        return (labels, self._confidence(scores, labels)) if return_confidence else labels

    def predict_proba(
        self, X: Any, method: str = "linear", return_confidence: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """(N, 2) probabilities [normal, outlier] from the scores: "linear" scales them by the
        training scores' range, "unify" by their mean and spread (measures/confidence.py);
        with `return_confidence`, also each prediction's confidence."""
        from aekit.measures.confidence import outlier_probability

        scores = self.decision_function(X)
        proba = outlier_probability(self.decision_scores_, scores, method)
        if not return_confidence:
            return proba
        return proba, self._confidence(scores, (scores > self.threshold_).astype(int))

    def predict_confidence(self, X: Any) -> np.ndarray:
        """How surely each prediction would stay the same with another training set drawn alike,
        in [0, 1] (PyOD's ExCeed confidence)."""
        scores = self.decision_function(X)
        return self._confidence(scores, (scores > self.threshold_).astype(int))

    def predict_with_rejection(
        self, X: Any, T: float = 32, return_stats: bool = False, delta: float = 0.1, c_fp=1, c_fn=1, c_r=-1
    ) -> np.ndarray | tuple[np.ndarray, list[float]]:
        """`predict`, with -2 for the predictions too unsure to make: confidence margin at most
        1 - 2 exp(-T). With `return_stats`, also [expected rejection rate, its upper bound with
        probability 1 - delta, upper bound of the cost] (`compute_rejection_stats`)."""
        from aekit.measures.confidence import rejected

        labels, confidence = self.predict(X, return_confidence=True)
        labels[rejected(confidence, T)] = -2
        if not return_stats:
            return labels
        return labels, list(self.compute_rejection_stats(T, delta, c_fp, c_fn, c_r))

    def compute_rejection_stats(
        self, T: float = 32, delta: float = 0.1, c_fp=1, c_fn=1, c_r=-1, verbose: bool = False
    ) -> tuple[float, float, float]:
        """(expected rejection rate, its upper bound, upper bound of the cost) of
        `predict_with_rejection` (a negative `c_r` costs a rejection `contamination`)."""
        from aekit.measures.confidence import rejection_stats

        self._check_fitted()
        stats = rejection_stats(len(self.decision_scores_), self.contamination, T, delta, c_fp, c_fn, c_r)
        if verbose:
            print(
                f"expected rejection rate {stats[0]:.4f}, upper bound {stats[1]:.4f}, upper bound cost {stats[2]:.4f}"
            )
        return stats

    def fit_predict_score(self, X: Any, y: Any, scoring: str = "roc_auc_score") -> float:
        """Fit on X and score the training labels against `y` (1 = outlier): "roc_auc_score", or
        "prc_n_score" (precision among the n highest scores, n the number of outliers in y)."""
        scores = self.fit(X).decision_scores_
        y = np.asarray(y).ravel()
        if scoring == "roc_auc_score":
            from aekit.measures.detection import auroc

            return float(auroc(y, scores))
        if scoring == "prc_n_score":
            n = int(np.sum(y == 1))
            top = np.argsort(-scores, kind="stable")[:n]
            return float(np.mean(y[top] == 1)) if n else 0.0
        raise NotImplementedError(f"scoring {scoring!r}: use roc_auc_score or prc_n_score")

    def explain(self, X: Any) -> np.ndarray:
        """Where each item is wrong: for rows (N, F), each column's share of the row's squared
        reconstruction error (rows sum to 1); for images (N, H, W), the squared error per pixel
        (`aekit score --maps` draws it)."""
        self._check_fitted()
        return self.model_.explain(self._check_X(X, reset=False))

    def top_features(self, X: Any, k: int = 3) -> list[str]:
        """Rows only: for each row, up to `k` column names joined by ";", those with the largest share
        of its error (the columns that make it odd), as `aekit score` writes them."""
        from aekit.inference.explain import top_features

        shares = self.explain(X)
        if shares.ndim != 2:
            raise ValueError("top_features is for rows (N, F); for images, explain(X) gives the error per pixel")
        names = getattr(self, "feature_names_in_", None)
        names = [str(n) for n in names] if names is not None else self.model_.columns
        return top_features(shares, names, k)

    def _confidence(self, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        from aekit.measures.confidence import exceed_confidence

        return exceed_confidence(self.decision_scores_, scores, self.contamination, labels)

    def score_samples(self, X: Any) -> np.ndarray:
        """`-decision_function(X)`: scikit-learn's convention, higher = more normal."""
        return -self.decision_function(X)

    def _score(self, x: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self.model_.score(x, metric=self.metric), np.float64)
        except AekitError as e:
            raise ValueError(str(e)) from None

    # -- input checks -----------------------------------------------------------------------
    def _check_X(self, X: Any, reset: bool) -> np.ndarray:
        """X as a numeric array: 2-D rows, or 3-D/4-D images; the errors scikit-learn users expect."""
        name = type(self).__name__
        if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
            raise TypeError(f"{name} does not take sparse input; pass a dense array, e.g. X.toarray()")
        names = getattr(X, "columns", None)
        if hasattr(X, "detach"):  # a torch tensor
            X = X.detach().cpu().numpy()
        arr = np.asarray(X)
        if arr.dtype.kind == "c":
            raise ValueError("Complex data not supported")
        if arr.dtype.kind not in "biuf":
            arr = arr.astype(np.float64)  # numbers held as objects; anything else raises here
        if arr.ndim < 2:
            raise ValueError(
                f"Expected 2D array, got {arr.ndim}D array instead. Reshape your data with X.reshape(-1, 1) for one "
                "feature or X.reshape(1, -1) for one sample"
            )
        if arr.ndim > 4:
            raise ValueError(f"expected rows (N, F) or images (N, H, W[, C]), got an array of shape {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"Found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is required.")
        if arr.ndim == 2 and arr.shape[1] == 0:
            raise ValueError(f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
        if reset and arr.ndim == 2:  # a table too small to train and validate on (training/setup.py)
            from aekit.training.setup import min_table_rows

            need = min_table_rows(TrainConfig.val_fraction if self.val_fraction is None else self.val_fraction)
            if arr.shape[0] < need:
                raise ValueError(
                    f"Found array with {arr.shape[0]} sample(s) (shape={arr.shape}) while a minimum of {need} is "
                    "required to train and validate."
                )
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            what = "NaN" if np.isnan(arr).any() else "infinity or a value too large"
            raise ValueError(f"Input X contains {what}; {name} does not take missing values: drop or fill them")
        if arr.ndim == 2:
            arr = arr.astype(np.float32)
        features = int(np.prod(arr.shape[1:]))
        str_names = names is not None and all(isinstance(c, str) for c in names)
        if reset:
            self.n_features_in_ = features
            self._shape = arr.shape[1:]
            if str_names:
                self.feature_names_in_ = np.asarray(list(names), dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            return arr
        if arr.shape[1:] != self._shape:
            if arr.ndim == 2 and len(self._shape) == 1:
                raise ValueError(
                    f"X has {arr.shape[1]} features, but {name} is expecting {self.n_features_in_} features as input."
                )
            raise ValueError(f"X has items of shape {arr.shape[1:]}, but {name} was fitted on {self._shape}.")
        self._check_names(names if str_names else None)
        return arr

    def _check_names(self, names: Any) -> None:
        import warnings

        fitted = getattr(self, "feature_names_in_", None)
        name = type(self).__name__
        if fitted is None and names is not None:
            warnings.warn(
                f"X has feature names, but {name} was fitted without feature names", UserWarning, stacklevel=4
            )
        elif fitted is not None and names is None:
            warnings.warn(
                f"X does not have valid feature names, but {name} was fitted with feature names",
                UserWarning,
                stacklevel=4,
            )
        elif fitted is not None and list(names) != list(fitted):
            raise ValueError("The feature names should match those that were passed during fit.")

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments first."
            )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")


def _defaults() -> dict[str, Any]:
    params = inspect.signature(AutoencoderDetector.__init__).parameters.values()
    return {p.name: p.default for p in params if p.name != "self" and p.kind is not p.VAR_KEYWORD}
