"""One-class anomaly detection: each class in turn is normal, every other class anomalous. aekit's
anomaly scores next to PCA's reconstruction error, IsolationForest, PyOD's AutoEncoder and kNN
distance, side by side, on real data available offline.

    python benchmarks/oneclass.py [--data digits8 digits28 patches32 textures tables] [--seeds 0 1 2]
                                  [--classes N] [--max-steps N] [--variants NAME=key=value,key=value ...]
                                  [--json OUT.json]

Protocol: per seed, a stratified split of each data set, 70% train / 30% test (textures: by 64x64
block of the source image, so no train patch overlaps a test patch). For each class c: every method
is fitted on the training items of class c only and scores ALL test items; anomalies = the test
items of the other classes. AUROC and average precision (scikit-learn), then the mean over classes;
the table gives the mean over seeds +- their standard deviation. Each seed re-draws the split and
seeds every method. Nothing is cached between runs except the generated images (/tmp/aekit-bench).

Data (nothing downloaded):
- digits8: scikit-learn's real 8x8 handwritten digits (1797, 10 classes), given to aekit as 8x8
  images (the others see 64 pixels in [0, 1]).
- digits28: 6000 28x28 gray digits drawn by scripts/make_sample_data.py (`digit_image`, seed 2;
  10 classes).
- patches32: one class: 6000 real 32x32 photo patches, as benchmarks/anomaly.py makes them (its
  `load`): 4000 clean ones train; the 2000 test patches are half clean, half with one defect
  (anomaly.py's `corrupt`: sensor noise, a scratch, dust or a stain).
- textures: 32x32 gray patches cut from scikit-image's bundled images, one class per source
  (brick, grass, gravel, camera, coins, moon, astronaut, coffee; RGB ones converted to gray):
  each image is cut into 64x64 blocks, each block into 9 patches at a stride of 16.
- tables (four data sets): breast_cancer (2 classes), wine (3), iris (3), digits64 (scikit-learn's
  digits as a 64-column table, 10 classes); aekit gets the raw columns.

Methods:
- aekit: `aekit.train(x_train, seed=seed, verbose=False)` with its defaults (plus --max-steps and a
  variant's keywords), scored by `aekit.load(run).score(x_test)` (its default metric) and, from the
  same model, by every entry of SCORES: the other metrics ("aekit (mse)", "(ssim)" for images,
  "(mse+latent)") and "aekit (kNN z)", the kNN distance on `model.encode` codes. Its seconds are
  training plus that score.
- PCA (aekit's k) and PCA-32: squared reconstruction error of exact PCA with aekit's latent size
  (its run summary) and with 32 components, each capped at features - 1 and training items - 1
  (PCA with every component reconstructs everything exactly).
- IsolationForest (defaults, random_state=seed); PyOD AutoEncoder (defaults, random_state=seed;
  skipped with a note without pyod); kNN: mean distance to the 5 nearest training items.
The baselines see standardised columns (the training rows' mean and std; constant columns are only
centred) for tables, flattened pixels / 255 for images. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from itertools import product
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import anomaly  # noqa: E402  (patches32 and its `corrupt` defects)
from make_sample_data import digit_image  # noqa: E402

BENCH = Path("/tmp/aekit-bench")
TABLES = ("breast_cancer", "wine", "iris", "digits64")
TEXTURES = ("brick", "grass", "gravel", "camera", "coins", "moon", "astronaut", "coffee")
IMAGES = ("digits8", "digits28", "patches32", "textures")
K_NEIGHBOURS = 5


# -- data -------------------------------------------------------------------------------------
@functools.cache
def dataset(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items, class labels, groups) of a class-labelled data set; items of one group go to the
    same side of the split."""
    from sklearn import datasets

    if name in ("breast_cancer", "wine", "iris", "digits64"):
        x, y = getattr(datasets, f"load_{'digits' if name == 'digits64' else name}")(return_X_y=True)
        return x.astype(np.float32), y, np.arange(len(y))
    if name == "digits8":
        d = datasets.load_digits()
        return (d.images * (255 / 16)).round().astype(np.uint8), d.target, np.arange(len(d.target))
    if name == "digits28":
        cache = BENCH / "oneclass" / "digits28-6000-seed2.npz"
        if not cache.exists():
            print(f"drawing 6000 digits into {cache} ...", flush=True)
            rng = np.random.default_rng(2)
            x = np.stack([np.asarray(digit_image(rng, i % 10, 28)) for i in range(6000)])
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(cache, x=x, y=np.arange(6000) % 10)
        with np.load(cache) as f:
            return f["x"], f["y"], np.arange(len(f["y"]))
    if name == "textures":
        from skimage import color, data

        xs, ys, groups = [], [], []
        for source in TEXTURES:
            im = getattr(data, source)()
            if im.ndim == 3:
                im = (color.rgb2gray(im[..., :3]) * 255).round().astype(np.uint8)
            h, w = im.shape
            for by, bx in product(range(0, h - 63, 64), range(0, w - 63, 64)):
                block = len(groups) // 9  # 9 patches per block
                for dy, dx in product((0, 16, 32), repeat=2):
                    xs.append(im[by + dy : by + dy + 32, bx + dx : bx + dx + 32])
                    ys.append(source)
                    groups.append(block)
        return np.stack(xs), np.array(ys), np.array(groups)
    raise ValueError(f"unknown data set {name!r}")


def split(y: np.ndarray, groups: np.ndarray, seed: int, frac: float = 0.7) -> np.ndarray:
    """Training mask: per class, `frac` of its groups (drawn by the seed)."""
    rng = np.random.default_rng(seed)
    train = np.zeros(len(y), bool)
    for c in np.unique(y):
        g = rng.permutation(np.unique(groups[y == c]))
        train |= (y == c) & np.isin(groups, g[: int(round(frac * len(g)))])
    return train


def tasks(name: str, seed: int, n_classes: int | None):
    """(normal class, x_train, x_test, labels with 1 = anomaly) for each class in turn."""
    if name == "patches32":
        train, test, labels, _ = anomaly.load("patches32", seed)
        yield "clean", train, test, labels.astype(int)
        return
    x, y, groups = dataset(name)
    train = split(y, groups, seed)
    for c in list(dict.fromkeys(y))[:n_classes]:
        yield str(c), x[train & (y == c)], x[~train], (y[~train] != c).astype(int)


def flat(train: np.ndarray, test: np.ndarray, image: bool) -> tuple[np.ndarray, np.ndarray]:
    """What the baselines see: pixels / 255 (images), or columns standardised on the training rows."""
    a, b = train.reshape(len(train), -1).astype(np.float64), test.reshape(len(test), -1).astype(np.float64)
    if image:
        return a / 255, b / 255
    mu, sd = a.mean(0), a.std(0)
    sd[sd == 0] = 1.0  # a column constant in the training rows is only centred (StandardScaler's rule)
    return (a - mu) / sd, (b - mu) / sd


# -- methods ----------------------------------------------------------------------------------
def knn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean distance of each row of b to its K_NEIGHBOURS nearest rows of a."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=min(K_NEIGHBOURS, len(a))).fit(a)
    return nn.kneighbors(b)[0].mean(1)


def by_metric(metric: str):
    def score(model, x_train, x_test):
        if metric == model.score_metric or (metric == "ssim" and model.columns is not None):
            return None  # the default score already, or not defined for table rows
        return model.score(x_test, metric=metric)

    return score


# Scores computed from one trained aekit model: name -> function(model, x_train, x_test) -> scores
# (or None where it does not apply). The method is called "VARIANT" for "default", else "VARIANT (name)".
SCORES = {
    "default": lambda model, x_train, x_test: model.score(x_test),
    "mse": by_metric("mse"),
    "ssim": by_metric("ssim"),
    "mse+latent": by_metric("mse+latent"),
    "kNN z": lambda model, x_train, x_test: knn(model.encode(x_train), model.encode(x_test)),
}


def run_aekit(x_train, x_test, seed: int, kw: dict) -> tuple[dict, dict, dict]:
    """(scores by SCORES name, seconds by name (training included), run details) of one variant."""
    import aekit

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = aekit.train(x_train, seed=seed, verbose=False, out=f"{tmp}/run", cache_dir=None, **kw)
        model = aekit.load(run.path)
        fit = time.perf_counter() - t0
        scores, seconds = {}, {}
        for name, fn in SCORES.items():
            t0 = time.perf_counter()
            s = fn(model, x_train, x_test)
            if s is not None:
                scores[name], seconds[name] = np.asarray(s, np.float64), fit + time.perf_counter() - t0
        s = run.summary
        info = {k: s.get(k) for k in ("latent_dim", "epochs_run", "best_epoch", "n_train", "images_per_s")}
    return scores, seconds, info | {"score_metric": model.score_metric, "train_seconds": round(fit, 2)}


def pca_error(a: np.ndarray, b: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    pca = PCA(max(1, min(k, a.shape[1] - 1, len(a) - 1)), random_state=seed).fit(a)
    return ((pca.inverse_transform(pca.transform(b)) - b) ** 2).mean(1)


def isolation_forest(a, b, seed, k):
    from sklearn.ensemble import IsolationForest

    return -IsolationForest(random_state=seed).fit(a).score_samples(b)


def pyod_autoencoder(a, b, seed, k):
    from pyod.models.auto_encoder import AutoEncoder

    return AutoEncoder(random_state=seed, verbose=0).fit(a).decision_function(b)


# Baselines on flattened/standardised inputs: name -> function(a_train, b_test, seed, aekit's latent size).
BASELINES = {
    "PCA (aekit's k)": lambda a, b, seed, k: pca_error(a, b, k, seed),
    "PCA-32": lambda a, b, seed, k: pca_error(a, b, 32, seed),
    "IsolationForest": isolation_forest,
    "PyOD AutoEncoder": pyod_autoencoder,
    "kNN": lambda a, b, seed, k: knn(a, b),
}


# -- running and reporting --------------------------------------------------------------------
def parse_variant(text: str) -> tuple[str, dict]:
    """'lat8=latent_dim=8,model=vae' -> ('lat8', {'latent_dim': 8, 'model': 'vae'})."""
    name, _, rest = text.partition("=")
    kw = {}
    for pair in filter(None, rest.split(",")):
        key, _, value = pair.partition("=")
        try:
            kw[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            kw[key.strip()] = value.strip()
    return name, kw


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line), "?")
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "load_before": os.getloadavg()[0]}  # fmt: skip


def summarise(rows: list[dict], name: str) -> dict:
    """Per method: AUROC (mean over classes; mean and std over seeds), AP, seconds, per-class AUROC."""
    out = {}
    sel = [r for r in rows if r["data"] == name]
    seeds = sorted({r["seed"] for r in sel})
    for method in dict.fromkeys(r["method"] for r in sel):
        m = [r for r in sel if r["method"] == method]
        per_seed = np.array([np.mean([r["auroc"] for r in m if r["seed"] == s]) for s in seeds])
        classes = dict.fromkeys(r["class"] for r in m)
        out[method] = {
            "auroc": per_seed.mean(),
            "auroc_sd": per_seed.std(ddof=1) if len(per_seed) > 1 else 0.0,
            "ap": np.mean([r["ap"] for r in m]),
            "seconds": np.mean([r["seconds"] for r in m]),
            "per_class": {c: np.mean([r["auroc"] for r in m if r["class"] == c]) for c in classes},
        }
    return out


def print_table(name: str, summary: dict) -> None:
    classes = list(next(iter(summary.values()))["per_class"])
    widths = [max(5, len(c)) for c in classes]
    head = " ".join(f"{c:>{w}}" for c, w in zip(classes, widths))
    print(f"\n{name}: one-class AUROC (mean over classes, +- sd over seeds), mean AP, s per class fit")
    print(f"  {'method':24} {'AUROC':>13} {'AP':>6} {'s':>7}   per class AUROC: {head}")
    for method, s in summary.items():
        per = " ".join(f"{v:>{w}.3f}" for v, w in zip(s["per_class"].values(), widths))
        auroc = f"{s['auroc']:.3f} +- {s['auroc_sd']:.3f}"
        print(f"  {method:24} {auroc:>13} {s['ap']:6.3f} {s['seconds']:7.1f}   {' ' * 17}{per}")
    for key in ("auroc", "ap"):  # methods within 0.0005 of the best tie
        top = max(s[key] for s in summary.values())
        best = [m for m, s in summary.items() if s[key] >= top - 5e-4]
        print(f"  winner on {name} by {key.upper()}: {' = '.join(best)} ({top:.3f})")


def main() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["digits8", "digits28", "patches32", "textures", "tables"],
                    choices=[*IMAGES, "tables", *TABLES])  # fmt: skip
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--classes", type=int, default=None, help="only the first N classes of each data set")
    ap.add_argument("--max-steps", type=int, default=None, help="aekit's training budget (default: its own)")
    ap.add_argument("--variants", nargs="*", default=[], help="more aekit runs: NAME=key=value,key=value")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    base = {"max_steps": args.max_steps} if args.max_steps else {}
    variants = {"aekit": base} | {n: base | kw for n, kw in map(parse_variant, args.variants)}
    baselines = dict(BASELINES)
    try:
        import pyod  # noqa: F401
    except ImportError:
        print("note: pyod is not installed (pip install pyod): PyOD AutoEncoder skipped", flush=True)
        del baselines["PyOD AutoEncoder"]
    names = [t for n in args.data for t in (TABLES if n == "tables" else [n])]
    results = {"machine": machine(), "args": vars(args) | {"json": str(args.json)}, "variants": variants}
    rows, summaries, t_start = [], {}, time.perf_counter()
    for name in names:
        image = name in IMAGES
        for seed in args.seeds:
            for cls, train, test, labels in tasks(name, seed, args.classes):
                scores, seconds, info = {}, {}, {}
                for vname, kw in variants.items():
                    by_name, secs, details = run_aekit(train, test, seed, kw)
                    for key in by_name:
                        method = vname if key == "default" else f"{vname} ({key})"
                        scores[method], seconds[method], info[method] = by_name[key], secs[key], details
                a, b = flat(train, test, image)
                for method, fn in baselines.items():
                    t0 = time.perf_counter()
                    scores[method] = fn(a, b, seed, info["aekit"]["latent_dim"])
                    seconds[method] = time.perf_counter() - t0
                task = {"data": name, "class": cls, "seed": seed, "n_train": len(train), "n_test": len(test),
                        "n_anomalies": int(labels.sum())}  # fmt: skip
                for method, s in scores.items():
                    rows.append(task | {"method": method, "auroc": roc_auc_score(labels, s),
                                        "ap": average_precision_score(labels, s),
                                        "seconds": round(seconds[method], 3), **info.get(method, {})})  # fmt: skip
                line = " ".join(f"{r['method']}={r['auroc']:.3f}" for r in rows[-len(scores) :])
                print(f"{name} seed {seed} class {cls} (train {len(train)}): {line}", flush=True)
        summaries[name] = summarise(rows, name)
        print_table(name, summaries[name])
        if args.json:  # written after each data set, so that a long run keeps what it has done
            results |= {"rows": rows, "summary": summaries, "wall_seconds": time.perf_counter() - t_start}
            args.json.write_text(json.dumps(results, indent=1, default=float))
    print(f"\nwall time: {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
