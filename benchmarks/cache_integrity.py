"""What the decode cache's checksums cost (issue #17): build and read a ~100 MB cache entry.

    python benchmarks/cache_integrity.py [--images 2100] [--side 128] [--repeats 5]

Makes N smooth RGB PNGs of SIDE x SIDE (2100 x 128 x 128 x 3 = 103 MB decoded) under a temporary
folder, builds their cache entry once, then times, each REPEATS times with the file in the page
cache (the usual case right after a build or a run):

- checksum: the CRC-32s of the entry's data.npy, as written at build time (`cache.checksums`)
- verify:   the check on first read in a process (`cache.verify`), alone
- read:     a whole cached read (`read_images_cached`: listing, key, index, array into memory)
            with the check, and with the check skipped (as on a second read in a process)

Prints the medians in ms and MB/s as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import aekit.data.cache as cache


def make_pngs(folder: Path, n: int, side: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:side, 0:side] / side
    rng = np.random.default_rng(0)
    for i in range(n):
        cy, cx, s = rng.uniform(0.2, 0.8, 3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.02 + 0.1 * s))
        im = np.stack([blob, blob.T, 1 - blob], -1) * 255
        Image.fromarray(im.astype(np.uint8)).save(folder / f"{i:05d}.png", compress_level=1)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=2100)
    p.add_argument("--side", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="aekit-cache-bench-") as tmp:
        folder, base = Path(tmp, "imgs"), Path(tmp, "cache")
        make_pngs(folder, a.images, a.side)
        cache.read_images_cached(folder, cache_dir=base, show_progress=False)
        (entry,) = [e for e in base.iterdir() if e.is_dir()]
        data = entry / "data.npy"
        index = json.loads((entry / "index.json").read_text())
        mb = np.load(data, mmap_mode="r").nbytes / 1e6

        def verify():
            cache._verified.clear()
            cache.verify(entry, index, {"data.npy": np.load(data, mmap_mode="r")})

        def read(check: bool):
            def go():
                cache._verified.clear()
                if not check:
                    cache._verified.add((str(entry), index["created"]))
                cache.read_images_cached(folder, cache_dir=base, show_progress=False)

            return go

        res = {
            "mb": round(mb, 1),
            "checksum_ms": timed(lambda: cache.checksums(data), a.repeats) * 1e3,
            "verify_ms": timed(verify, a.repeats) * 1e3,
            "read_checked_ms": timed(read(True), a.repeats) * 1e3,
            "read_unchecked_ms": timed(read(False), a.repeats) * 1e3,
        }
        res["verify_mb_per_s"] = mb / res["verify_ms"] * 1e3
        print(json.dumps({k: round(v, 1) for k, v in res.items()}))


if __name__ == "__main__":
    main()
