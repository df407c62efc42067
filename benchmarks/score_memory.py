"""Peak memory of `aekit score` and `aekit encode` as the number of items grows.

    python benchmarks/score_memory.py [--n 2000 20000 200000] [--size 28]

Makes random uint8 gray images of SIZE x SIZE in one .npy per N (under /tmp/aekit-bench), trains
a small model on the first 2000 (200 steps), then runs each command in a fresh process per N and
reads its peak RSS (ru_maxrss of the child). The .npy is memory-mapped, so the peak includes the
data's pages (N x SIZE^2 bytes): "above the data" subtracts them.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path("/tmp/aekit-bench/score-memory")
AEKIT = [sys.executable, "-m", "aekit"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", nargs="+", type=int, default=[2000, 20000, 200000])
    ap.add_argument("--size", type=int, default=28)
    args = ap.parse_args()
    BENCH.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    top = max(args.n)
    full = BENCH / f"x{top}_{args.size}.npy"
    if not full.exists():
        np.save(full, rng.integers(0, 256, size=(top, args.size, args.size), dtype=np.uint8))
    x = np.load(full, mmap_mode="r")
    run = BENCH / "run"
    if not (run / "model.json").exists():
        train = BENCH / "train.npy"
        np.save(train, np.asarray(x[:2000]))
        subprocess.run([*AEKIT, "train", str(train), "--max-steps", "200", "--out", str(run), "--quiet"], check=True)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"{'command':8} {'items':>8} {'peak RSS MB':>12} {'data MB':>8} {'above data MB':>14} {'seconds':>8}")
    for command, out in (("score", "s.csv"), ("encode", "e.npy")):
        for n in sorted(args.n):
            data = BENCH / f"x{n}_{args.size}.npy"
            if not data.exists():
                np.save(data, np.asarray(x[:n]))
            # each measurement in its own grandchild, so that ru_maxrss (a maximum over children) is its own
            code = (
                "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
            )
            cmd = [*AEKIT, command, str(run), str(data), "-o", str(BENCH / out), "--quiet"]
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", code, *cmd], check=True, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            peak = int(res.stdout.split()[-1]) / 1024
            mb = n * args.size**2 / 2**20
            print(f"{command:8} {n:8d} {peak:12.0f} {mb:8.0f} {peak - mb:14.0f} {seconds:8.1f}", flush=True)


if __name__ == "__main__":
    main()
