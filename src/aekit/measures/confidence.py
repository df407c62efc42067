"""Outlier probabilities, the confidence of a prediction and prediction with rejection: PyOD's
conventions for a detector's scores, so that code written for PyOD detectors runs on
`aekit.AutoencoderDetector`. Functions of the training scores and the new scores only.

- probabilities (`outlier_probability`): `linear` scales the scores by the training scores' range
  (min 0, max 1, clipped); `unify` is Kriegel et al. 2011's Gaussian scaling, erf((s - mean) / (std sqrt 2))
  clipped to [0, 1].
- confidence (`exceed_confidence`): Perini et al. 2020 (ExCeed). A new item's outlier probability is
  estimated from its rank among the n training scores, p = (1 + #{train <= s}) / (2 + n); the
  confidence of "outlier" is the chance that it would still rank among the top n * contamination
  with another training set of n items drawn alike: P[Binomial(n, p) > n - n * contamination].
- rejection (`rejection_stats`): Perini & Davis 2023. A prediction whose confidence is at most
  1 - 2 exp(-T) is rejected (-2); the expected and upper-bound rejection rates and the upper bound
  of the cost follow from the same binomial model.

scipy (installed with scikit-learn) gives the binomial distribution and its root finding.
"""

from __future__ import annotations

import math

import numpy as np

from aekit.core.errors import AekitError

METHODS = ("linear", "unify")


def _scipy():
    try:
        from scipy import optimize, special, stats
    except ImportError:
        raise AekitError(
            "confidence and rejection need scipy: pip install scipy (it comes with scikit-learn)"
        ) from None
    return optimize, special, stats


def outlier_probability(train: np.ndarray, scores: np.ndarray, method: str = "linear") -> np.ndarray:
    """(N, 2) probabilities [normal, outlier] of items with `scores`, from the training scores."""
    if method == "linear":
        lo, hi = float(np.min(train)), float(np.max(train))
        p = (scores - lo) / (hi - lo) if hi > lo else (scores > hi).astype(np.float64)
    elif method == "unify":
        mean, std = float(np.mean(train)), float(np.std(train))
        p = _scipy()[1].erf((scores - mean) / (std * math.sqrt(2))) if std > 0 else (scores > mean).astype(np.float64)
    else:
        raise ValueError(f"{method!r} is not a valid probability conversion method; choose one of {', '.join(METHODS)}")
    p = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    return np.stack([1.0 - p, p], axis=1)


def exceed_confidence(train: np.ndarray, scores: np.ndarray, contamination: float, flags: np.ndarray) -> np.ndarray:
    """(N,) confidence in [0, 1] of each prediction `flags` (1 outlier, 0 normal)."""
    stats = _scipy()[2]
    n = len(train)
    ranks = np.searchsorted(np.sort(train), scores, side="right")  # training scores <= each score
    p = (1.0 + ranks) / (2.0 + n)
    outlier = 1.0 - stats.binom.cdf(n - int(n * contamination), n, p)
    return np.where(flags == 1, outlier, 1.0 - outlier)


def rejection_threshold(T: float) -> float:
    return 1.0 - 2.0 * math.exp(-T)


def rejected(confidence: np.ndarray, T: float) -> np.ndarray:
    """Predictions to reject: those whose confidence, as a margin 2 |c - 1/2|, is at most 1 - 2 exp(-T)."""
    return 2.0 * np.abs(confidence - 0.5) <= rejection_threshold(T)


def rejection_stats(
    n: int, contamination: float, T: float = 32, delta: float = 0.1, c_fp: float = 1, c_fn: float = 1, c_r: float = -1
) -> tuple[float, float, float]:
    """(expected rejection rate, its upper bound with probability 1 - delta, the upper bound of the
    cost) for a detector fitted on n items; a negative `c_r` costs a rejection `contamination`."""
    optimize, _, stats = _scipy()
    c_r = contamination if c_r < 0 else c_r
    delta = delta if 0 < delta < 1 else 0.1
    k = int(n * contamination) - 1

    def quantile(level: float) -> float:  # the p at which P[Binomial(n, p) <= k] = level
        return optimize.brentq(lambda p: stats.binom.cdf(k, n, p) - level, 0.0, 1.0)

    low, high = quantile(1 - math.exp(-T)), quantile(math.exp(-T))
    expected = high - low
    right = min(1.0, (n + 1 - contamination * (n + 2)) / n + T * (n + 2) / math.sqrt(2 * n**3 * T))
    inner = 2 * n * (-3 * contamination**2 - 2 * n * (1 - contamination) ** 2 + 4 * contamination - 3)
    inner += T * (n + 2) ** 2 - 8
    left = max(0.0, (2 + n * (1 - contamination) * (n + 1)) / n**2 - math.sqrt(max(0.5 * n**5 * inner, 0.0)) / n**4)
    upper = right - left + 2 * math.sqrt(math.log(2 / delta) / (2 * n))
    cost = min(contamination, low) * c_fp + min(1 - high, contamination) * c_fn + expected * c_r
    return expected, upper, cost
