"""Training throughput from tar shards streamed vs the same images from the decode cache (issue #19).

    python benchmarks/streaming.py [--images 20000] [--size 32] [--steps 300] [--batch-size 128] [--repeats 2]

Writes N seeded PNGs (HxWx3 smooth blobs, `benchmarks/scale.py`'s generator) and the same files as
tar shards of 1000 (`aekit.data.stream.write_shards`), then trains each way for STEPS steps (conv,
latent 16, fp32, no validation patience) and reports the training images/s of `metrics.csv`
(items / training seconds of each epoch, the epoch's DataLoader start included; the cached run's
cache is built before it, so it reads a warm entry), with `uptime`'s load before each run.
Writes benchmarks/results/streaming.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from scale import make_pngs  # noqa: E402

import aekit  # noqa: E402
from aekit.data.stream import write_shards  # noqa: E402


def rate(run: Path) -> float:
    """Training images/s over the whole run: items over the epochs' training seconds."""
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return sum(float(r["images_per_s"]) for r in rows) / len(rows)


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    opts = dict(max_steps=args.steps, batch_size=args.batch_size, latent_dim=16, precision="fp32", epochs=100)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_pngs(tmp / "imgs", args.images, args.size, args.size, 3)
        write_shards(tmp / "imgs", tmp / "shards", per_shard=1000)
        cache = tmp / "cache"
        aekit.train(tmp / "imgs", out=tmp / "warm", max_steps=1, cache_dir=str(cache), verbose=False)  # the cache
        for r in range(args.repeats):
            for kind, data in (("cached", tmp / "imgs"), ("streamed", tmp / "shards")):
                before = load()
                t0 = time.perf_counter()
                run = aekit.train(data, out=tmp / f"{kind}{r}", cache_dir=str(cache), verbose=False, **opts)
                wall = time.perf_counter() - t0
                results.append({"kind": kind, "repeat": r, "images_per_s": round(rate(run.path), 1),
                                "wall_s": round(wall, 1), "uptime": before})  # fmt: skip
                print(results[-1], flush=True)
    by = {k: [x["images_per_s"] for x in results if x["kind"] == k] for k in ("cached", "streamed")}
    ratios = [s / c for s, c in zip(by["streamed"], by["cached"])]
    print(f"streaming vs cached throughput ratio: {', '.join(f'{x:.2f}' for x in ratios)}")
    out = Path(__file__).parent / "results" / "streaming.json"
    out.write_text(json.dumps({"args": vars(args), "runs": results, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
