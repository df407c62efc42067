"""Reconstruction quality at a fixed wall-clock budget: aekit's defaults vs PCA vs pythae, in one run.

    python benchmarks/quality.py [--data DIR] [--budgets 60 180] [--latent 64] [--n 20000]
                                 [--json OUT.json] [--skip-pythae]

Data: `patches32`, 20000 real 32x32 RGB photo patches made by ../shared/bench/make_patches.py (under
/tmp/aekit-bench/patches32 unless --data is given). The file names are sorted; the first 90% are the
train split (18000), the last 10% the test split (2000). `--n` uses only the first n files (quick checks).
Images are decoded once into uint8 arrays; every method sees the same train split and is scored by the
test MSE of its reconstructions, clipped to [0, 1], against the test pixels / 255.

- PCA-k:       exact PCA (eigendecomposition of the train covariance), k = --latent components.
- aekit:       `aekit.train(x_train, latent_dim=k, max_time=budget, epochs=10000, cache_dir=None)`, all
               other options at their defaults; test reconstructions via `Autoencoder.reconstruct` on
               float input (no uint8 rounding). aekit holds out part of the train split for its own
               validation and keeps its best epoch, as it does by default.
- pythae-mlp:  `pythae.models.AE` (latent k) with its default networks (MLP built from input_dim).
- pythae-conv: `pythae.models.AE` with its CIFAR benchmark networks, the plain conv ones
               (`Encoder_Conv_AE_CIFAR` / `Decoder_Conv_AE_CIFAR`; the ResNet ones are the alternative).
  Both use pythae's own `TrainingPipeline` / `BaseTrainer` with its defaults (Adam, lr 1e-4, batch 64,
  no eval set), data as float32 N,3,32,32 in [0, 1]. The budget is enforced per optimizer step: a
  `TrainingCallback` raises once `budget` seconds have passed since the pipeline was called (data
  preprocessing and trainer setup count, as aekit's loading does), and the model *as it is then* (the
  latest weights, not pythae's end-of-epoch best copy) is scored in eval mode.

"seconds" is the wall-clock time of the training call (aekit: the whole `aekit.train`, including its
loading, PCA baseline and plots; pythae: the pipeline call up to the stop). Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

os.environ.setdefault("WANDB_MODE", "disabled")
ROOT = Path(__file__).resolve().parents[1]
MAKE_PATCHES = ROOT.parent / "shared" / "bench" / "make_patches.py"


def get_data(folder: Path | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 32, 32, 3) train and test splits from the first n sorted PNG files."""
    if folder is None:
        folder = Path("/tmp/aekit-bench/patches32")
        if len(list(folder.glob("*.png"))) < n:
            print(f"making {n} patches in {folder} ...", flush=True)
            subprocess.run([sys.executable, str(MAKE_PATCHES), str(folder), str(n), "32"], check=True, cwd=ROOT)
    files = sorted(folder.glob("*.png"))[:n]
    x = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    n_train = int(round(0.9 * len(x)))
    return x[:n_train], x[n_train:]


def mse(recon01: np.ndarray, x_uint8: np.ndarray) -> float:
    return float(np.mean((np.clip(recon01, 0, 1) - x_uint8 / 255.0) ** 2))


def run_pca(x_train: np.ndarray, x_test: np.ndarray, k: int) -> dict:
    t0 = time.perf_counter()
    a = torch.from_numpy(x_train.reshape(len(x_train), -1)).float() / 255
    mean = a.mean(0)
    a -= mean
    if a.shape[1] <= a.shape[0]:
        _, vecs = torch.linalg.eigh((a.T @ a).double())
        basis = vecs[:, -k:].float()  # top-k principal directions
    else:  # more values than items (128x128 photos): the same directions from the items' Gram matrix
        vals, u = torch.linalg.eigh((a @ a.T).double())
        basis = (a.T.double() @ (u[:, -k:] / vals[-k:].clamp_min(1e-12).sqrt())).float()
    b = torch.from_numpy(x_test.reshape(len(x_test), -1)).float() / 255 - mean
    recon = ((b @ basis) @ basis.T + mean).numpy().reshape(x_test.shape)
    return {"method": f"PCA-{k}", "budget_s": None, "test_mse": mse(recon, x_test), "seconds": time.perf_counter() - t0}


def run_aekit(x_train: np.ndarray, x_test: np.ndarray, k: int, budget: float, tmp: str) -> dict:
    import aekit

    t0 = time.perf_counter()
    run = aekit.train(
        x_train, latent_dim=k, max_time=budget, epochs=10000, out=Path(tmp) / f"aekit-{budget:g}", verbose=False,
        cache_dir=None,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    r = aekit.load(run.path).reconstruct(x_test.astype(np.float32))  # float32, 0-255 units
    s = run.summary
    extra = {key: s.get(key) for key in ("val_mse", "pca_val_mse", "epochs_run", "stopped", "compute")}
    return {"method": "aekit", "budget_s": budget, "test_mse": mse(r / 255.0, x_test), "seconds": seconds,
            "done": f"{s.get('epochs_run')} epochs", **extra}  # fmt: skip


def run_pythae(x_train: np.ndarray, x_test: np.ndarray, k: int, budget: float, conv: bool, tmp: str) -> dict:
    from pythae.models import AE, AEConfig
    from pythae.models.nn.benchmarks.cifar import Decoder_Conv_AE_CIFAR, Encoder_Conv_AE_CIFAR
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig, training_callbacks
    from pythae.trainers.training_callbacks import TrainingCallback

    training_callbacks.tqdm = functools.partial(training_callbacks.tqdm, disable=True)  # silence its progress bars
    for name in ("pythae", "pythae.trainers.base_trainer.base_trainer", "pythae.pipelines.training"):
        logging.getLogger(name).setLevel(logging.WARNING)

    class BudgetSpent(Exception):
        pass

    class Budget(TrainingCallback):
        def __init__(self, deadline: float):
            self.deadline, self.steps = deadline, 0

        def on_train_step_end(self, training_config, **kwargs):
            self.steps += 1
            if time.perf_counter() >= self.deadline:
                raise BudgetSpent

    cfg = AEConfig(input_dim=(3, 32, 32), latent_dim=k)
    nets = {"encoder": Encoder_Conv_AE_CIFAR(cfg), "decoder": Decoder_Conv_AE_CIFAR(cfg)} if conv else {}
    model = AE(model_config=cfg, **nets)
    train_cfg = BaseTrainerConfig(output_dir=str(Path(tmp) / f"pythae-{budget:g}-{conv}"), num_epochs=10**6)
    pipeline = TrainingPipeline(model=model, training_config=train_cfg)
    train = np.ascontiguousarray(x_train.transpose(0, 3, 1, 2), dtype=np.float32) / 255
    t0 = time.perf_counter()
    budget_cb = Budget(t0 + budget)
    try:
        pipeline(train_data=train, callbacks=[budget_cb])
    except BudgetSpent:
        pass
    seconds = time.perf_counter() - t0
    net = pipeline.trainer.model.eval()
    test = torch.from_numpy(np.ascontiguousarray(x_test.transpose(0, 3, 1, 2), dtype=np.float32) / 255)
    with torch.no_grad():
        recon = torch.cat([net.reconstruct(test[i : i + 500]) for i in range(0, len(test), 500)])
    steps_per_epoch = -(-len(train) // train_cfg.per_device_train_batch_size)
    return {"method": "pythae-conv" if conv else "pythae-mlp", "budget_s": budget, "seconds": seconds,
            "test_mse": mse(recon.reshape(test.shape).permute(0, 2, 3, 1).numpy(), x_test),
            "done": f"{budget_cb.steps} steps ({budget_cb.steps / steps_per_epoch:.2f} epochs)",
            "networks": "Encoder/Decoder_Conv_AE_CIFAR" if conv else "default MLP"}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="folder of PNG patches (default: make patches32 under /tmp/aekit-bench)")
    p.add_argument("--budgets", type=float, nargs="+", default=[60, 180], help="wall-clock budgets in seconds")
    p.add_argument("--latent", type=int, default=64)
    p.add_argument("--n", type=int, default=20000, help="use the first n sorted files (90%% train, 10%% test)")
    p.add_argument("--json", type=Path, help="write all results here")
    p.add_argument("--skip-pythae", action="store_true")
    args = p.parse_args()

    x_train, x_test = get_data(args.data, args.n)
    print(f"train {x_train.shape}, test {x_test.shape}, torch {torch.__version__}, {os.cpu_count()} CPUs", flush=True)
    k = args.latent
    rows = [run_pca(x_train, x_test, k)]
    with tempfile.TemporaryDirectory(prefix="aekit-quality-") as tmp:
        for budget in args.budgets:
            rows.append(run_aekit(x_train, x_test, k, budget, tmp))
            print(f"  {rows[-1]['method']} {budget:g}s: {rows[-1]['test_mse']:.5f}", flush=True)
            if not args.skip_pythae:
                for conv in (False, True):
                    rows.append(run_pythae(x_train, x_test, k, budget, conv, tmp))
                    print(f"  {rows[-1]['method']} {budget:g}s: {rows[-1]['test_mse']:.5f}", flush=True)

    pca = rows[0]["test_mse"]
    print(f"\n| method | budget (s) | test MSE | vs PCA-{k} | trained | seconds |")
    print("|---|---:|---:|---:|---|---:|")
    for r in rows:
        r["ratio_to_pca"] = r["test_mse"] / pca
        budget = "-" if r["budget_s"] is None else f"{r['budget_s']:g}"
        print(f"| {r['method']} | {budget} | {r['test_mse']:.5f} | {r['ratio_to_pca']:.2f}x | {r.get('done', '-')} "
              f"| {r['seconds']:.1f} |")  # fmt: skip
    targets = []
    for budget in args.budgets:
        at = {r["method"]: r["test_mse"] for r in rows if r["budget_s"] == budget}
        best_pythae = min((v for m, v in at.items() if m.startswith("pythae")), default=None)
        t = {"budget_s": budget, "aekit_le_0.9_pca": at["aekit"] <= 0.9 * pca}
        if best_pythae is not None:
            t["aekit_le_0.8_best_pythae"] = at["aekit"] <= 0.8 * best_pythae
        targets.append(t)
        print(
            f"\n{budget:g} s: aekit/PCA-{k} = {at['aekit'] / pca:.3f} (target <= 0.9: {t['aekit_le_0.9_pca']})", end=""
        )
        if best_pythae is not None:
            ratio = at["aekit"] / best_pythae
            print(f"; aekit/best pythae = {ratio:.3f} (target <= 0.8: {t['aekit_le_0.8_best_pythae']})", end="")
    print()
    if args.json:
        env = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()}
        try:
            env["pythae"] = importlib.metadata.version("pythae")
        except importlib.metadata.PackageNotFoundError:
            pass
        meta = {"data": str(args.data or "/tmp/aekit-bench/patches32"), "n_train": len(x_train), "n_test": len(x_test)}
        out = {**meta, "latent": k, "budgets_s": args.budgets, "env": env, "results": rows, "targets": targets}
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
