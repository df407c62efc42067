"""GPU throughput and time to quality (issue #28): the seed recipe vs `aekit train` vs the compute
limit on one CUDA GPU, bf16 vs fp32, channels_last, torch.compile, 1 vs several GPUs (NCCL), and
the test MSE reached in 120 s next to PCA and the peers.

    python benchmarks/gpu.py [--data DIR] [--epochs 3] [--gpus N] [--budget 120]
                             [--skip quality] [--json OUT.json]
    python benchmarks/gpu.py --dry-run     # the same steps on the CPU, tiny: checks the script

Needs a CUDA GPU (it says so and exits 2 otherwise). Without --data it makes `patches56` (10000
real 56x56 photo patches, ../shared/bench/make_patches.py) under /tmp/aekit-bench, or, where
../shared is not at hand (a lent GPU machine), 10000 56x56 RGB images of smooth random shapes:
throughput does not depend on what the pixels show. Every measurement runs in a process of its
own (benchmarks/throughput.py's helpers) and reports its peak host memory:

- seed (cpu):   ../shared/bench/seed_baseline.py as written (it never moves anything to a GPU)
- seed (cuda):  the same Dataset, network, batch 32 and loop with `.to("cuda")` added to the model
                and each batch, as the recipe is usually adapted to a GPU
- limit:        aekit's `basic` network (latent 128) trained from a uint8 tensor already in GPU
                memory: fp32, bf16, bf16 + channels_last, each + torch.compile, at batch 32 and
                at 256 (the compute limit: no input pipeline at all)
- aekit:        `aekit train --arch basic --latent-dim 128` on the folder, warm epochs, at batch 32
                and at its default batch; --precision fp32 and auto (bf16 on compute capability
                8.0 and later); --compile; and `--devices N` for N = 2..--gpus (DDP over NCCL;
                images/s over all ranks)
- quality:      benchmarks/time_to_quality.py --budgets BUDGET --data patches32 digits28
                (aekit with its defaults on the GPU, PCA, pythae's networks and the naive recipe,
                each trained BUDGET seconds), when ../shared is at hand; digits28 alone otherwise

Put the figures into BENCHMARKS.md with the card's name (printed first: `nvidia-smi -L`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import throughput  # noqa: E402  (run_py, seed, limit, aekit_train, machine)

BENCH = Path("/tmp/aekit-bench")
SEED_GPU = """
import runpy, sys, time, torch
from torch.utils.data import DataLoader
r = runpy.run_path(sys.argv[1])  # the recipe's Dataset and network as written (its __main__ does not run)
folder, epochs, device = sys.argv[2], int(sys.argv[3]), torch.device(sys.argv[4])
torch.manual_seed(0)
loader = DataLoader(r["CustomImageDataset"](folder, transform=r["to_tensor_normalize"]), batch_size=32, shuffle=True)
model = r["SimpleAutoencoder"](3, 128).to(device)
criterion, opt = torch.nn.MSELoss(), torch.optim.Adam(model.parameters(), lr=1e-3)
t0, seen = time.perf_counter(), 0
for epoch in range(epochs):
    for images in loader:
        images = images.to(device)
        opt.zero_grad()
        decoded, _ = model(images)
        loss = criterion(decoded, images)
        loss.backward()
        opt.step()
        seen += len(images)
    print("epoch", epoch, loss.item(), flush=True)  # .item(): the sync the recipe has once per epoch
print("seed images/s", seen / (time.perf_counter() - t0))
"""


def seed_on(device: str, folder: Path, epochs: int) -> dict:
    recipe = str(throughput.SHARED / "seed_baseline.py")
    out, _, rss = throughput.run_py(SEED_GPU, recipe, str(folder), str(epochs), device)
    return {"images_per_s": float(out.split("seed images/s")[-1].split()[0]), "peak_rss_mb": rss}


def shapes(folder: Path, n: int, side: int) -> None:
    """n side x side RGB PNGs of smooth random shapes (when the real photo patches are not at hand)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side] / side
    for i in range(n):
        img = np.zeros((side, side, 3))
        for _ in range(4):
            cy, cx, r = rng.uniform(0, 1, 3)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.02 + 0.1 * r))
            img += blob[..., None] * rng.uniform(0, 1, 3)
        img = 255 * img / img.max()
        Image.fromarray(img.astype(np.uint8)).save(folder / f"{i:05d}.png")


def data_folder(arg: Path | None, n: int) -> Path:
    if arg is not None:
        return arg
    folder = BENCH / ("patches56" if throughput.SHARED.is_dir() else "shapes56")
    if folder.is_dir() and len(list(folder.glob("*.png"))) >= n:
        return folder
    if throughput.SHARED.is_dir():
        make = throughput.SHARED / "make_patches.py"
        subprocess.run([sys.executable, str(make), str(folder), str(n), "56"], check=True)
    else:
        shapes(folder, n, 56)
    return folder


def card() -> str:
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "no nvidia-smi"


def limits(folder: Path, epochs: int, device: str, batches: list[int]) -> dict:
    got = {}
    for batch in batches:
        for precision, channels_last in (("fp32", False), ("bf16", False), ("bf16", True)):
            for compiled in (False, True):
                name = f"b{batch} {precision}{' channels_last' * channels_last}{' compile' * compiled}"
                options = {"device": device, "batch": batch, "compile": compiled}
                try:
                    got[name] = throughput.limit(folder, epochs, precision, channels_last, False, **options)
                except RuntimeError as e:  # e.g. bf16 on a card without it: written down, the rest goes on
                    got[name] = {"error": str(e)[-300:]}
                print("limit", name, got[name], flush=True)
    return got


def aekit_runs(folder: Path, epochs: int, device: str, gpus: int) -> dict:
    runs = {
        "batch 32, auto precision": ["--batch-size", "32"],
        "default batch, auto precision": [],
        "default batch, fp32": ["--precision", "fp32"],
        "default batch, auto precision, compile": ["--compile"],
        **{f"default batch, --devices {n}": ["--devices", str(n)] for n in range(2, gpus + 1)},
    }
    got = {}
    with tempfile.TemporaryDirectory() as cache:
        for name, extra in runs.items():
            dev = [] if "--devices" in extra else ["--device", device]
            got[name] = throughput.aekit_train(folder, epochs, Path(cache), [*dev, *extra])
            print("aekit", name, got[name], flush=True)
    return got


def quality(budget: float, dry: bool) -> dict:
    data = ["patches32", "digits28"] if throughput.SHARED.is_dir() and not dry else ["digits28"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ttq.json"
        methods = ["pca", "aekit"] if dry else ["pca", "aekit", "pythae", "naive"]
        argv = ["--budgets", str(budget), "--data", *data, "--methods", *methods, "--json", str(out)]
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "time_to_quality.py"), *argv], check=True)
        return json.loads(out.read_text())["rows"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="folder of 56x56 RGB images (default: made under /tmp/aekit-bench)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--gpus", type=int, help="up to this many GPUs for the DDP runs (default: all)")
    ap.add_argument("--budget", type=float, default=120, help="time-to-quality budget in seconds")
    ap.add_argument("--skip", nargs="*", default=[], choices=["seed", "limit", "aekit", "quality"])
    ap.add_argument("--dry-run", action="store_true", help="everything on the CPU with tiny sizes: checks the script")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    args = ap.parse_args()
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("error: benchmarks/gpu.py needs a CUDA GPU (none is visible); --dry-run checks it on the CPU")
        sys.exit(2)
    device = "cpu" if args.dry_run else "cuda"
    gpus = 1 if args.dry_run else (args.gpus or torch.cuda.device_count())
    epochs, n = (2, 256) if args.dry_run else (args.epochs, 10000)
    folder = data_folder(args.data, n)
    res: dict = {"card": card(), "machine": throughput.machine(), "data": str(folder), "epochs": epochs}
    print(res["card"], "|", res["machine"], flush=True)
    t0 = time.perf_counter()
    if "seed" not in args.skip:
        res["seed"] = {"as written (cpu)": throughput.seed(folder, epochs)}
        res["seed"][f"on {device}"] = seed_on(device, folder, epochs)
        print("seed", res["seed"], flush=True)
    if "limit" not in args.skip:
        res["limit"] = limits(folder, epochs, device, [32] if args.dry_run else [32, 256])
    if "aekit" not in args.skip:
        res["aekit"] = aekit_runs(folder, epochs, device, gpus)
    if "quality" not in args.skip:
        res["quality"] = quality(5 if args.dry_run else args.budget, args.dry_run)
    res["wall_seconds"] = time.perf_counter() - t0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
