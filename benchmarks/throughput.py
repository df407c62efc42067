"""Training throughput: the seed recipe vs the compute limit vs `aekit train`, in one run.

    python benchmarks/throughput.py [--data DIR] [--epochs 3] [--json OUT.json]

Without --data it makes `patches56` (10000 real 56x56 photo patches) with
../shared/bench/make_patches.py under /tmp/aekit-bench. Every measurement runs in its own
process (nothing else should run on the machine meanwhile) and reports its peak RSS:

- seed:     ../shared/bench/seed_baseline.py (PIL decode in __getitem__, batch 32), images/s
- limit:    the same `--arch basic` network (latent 128, batch 32) trained from a uint8 tensor
            already in memory, in the precision aekit's training chose (its probe): the compute limit
- extras:   the limit in fp32, bf16, bf16 + channels_last, + random flips (aekit's default step),
            fp32 + flips: images/s and ms a step, the cost of each extra
- aekit32:  `aekit train --arch basic --latent-dim 128 --batch-size 32` on the folder, fresh
            cache: cold first epoch (decode included) and warm epochs
- aekit:    the same at aekit's default batch size (warm cache)
- encode:   `aekit encode` of the whole folder (warm cache), images/s
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "bench"
RSS = (
    "import resource, sys; "
    "print('peak_rss_mb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, file=sys.stderr)"
)


def run_py(code: str, *args: str) -> tuple[str, float, float]:
    """Run Python code in a fresh process; returns (stdout+stderr, wall seconds, peak RSS MB)."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code + "\n" + RSS, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t
    out = p.stdout + p.stderr
    if p.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{out[-3000:]}")
    rss = float(re.findall(r"peak_rss_mb ([\d.]+)", out)[-1])
    return out, wall, rss


def seed(folder: Path, epochs: int) -> dict:
    code = (
        "import runpy, sys; sys.argv = ['seed_baseline.py', sys.argv[1], sys.argv[2]];"
        f"runpy.run_path({str(SHARED / 'seed_baseline.py')!r}, run_name='__main__')"
    )
    out, _, rss = run_py(code, str(folder), str(epochs))
    return {"images_per_s": float(re.findall(r"seed images/s ([\d.]+)", out)[-1]), "peak_rss_mb": rss}


LIMIT = """
import json, sys, time, torch
from aekit.core.compute import compute_settings
from aekit.data import read_images
from aekit.data.normalize import Normalizer, channel_stats
from aekit.models import create_model
from aekit.training.step import make_optimizer, train_step
a = json.loads(sys.argv[1])
data = read_images(a["folder"], show_progress=False)
device = torch.device(a["device"])
x = torch.from_numpy(data.array).to(device)  # in device memory: no input pipeline at all
n, epochs, bs = len(x), a["epochs"], a["batch"]
torch.manual_seed(0)
model = create_model("basic", in_shape=data.shape, latent_dim=128).to(device)
norm = Normalizer(255.0, *channel_stats(data.array, 255.0)).to(device)
settings = compute_settings(device, a["precision"])
settings.channels_last = a["channels_last"]
model = settings.prepare(model)
if a["compile"]:
    model = torch.compile(model)
opt = make_optimizer(model.parameters(), 1e-3, 1e-4)  # aekit's optimizer and settings
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
rates = []
for epoch in range(epochs):
    perm = torch.randperm(n, device=device)
    sync()
    t = time.perf_counter()
    for i in range(0, n, bs):
        xb = x[perm[i:i + bs]]
        if a["flips"]:  # as aekit does: a random half of the raw batch mirrored
            half = torch.nonzero(torch.rand(len(xb), device=device) < 0.5).flatten()
            xb[half] = xb[half].flip(-1)
        if a["channels_last"]:
            xb = xb.to(dtype=torch.float32, memory_format=torch.channels_last)
        train_step(model, opt, norm.normalize(xb), settings)
    sync()
    rates.append(n / (time.perf_counter() - t))
print("limit images/s", max(rates[1:] or rates))
"""


def limit(
    folder: Path,
    epochs: int,
    precision: str,
    channels_last: bool,
    flips: bool,
    *,
    device: str = "cpu",
    batch: int = 32,
    compile: bool = False,
) -> dict:
    """The compute limit: aekit's basic network trained from a uint8 tensor already in the
    device's memory (the first epoch, warm-up and compilation, does not count)."""
    args = {"folder": str(folder), "epochs": epochs, "precision": precision, "channels_last": channels_last}
    args |= {"flips": flips, "device": device, "batch": batch, "compile": compile}
    out, _, rss = run_py(LIMIT, json.dumps(args))
    rate = float(re.findall(r"limit images/s ([\d.]+)", out)[-1])
    return {"images_per_s": rate, "ms_per_step": batch * 1e3 / rate, "peak_rss_mb": rss}


EXTRAS = {  # the compute limit with each of aekit's extras added in turn (batch 32)
    "fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "bf16+channels_last": ("bf16", True, False),
    "bf16+channels_last+flips": ("bf16", True, True),
    "fp32+flips": ("fp32", False, True),
}


TRAIN = "import sys; from aekit.cli.main import main; rc = main(sys.argv[1:]); assert rc == 0, rc"


def train_args(folder: Path, epochs: int, cache: Path, out: str) -> list[str]:
    """`aekit train` of the benchmark's model: the basic net, latent 128."""
    return ["train", str(folder), "--arch", "basic", "--latent-dim", "128", "--epochs", str(epochs),
            "--cache-dir", str(cache), "--out", out, "--quiet"]  # fmt: skip


def aekit_train(folder: Path, epochs: int, cache: Path, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        _, wall, rss = run_py(TRAIN, *train_args(folder, epochs, cache, out), *extra)
        rows = list(csv.DictReader(open(Path(out) / "metrics.csv")))
        summary = json.loads((Path(out) / "summary.json").read_text())
    rates = [float(r["images_per_s"]) for r in rows]
    n_train = summary["n_train"]
    warm = max(rates[1:]) if len(rates) > 1 else rates[0]
    return {
        "first_epoch_images_per_s": rates[0],
        "warm_images_per_s": warm,
        "load_seconds": summary["load_seconds"],
        "cold_epoch_seconds": summary["load_seconds"] + n_train / rates[0],
        "warm_epoch_seconds": n_train / warm,
        "process_seconds": wall,
        "compute": summary["compute"],
        "peak_rss_mb": rss,
    }


ENCODE = """
import sys, time
import aekit
t = time.perf_counter()
ids, _ = aekit.encode(sys.argv[1], sys.argv[2], sys.argv[3], cache_dir=sys.argv[4])
print("encode images/s", len(ids) / (time.perf_counter() - t))
"""


SCORE = """
import sys, time
import aekit
t = time.perf_counter()
res = aekit.score(sys.argv[1], sys.argv[2], sys.argv[3], cache_dir=sys.argv[4])
print("score images/s", len(res.ids) / (time.perf_counter() - t))
"""


def encode(folder: Path, cache: Path) -> dict:
    """`aekit encode` and `aekit score` of the whole folder with a model trained for one epoch."""
    with tempfile.TemporaryDirectory() as out:
        run_py(TRAIN, *train_args(folder, 1, cache, out))
        text, _, rss = run_py(ENCODE, out, str(folder), str(Path(out) / "z.npy"), str(cache))
        score_text, _, score_rss = run_py(SCORE, out, str(folder), str(Path(out) / "s.csv"), str(cache))
    return {
        "images_per_s": float(re.findall(r"encode images/s ([\d.]+)", text)[-1]),
        "peak_rss_mb": rss,
        "score_images_per_s": float(re.findall(r"score images/s ([\d.]+)", score_text)[-1]),
        "score_peak_rss_mb": score_rss,
    }


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    import torch

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="folder of 56x56 RGB images (default: make patches56)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the results here too")
    ap.add_argument("--repeats", type=int, default=3, help="run the whole sequence this many times; report medians")
    args = ap.parse_args()
    folder = args.data
    if folder is None:
        folder = Path("/tmp/aekit-bench/patches56")
        if not folder.is_dir() or len(os.listdir(folder)) < 10000:
            subprocess.run([sys.executable, str(SHARED / "make_patches.py"), str(folder), "10000", "56"], check=True)
    res = {"machine": machine(), "data": str(folder), "epochs": args.epochs, "runs": []}
    for r in range(args.repeats):  # the whole sequence again: this shared VM drifts by +-15% over minutes
        run: dict = {}
        with tempfile.TemporaryDirectory() as cache:
            cache = Path(cache)
            run["seed"] = seed(folder, args.epochs)
            run["aekit32"] = aekit_train(folder, args.epochs, cache, ["--batch-size", "32"])  # cold cache first
            bf16 = "bf16" in run["aekit32"]["compute"]  # the limit runs what training chose (its probe)
            run["limit"] = limit(folder, args.epochs, "bf16" if bf16 else "fp32", bf16, False)
            run["extras"] = {name: limit(folder, args.epochs, *flags) for name, flags in EXTRAS.items()}
            run["aekit_default"] = aekit_train(folder, args.epochs, cache, [])
            run["encode"] = encode(folder, cache)
        s, lim, a = run["seed"]["images_per_s"], run["limit"]["images_per_s"], run["aekit32"]
        run["ratios"] = {
            "aekit32_warm_vs_seed": a["warm_images_per_s"] / s,
            "aekit32_warm_vs_limit": a["warm_images_per_s"] / lim,
            "cold_vs_warm_epoch": a["cold_epoch_seconds"] / a["warm_epoch_seconds"],
            "encode_vs_train": run["encode"]["images_per_s"] / run["aekit_default"]["warm_images_per_s"],
            "score_vs_train": run["encode"]["score_images_per_s"] / run["aekit_default"]["warm_images_per_s"],
        }
        print(f"run {r + 1}:", json.dumps(run["ratios"]), flush=True)
        res["runs"].append(run)
    res["median_ratios"] = {
        k: statistics.median(run["ratios"][k] for run in res["runs"]) for k in res["runs"][0]["ratios"]
    }
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
