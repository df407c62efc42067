"""Anomaly detection quality: AUROC and average precision of aekit's anomaly score next to PCA's
reconstruction error, scikit-learn's IsolationForest and PyOD's AutoEncoder, on real data that
is available offline.

    python benchmarks/anomaly.py [--data breast_cancer wine digits patches32] [--seeds 0 1 2]
                                 [--variants NAME=KW ...] [--json OUT.json]

Data (nothing downloaded; labels only used for scoring):
- breast_cancer: scikit-learn's table (569 rows x 30); normal = benign. 70% of the benign rows
  train; the test set is the other benign rows plus every malignant row.
- wine: scikit-learn's table (178 x 13); normal = cultivars 0 and 1, anomalous = cultivar 2.
- digits: scikit-learn's real 8x8 handwritten digits (1797); normal = digits 0-2, anomalous = 3-9,
  given to aekit as 8x8 images (the others see 64 columns).
- patches32: 6000 real 32x32 photo patches (../shared/bench/make_patches.py), 4000 train; the
  2000 test patches are half clean, half with a defect (sensor noise sd 0.08, a scratch, dust, or
  an 8x8 stain of a saturated colour; see `corrupt`).
Each seed re-draws the split (and seeds every method). aekit: `aekit.train(x_train)` with its
defaults (or a variant's keywords), scored with `aekit.load(run).score(x_test)` (its default score;
also by each metric of SCORED: "aekit (mse)", ...); PCA: the squared
reconstruction error of exact PCA at aekit's default latent size on standardised columns (tables)
or pixels (images); IsolationForest and PyOD AutoEncoder with their defaults on standardised
columns / flattened pixels.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MAKE_PATCHES = ROOT.parent / "shared" / "bench" / "make_patches.py"
BENCH = Path("/tmp/aekit-bench")
SCORED = ("mse", "mse+latent")  # aekit is also scored by each of these


def split(x: np.ndarray, normal: np.ndarray, seed: int, frac: float = 0.7):
    rng = np.random.default_rng(seed)
    nor, ab = rng.permutation(np.flatnonzero(normal)), np.flatnonzero(~normal)
    n = int(frac * len(nor))
    test = np.concatenate([nor[n:], ab])
    return x[nor[:n]], x[test], np.r_[np.zeros(len(nor) - n), np.ones(len(ab))]


def corrupt(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One defect per uint8 (N, H, W, 3) patch, of four kinds seen in inspection data: sensor noise,
    a scratch (a one-pixel line of a saturated colour), dust (2% of pixels black or white), a stain
    (an 8x8 square of a saturated colour)."""
    out = x.astype(np.float32) / 255
    h, w = out.shape[1:3]
    for i, kind in enumerate(rng.integers(4, size=len(x))):
        p, colour = out[i], rng.integers(2, size=3).astype(np.float32)
        if kind == 0:
            p += rng.normal(0, 0.08, p.shape)
        elif kind == 1:
            t = np.linspace(0, 1, 4 * max(h, w))
            (y0, y1), (x0, x1) = rng.uniform(0, h - 1, 2), rng.uniform(0, w - 1, 2)
            p[np.round(y0 + t * (y1 - y0)).astype(int), np.round(x0 + t * (x1 - x0)).astype(int)] = colour
        elif kind == 2:
            dust = rng.random((h, w)) < 0.02
            p[dust] = rng.integers(2, size=(int(dust.sum()), 1))
        else:
            y, xx = rng.integers(h - 8), rng.integers(w - 8)
            p[y : y + 8, xx : xx + 8] = colour
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def load(name: str, seed: int):
    """(train, test, labels, is_image) for one data set and seed."""
    from sklearn import datasets

    if name == "breast_cancer":
        x, y = datasets.load_breast_cancer(return_X_y=True)
        return (*split(x.astype(np.float32), y == 1, seed), False)
    if name == "wine":
        x, y = datasets.load_wine(return_X_y=True)
        return (*split(x.astype(np.float32), y != 2, seed), False)
    if name == "digits":
        d = datasets.load_digits()
        x = (d.images * (255 / 16)).round().astype(np.uint8)
        return (*split(x, d.target <= 2, seed), True)
    folder = BENCH / "patches32-anomaly"
    if len(list(folder.glob("*.png"))) < 6000:
        subprocess.run([sys.executable, str(MAKE_PATCHES), str(folder), "6000", "32"], check=True)
    from PIL import Image

    x = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in sorted(folder.glob("*.png"))[:6000]])
    rng = np.random.default_rng(seed)
    x = x[rng.permutation(len(x))]
    train, test = x[:4000], x[4000:]
    test = np.concatenate([test[:1000], corrupt(test[1000:], rng)])
    return train, test, np.r_[np.zeros(1000), np.ones(1000)], True


def flat(train: np.ndarray, test: np.ndarray, image: bool):
    """Standardised columns for tables, pixels in [0, 1] for images."""
    a, b = train.reshape(len(train), -1).astype(np.float64), test.reshape(len(test), -1).astype(np.float64)
    if image:
        return a / 255, b / 255
    mu, sd = a.mean(0), a.std(0) + 1e-12
    return (a - mu) / sd, (b - mu) / sd


def run_aekit(train, test, seed: int, kw: dict) -> tuple[dict[str, np.ndarray], dict]:
    """aekit's scores of the test items, by its default score and by each metric in SCORED."""
    import aekit

    with tempfile.TemporaryDirectory() as tmp:
        run = aekit.train(train, out=f"{tmp}/run", verbose=False, cache_dir=None, seed=seed, **kw)
        model = aekit.load(run.path)
        scores = {"": model.score(test)} | {f" ({m})": model.score(test, metric=m) for m in SCORED}
        s = run.summary
    return scores, {"latent_dim": s["latent_dim"], "epochs_run": s["epochs_run"], "best_epoch": s["best_epoch"]}


def baselines(train, test, image: bool, k: int, seed: int) -> dict[str, np.ndarray]:
    from pyod.models.auto_encoder import AutoEncoder
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest

    a, b = flat(train, test, image)
    pca = PCA(k, random_state=seed).fit(a)
    out = {f"PCA-{k}": ((pca.inverse_transform(pca.transform(b)) - b) ** 2).mean(1)}
    out["IsolationForest"] = -IsolationForest(random_state=seed).fit(a).score_samples(b)
    out["PyOD AutoEncoder"] = AutoEncoder(random_state=seed, verbose=0).fit(a).decision_function(b)
    return out


def main() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["breast_cancer", "wine", "digits", "patches32"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--variants", nargs="*", default=[], help="NAME=python keywords, e.g. lat4=latent_dim=4")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    variants = {"aekit": {}} | {v.split("=", 1)[0]: eval(f"dict({v.split('=', 1)[1]})") for v in args.variants}
    rows = []
    for name in args.data:
        for seed in args.seeds:
            train, test, labels, image = load(name, seed)
            scores, info = {}, {}
            for vname, kw in variants.items():
                t0 = time.perf_counter()
                by_metric, details = run_aekit(train, test, seed, kw)
                details["seconds"] = round(time.perf_counter() - t0, 1)
                for suffix, s in by_metric.items():
                    scores[vname + suffix], info[vname + suffix] = s, details
            if not args.no_baselines:
                scores |= baselines(train, test, image, info["aekit"]["latent_dim"], seed)
            for method, s in scores.items():
                row = {"data": name, "seed": seed, "method": method, **info.get(method, {}),
                       "auroc": roc_auc_score(labels, s), "ap": average_precision_score(labels, s)}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{'data':14} {'method':22} {'AUROC mean (min-max)':26} AP mean")
    for name in args.data:
        for method in dict.fromkeys(r["method"] for r in rows if r["data"] == name):
            sel = [r for r in rows if r["data"] == name and r["method"] == method]
            au, pr = np.array([r["auroc"] for r in sel]), np.array([r["ap"] for r in sel])
            print(f"{name:14} {method:22} {au.mean():.3f} ({au.min():.3f}-{au.max():.3f})       {pr.mean():.3f}")
    if args.json:
        machine = {"platform": platform.platform(), "python": platform.python_version(), "cpu": platform.processor()}
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
