"""Time to quality: the test MSE `aekit train` reaches with its defaults in 30/60/120/300 s, next to
PCA with the same latent size and the naive recipe, on real photo patches and on digits.

    python benchmarks/time_to_quality.py [--budgets 30 60 120 300] [--data patches32 digits28]
                                         [--n 20000] [--latent 64] [--json OUT.json]

Data (made once under /tmp/aekit-bench, nothing downloaded):
- patches32: 20000 real 32x32 RGB photo patches from ../shared/bench/make_patches.py;
- digits28: 20000 28x28 gray digits drawn by scripts/make_sample_data.py (the demo's generator,
  another seed).
Files sorted by name; the first 90% train, the last 10% test. Every method is scored by the MSE of
its test reconstructions, clipped to [0, 1], against the test pixels / 255.

- aekit: `aekit.train(x_train, latent_dim=k, max_time=budget)` (what `aekit train DIR --max-time
  budget --latent-dim k` runs), every other option at its default, on the decoded uint8 arrays;
  "seconds" is the whole call (PCA start, validation, plots, report included).
- PCA-k: exact PCA of the train split.
- naive: the recipe of ../shared/bench/seed_baseline.py (a Dataset that opens every PNG with PIL
  in __getitem__, three stride-2 convs, a linear bottleneck of k, batch 32, Adam 1e-3, MSE), with
  the flatten size computed for the data instead of hard-coded for 56x56, the decoder's output
  cropped to the input size and inputs in [0, 1] (the blog version normalises to [-1, 1] in front
  of a sigmoid); one run, its test MSE taken when each budget has passed.
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from make_sample_data import write_digits  # noqa: E402
from quality import MAKE_PATCHES, mse, run_pca  # noqa: E402

BENCH = Path("/tmp/aekit-bench")


def files_of(name: str, n: int) -> list[Path]:
    folder = BENCH / name
    if name == "patches32":
        if len(list(folder.glob("*.png"))) < n:
            print(f"making {n} patches in {folder} ...", flush=True)
            subprocess.run([sys.executable, str(MAKE_PATCHES), str(folder), str(n), "32"], check=True, cwd=ROOT)
        return sorted(folder.glob("*.png"))[:n]
    if len(list(folder.glob("*/*.png"))) < n:
        print(f"drawing {n} digits in {folder} ...", flush=True)
        write_digits(folder, n, 28, seed=1)
    return sorted(folder.glob("*/*.png"), key=lambda p: p.name)[:n]  # by index: every digit in both splits


def decode(files: list[Path]) -> np.ndarray:
    first = Image.open(files[0])
    mode = "RGB" if first.mode not in ("L", "I;16") else "L"
    x = np.stack([np.asarray(Image.open(f).convert(mode)) for f in files])
    return x[..., None] if x.ndim == 3 else x  # (N, H, W, C)


def run_aekit(x_train: np.ndarray, x_test: np.ndarray, k: int, budget: float, out: Path) -> dict:
    import aekit

    t0 = time.perf_counter()
    run = aekit.train(x_train, latent_dim=k, max_time=budget, out=out, verbose=False, cache_dir=None)
    seconds = time.perf_counter() - t0
    recon = aekit.load(run.path).reconstruct(x_test.astype(np.float32))
    s = run.summary
    return {"method": "aekit", "budget_s": budget, "test_mse": mse(recon / 255.0, x_test), "seconds": seconds,
            "epochs_run": s["epochs_run"], "best_epoch": s["best_epoch"], "stopped": s["stopped"]}  # fmt: skip


class NaiveDataset(torch.utils.data.Dataset):
    def __init__(self, files: list[Path], channels: int):
        self.files, self.mode = files, "RGB" if channels == 3 else "L"

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = np.array(Image.open(self.files[i]).convert(self.mode), dtype=np.float32) / 255
        return torch.from_numpy(image[..., None] if image.ndim == 2 else image).permute(2, 0, 1)


class NaiveAutoencoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], k: int):
        super().__init__()
        c, h, w = shape
        self.shape = shape
        self.encoder = nn.Sequential(
            nn.Conv2d(c, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.inner = self.encoder(torch.zeros(1, c, h, w)).shape[1:]
        flat = int(np.prod(self.inner))
        self.fc_encode, self.fc_decode = nn.Linear(flat, k), nn.Linear(k, flat)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(16, c, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc_encode(self.encoder(x).flatten(1))
        out = self.decoder(self.fc_decode(z).view(-1, *self.inner))
        return out[:, :, : self.shape[1], : self.shape[2]]


def run_naive(train_files: list[Path], x_test: np.ndarray, k: int, budgets: list[float]) -> list[dict]:
    torch.manual_seed(0)
    c = x_test.shape[-1]
    model = NaiveAutoencoder((c, *x_test.shape[1:3]), k)
    loader = torch.utils.data.DataLoader(NaiveDataset(train_files, c), batch_size=32, shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    test = torch.from_numpy(x_test).permute(0, 3, 1, 2).float() / 255
    rows, pending, t0, steps = [], sorted(budgets), time.perf_counter(), 0
    while pending:
        for x in loader:
            loss = nn.functional.mse_loss(model(x), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= pending[0]:
                with torch.no_grad():
                    recon = torch.cat([model(b) for b in test.split(256)]).permute(0, 2, 3, 1).numpy()
                rows.append({"method": "naive", "budget_s": pending.pop(0), "test_mse": mse(recon, x_test),
                             "seconds": elapsed, "steps": steps})  # fmt: skip
                t0 += time.perf_counter() - t0 - elapsed  # scoring time does not count
                if not pending:
                    break
    return rows


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "load_before": os.getloadavg()[0]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", type=float, nargs="+", default=[30, 60, 120, 300])
    p.add_argument("--data", nargs="+", default=["patches32", "digits28"], choices=["patches32", "digits28"])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--latent", type=int, default=64)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "time_to_quality.json")
    args = p.parse_args()
    results = {"machine": machine(), "latent": args.latent, "n": args.n, "rows": {}}
    for name in args.data:
        files = files_of(name, args.n)
        x = decode(files)
        n_train = int(round(0.9 * len(x)))
        x_train, x_test = x[:n_train], x[n_train:]
        rows = [run_pca(x_train, x_test, args.latent)]
        print(name, rows[-1], flush=True)
        for budget in args.budgets:
            rows.append(run_aekit(x_train, x_test, args.latent, budget, BENCH / "runs" / f"{name}-{budget:g}"))
            print(name, rows[-1], flush=True)
        for row in run_naive(files[:n_train], x_test, args.latent, args.budgets):
            rows.append(row)
            print(name, row, flush=True)
        pca = rows[0]["test_mse"]
        for row in rows:
            row["vs_pca"] = row["test_mse"] / pca
        results["rows"][name] = rows
        args.json.write_text(json.dumps(results, indent=1))
    for name, rows in results["rows"].items():
        print(f"\n{name} (latent {args.latent}): test MSE, x PCA")
        for row in rows:
            budget = "-" if row["budget_s"] is None else f"{row['budget_s']:g} s"
            print(f"  {row['method']:<7} {budget:>6}  {row['test_mse']:.5f}  {row['vs_pca']:.2f}x")


if __name__ == "__main__":
    main()
