"""Time to quality: the test MSE `aekit train` reaches with its defaults in a time budget, next to
PCA with the same latent size, pythae's autoencoders and the naive recipe, trained as long, on
real photo patches, larger photos and digits.

    python benchmarks/time_to_quality.py [--budgets 120 600] [--data digits28 patches32 photos128]
                                         [--json OUT.json]

Data (made once under /tmp/aekit-bench, nothing downloaded), with the latent size of each:
- digits28 (latent 16): 20000 28x28 gray digits drawn by scripts/make_sample_data.py (the demo's
  generator, another seed);
- patches32 (latent 64): 20000 real 32x32 RGB photo patches (../shared/bench/make_patches.py);
- photos128 (latent 64): 3000 real 128x128 RGB photo crops (make_patches.py OUT 3000 128).
Files sorted by name; the first 90% train, the last 10% test. Every method is scored by the MSE of
its test reconstructions, clipped to [0, 1], against the test pixels / 255.

- aekit: `aekit train train.npy --latent-dim k --max-time budget --no-cache` in a process of its
  own (its peak memory is measured), every other option at its default; "seconds" is the whole
  command (PCA start, validation, plots, report included).
- PCA-k: exact PCA of the train split.
- pythae (pip install pythae; the `bench` extra): its default autoencoder, `AE(AEConfig(input_dim,
  latent_dim))` (an MLP: 512 hidden units), and its convolutional benchmark networks where it has
  them for the shape (Encoder/Decoder_Conv_AE_MNIST for 1x28x28, _CIFAR for 3x32x32), each
  trained with pythae's default recipe (Adam, learning rate 1e-4, batch 64, its own loss: MSE
  summed over pixels) on the same images in [0, 1]; one run each, its test MSE taken when each
  budget has passed (scoring time does not count).
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


DATA = {  # name: (items, side, latent size)
    "digits28": (20000, 28, 16),
    "patches32": (20000, 32, 64),
    "photos128": (3000, 128, 64),
}


def files_of(name: str) -> list[Path]:
    n, side, _ = DATA[name]
    folder = BENCH / name
    if name != "digits28":
        if len(list(folder.glob("*.png"))) < n:
            print(f"making {n} patches of {side}x{side} in {folder} ...", flush=True)
            subprocess.run([sys.executable, str(MAKE_PATCHES), str(folder), str(n), str(side)], check=True, cwd=ROOT)
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


# The peak is VmHWM, which starts again when the process execs Python: ru_maxrss would keep the
# size of this benchmark process (which holds the data sets) from the fork.
AEKIT = (
    "import sys; from aekit.cli.main import main; code = main(sys.argv[1:]); "
    "print('MAXRSS_KB', open('/proc/self/status').read().split('VmHWM:')[1].split()[0]); sys.exit(code)"
)


def run_aekit(train_npy: Path, x_test: np.ndarray, k: int, budget: float, out: Path) -> dict:
    """`aekit train` in a process of its own, as a user runs it: its peak memory is its own."""
    import shutil

    import aekit

    shutil.rmtree(out, ignore_errors=True)
    argv = ["train", str(train_npy), "--latent-dim", str(k), "--max-time", str(budget), "--no-cache", "--quiet"]
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", AEKIT, *argv, "--out", str(out)], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    rss = int(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("MAXRSS_KB")))
    recon = aekit.load(out).reconstruct(x_test.astype(np.float32))
    s = json.loads((out / "summary.json").read_text())
    return {"method": "aekit", "budget_s": budget, "test_mse": mse(recon / 255.0, x_test), "seconds": seconds,
            "epochs_run": s["epochs_run"], "best_epoch": s["best_epoch"], "stopped": s["stopped"],
            "peak_rss_mb": round(rss / 1024), "images_per_s": s["images_per_s"]}  # fmt: skip


def pythae_nets(shape: tuple[int, int, int], k: int) -> dict:
    """pythae's default autoencoder and, where pythae has them for this shape, its convolutional
    benchmark networks: {name: model}."""
    from pythae.models import AE, AEConfig

    config = AEConfig(input_dim=shape, latent_dim=k)
    nets = {"pythae AE (default MLP)": AE(config)}
    bench = {(1, 28, 28): "mnist", (3, 32, 32): "cifar"}.get(tuple(shape))
    if bench:
        import importlib

        mod = importlib.import_module(f"pythae.models.nn.benchmarks.{bench}")
        suffix = bench.upper()
        enc, dec = getattr(mod, f"Encoder_Conv_AE_{suffix}"), getattr(mod, f"Decoder_Conv_AE_{suffix}")
        nets[f"pythae AE (Conv_AE_{suffix})"] = AE(config, encoder=enc(config), decoder=dec(config))
    return nets


def run_pythae(name: str, model, x_train: np.ndarray, x_test: np.ndarray, budgets: list[float]) -> list[dict]:
    """pythae's default training recipe (BaseTrainerConfig: Adam, lr 1e-4, batch 64, its model's own
    loss) for as long as the largest budget; the test MSE when each budget has passed."""
    from pythae.trainers import BaseTrainerConfig

    torch.manual_seed(0)
    cfg = BaseTrainerConfig()
    train = torch.from_numpy(x_train).permute(0, 3, 1, 2).float() / 255
    opt = getattr(torch.optim, cfg.optimizer_cls)(model.parameters(), lr=cfg.learning_rate)
    batch = cfg.per_device_train_batch_size
    return timed_training(
        name, lambda: torch.randperm(len(train)).split(batch), lambda idx: model({"data": train[idx]}, epoch=1).loss,
        model.reconstruct, opt, x_test, budgets,
    )  # fmt: skip


def timed_training(name: str, epoch, loss_of, reconstruct, opt, x_test: np.ndarray, budgets: list[float]) -> list:
    """Steps of `opt` on `loss_of(batch)` over `epoch()` (a new pass of batches each call) until the
    largest budget; the test MSE of `reconstruct` when each budget has passed (scoring time does not
    count)."""
    test = torch.from_numpy(x_test).permute(0, 3, 1, 2).float() / 255
    rows, pending, t0, steps = [], sorted(budgets), time.perf_counter(), 0
    while pending:
        for batch in epoch():
            loss = loss_of(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= pending[0]:
                with torch.no_grad():
                    recon = torch.cat([reconstruct(b) for b in test.split(256)]).permute(0, 2, 3, 1).numpy()
                rows.append({"method": name, "budget_s": pending.pop(0), "test_mse": mse(recon, x_test),
                             "seconds": elapsed, "steps": steps})  # fmt: skip
                t0 += time.perf_counter() - t0 - elapsed
                if not pending:
                    break
    return rows


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
    return timed_training("naive", lambda: loader, lambda x: nn.functional.mse_loss(model(x), x), model, opt, x_test,
                          budgets)  # fmt: skip


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "load_before": os.getloadavg()[0]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", type=float, nargs="+", default=[120, 600])
    p.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    p.add_argument("--methods", nargs="+", default=["pca", "aekit", "pythae", "naive"])
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "time_to_quality.json")
    args = p.parse_args()
    results = {"machine": machine(), "data": {n: DATA[n] for n in args.data}, "rows": {}}
    for name in args.data:
        k = DATA[name][2]
        files = files_of(name)
        x = decode(files)
        n_train = int(round(0.9 * len(x)))
        x_train, x_test = x[:n_train], x[n_train:]
        train_npy = BENCH / f"{name}-train.npy"
        np.save(train_npy, x_train)
        rows = [run_pca(x_train, x_test, k)]
        print(name, rows[-1], flush=True)
        if "aekit" in args.methods:
            for budget in args.budgets:
                rows.append(run_aekit(train_npy, x_test, k, budget, BENCH / "runs" / f"{name}-{budget:g}"))
                print(name, rows[-1], flush=True)
        if "pythae" in args.methods:
            for net_name, model in pythae_nets((x.shape[-1], *x.shape[1:3]), k).items():
                for row in run_pythae(net_name, model, x_train, x_test, args.budgets):
                    rows.append(row)
                    print(name, row, flush=True)
        if "naive" in args.methods:
            for row in run_naive(files[:n_train], x_test, k, args.budgets):
                rows.append(row)
                print(name, row, flush=True)
        pca = rows[0]["test_mse"]
        for row in rows:
            row["vs_pca"] = row["test_mse"] / pca
        results["rows"][name] = rows
        args.json.write_text(json.dumps(results, indent=1))
    for name, rows in results["rows"].items():
        print(f"\n{name} (latent {DATA[name][2]}): test MSE, x PCA")
        for row in rows:
            budget = "-" if row["budget_s"] is None else f"{row['budget_s']:g} s"
            mem = f"  peak {row['peak_rss_mb']} MB" if "peak_rss_mb" in row else ""
            print(f"  {row['method']:<26} {budget:>6}  {row['test_mse']:.5f}  {row['vs_pca']:.3f}x{mem}")


if __name__ == "__main__":
    main()
