"""How the ensemble score's parts are best combined: the one-class tasks of oneclass.py, each part
of one trained default model computed once, then every combination scored offline.

    python benchmarks/oneclass_combine.py [--data patches32 textures digits8 digits28 tables]
                                          [--seeds 0 1 2] [--classes 4] [--work DIR] [--json OUT.json]

For each task (oneclass.py's `tasks`: a class is normal, every test item scored), aekit trains with
its defaults (`aekit.train(x_train, seed=seed)`), and every candidate part is computed for the test
items and for the run's validation items (the held-out normal items its score is calibrated on):
the ensemble's parts (measures/ensemble.py: mse, ssim, local, code_knn, input_knn, code_distance,
spread) and, for images, the local error at windows of 2 and 8 pixels and of one pixel (`pix_max`).
The parts are kept in --work (one .npz per task), so a rerun only recombines them.

Combinations: a subset of the parts, each normalised by its validation values (`mean`: part /
mean; `rz`: (part - median) / interquartile range; `z`: (part - mean) / standard deviation;
`logz`: z of the logarithm; `p99`: part / 99th percentile), then summed or the largest taken. Printed
per data set: mean AUROC over tasks, then per combination its worst gap to the best baseline of
benchmarks/results (oneclass-*.json), best first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import oneclass  # noqa: E402

IMAGE_PARTS = ("mse", "ssim", "local", "code_knn", "input_knn")
TABLE_PARTS = ("mse", "code_distance", "spread", "code_knn", "input_knn")
EXTRA = ("local2", "local8", "pix_max")  # images: other local windows, tried in place of `local`


def parts_of(model, x, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Every candidate part of the items x (as Autoencoder.score computes the ensemble)."""
    import torch
    from torch.nn import functional as F

    from aekit.measures import ensemble

    meta, table = model.meta, model.columns is not None
    names = (
        TABLE_PARTS if table else tuple(p for p in IMAGE_PARTS if p != "ssim" or "ssim" in meta["ensemble"]["scales"])
    )
    scorer = ensemble.EnsembleScorer(names, meta["latent_score"], model.references, meta["ensemble"]["scales"])
    arr, layout = model._as_array(x, None)
    factor = model._unit_factor(arr)
    got: dict[str, list] = defaultdict(list)
    with torch.inference_mode():
        for i in range(0, len(arr), batch_size):
            b = model._to_tensor(arr[i : i + batch_size], layout, factor)
            xn = model.normalizer.normalize(b)
            out = model.model(xn)
            if table:
                recon, target = out.recon, xn
            else:
                recon, target = model.normalizer.to_unit(out.recon, clamp=model.scale > 1), b / model.scale
            p = scorer.parts(out.z, recon, target, xn)
            if not table:
                e = ((recon.float() - target.float()) ** 2).mean(1, keepdim=True)
                for k in (2, 8):
                    p[f"local{k}"] = F.avg_pool2d(e, k, k, ceil_mode=True).flatten(1).amax(1)
                p["pix_max"] = e.flatten(1).amax(1)
            for k, v in p.items():
                got[k].append(v.float().cpu().numpy())
    return {k: np.concatenate(v).astype(np.float64) for k, v in got.items()}


def task_parts(work: Path, data: str, seed: int, cls: str, x_train, x_test, labels) -> Path:
    """Train the default model of one task and keep its parts (once)."""
    import aekit

    out = work / "parts" / f"{data}-{seed}-{cls}.npz"
    if out.exists():
        return out
    run = work / "runs" / f"{data}-{seed}-{cls}"
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()
    aekit.train(x_train, seed=seed, out=run, cache_dir=None, verbose=False)
    model = aekit.load(run)
    with open(run / "validation_scores.csv") as f:
        val = np.array([int(line.split(",")[0]) for line in f.read().split()[1:]])  # array items: ids are rows
    test, held = parts_of(model, x_test), parts_of(model, x_train[val])
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"t_{k}": v for k, v in test.items()} | {f"v_{k}": v for k, v in held.items()}
    np.savez(out, labels=labels, default=model.score(x_test), **arrays)
    print(f"{data} seed {seed} class {cls}: trained and measured in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def normalised(test: np.ndarray, val: np.ndarray, how: str) -> np.ndarray:
    if how == "mean":
        return test / max(val.mean(), 1e-12)
    if how == "rz":
        q1, q2, q3 = np.percentile(val, [25, 50, 75])
        return (test - q2) / max(q3 - q1, 1e-12)
    if how == "z":
        return (test - val.mean()) / max(val.std(), 1e-12)
    if how == "logz":
        lv, lt = np.log(np.maximum(val, 1e-12)), np.log(np.maximum(test, 1e-12))
        return (lt - lv.mean()) / max(lv.std(), 1e-12)
    return test / max(np.percentile(val, 99), 1e-12)  # p99


def combinations(parts: dict, table: bool) -> dict[str, np.ndarray]:
    """name -> test scores of every combination (see the module's docstring)."""
    subsets = itertools.combinations
    base = [p for p in (TABLE_PARTS if table else IMAGE_PARTS) if p in parts]
    sets = [list(s) for r in range(1, len(base) + 1) for s in subsets(base, r)]
    if not table:  # the other local windows in place of `local`, in the sets that have it
        sets += [[e if p == "local" else p for p in s] for s in sets if "local" in s for e in EXTRA]
    out = {}
    for how in ("mean", "rz", "z", "logz", "p99"):
        for sel in sets:
            cs = np.stack([normalised(*parts[p], how) for p in sel])
            out[f"sum {how} {'+'.join(sel)}"] = cs.sum(0)
            out[f"max {how} {'+'.join(sel)}"] = cs.max(0)
    return out


def best_baselines() -> dict[str, float]:
    """data set -> the best baseline's mean AUROC in benchmarks/results/oneclass-*.json."""
    best = {}
    for path in (ROOT / "benchmarks" / "results").glob("oneclass*.json"):
        summary = json.loads(path.read_text()).get("summary", {})
        for data, methods in summary.items():
            vals = [m["auroc"] for name, m in methods.items() if not name.startswith("aekit")]
            if vals:
                best[data] = max(vals)
    return best


def main() -> None:
    from sklearn.metrics import roc_auc_score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choices = [*oneclass.IMAGES, "tables", *oneclass.TABLES]
    ap.add_argument("--data", nargs="+", default=["patches32", "textures", "digits8", "digits28"], choices=choices)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--classes", type=int, default=4, help="the first N classes of each data set (0: all)")
    ap.add_argument("--work", type=Path, default=oneclass.BENCH / "oneclass_combine")
    ap.add_argument("--top", type=int, default=25, help="combinations printed")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    names = [t for n in args.data for t in (oneclass.TABLES if n == "tables" else [n])]
    aurocs: dict = defaultdict(lambda: defaultdict(list))
    for data, seed in itertools.product(names, args.seeds):
        for cls, x_train, x_test, labels in oneclass.tasks(data, seed, args.classes or None):
            with np.load(task_parts(args.work, data, seed, cls, x_train, x_test, labels)) as f:
                parts = {k[2:]: (f[k], f["v_" + k[2:]]) for k in f.files if k.startswith("t_")}
                labels, default = f["labels"], f["default"]
            aurocs[data]["aekit default"].append(roc_auc_score(labels, default))
            for name, s in combinations(parts, data in oneclass.TABLES).items():
                aurocs[data][name].append(roc_auc_score(labels, s))
    table = {d: {m: float(np.mean(v)) for m, v in by.items()} for d, by in aurocs.items()}
    best = best_baselines()
    common = set.intersection(*(set(t) for t in table.values()))
    gap = {m: min(table[d][m] - best.get(d, 0.0) for d in table) for m in common}
    print(f"tasks: { {d: len(v['aekit default']) for d, v in aurocs.items()} }; best baselines: {best}")
    for m in ["aekit default", *sorted(common - {"aekit default"}, key=lambda m: -gap[m])[: args.top]]:
        print(f"{gap[m]:+.3f}  " + " ".join(f"{d}={table[d][m]:.3f}" for d in table) + f"  {m}")
    if args.json:
        run_args = vars(args) | {"work": str(args.work), "json": str(args.json)}
        args.json.write_text(json.dumps({"args": run_args, "best_baselines": best, "auroc": table}, indent=1))


if __name__ == "__main__":
    main()
