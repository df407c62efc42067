"""What one machine spends per 100k images on listing, decoding and reading the cache (issue #19).

    python benchmarks/scale.py [--images 100000] [--repeats 3] [--kinds 28x28x1,32x32x3] [--dir DIR]

For each kind (HxWxC), writes N PNGs (1000 distinct seeded images of smooth blobs with a little
noise, cycled, 1000 files per sub-folder) under DIR (default: a temporary folder), then times,
REPEATS times:

- listing:  `cache.take_listing`, what rank 0 does under torchrun: walk the folder and one stat
            per file (the directory entries are in the kernel's cache: they cannot be dropped
            without root, so this is the warm figure);
- decoding: `images.read_images` of the whole folder on every core, the PNG files first dropped
            from the page cache (sync, then posix_fadvise DONTNEED), i.e. read from disk;
- build:    `cache.read_images_cached` into an empty cache folder: decoding + writing the entry
            (.npy, index, checksums), what local rank 0 of a machine does on a cold run; the PNG
            files are in the page cache now (read by the decoding just before);
- read cold / warm: a cached read into memory (`read_images_cached`, one process: checksum pass
            + one sequential copy) with the entry's data.npy dropped from the page cache first,
            then again with it cached;
- gather:   one epoch of random batches of 256 gathered from the memory-mapped entry (the
            access pattern of training under torchrun, where every process maps the entry), warm.

Prints a table and writes every timing, with `uptime`'s load before each kind, as JSON
(benchmarks/results/scale.json).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import aekit.data.cache as cache
from aekit.data.images import read_images

PER = 100_000  # figures are given per this many images


def make_pngs(root: Path, n: int, h: int, w: int, c: int) -> int:
    """N PNG files under root/NNN/ (1000 a folder); returns their total size in bytes."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    blobs = []
    for _ in range(1000):
        im = np.zeros((h, w, c), np.float32)
        for ch in range(c):
            for _ in range(2):
                cy, cx, s = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.25)
                im[..., ch] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        im = np.clip(im / im.max() * 230 + rng.normal(0, 6, im.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(im[..., 0] if c == 1 else im).save(buf, format="PNG")
        blobs.append(buf.getvalue())
    total = 0
    for i in range(n):
        folder = root / f"{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        data = blobs[i % len(blobs)]
        (folder / f"{i:06d}.png").write_bytes(data)
        total += len(data)
    return total


def drop_from_page_cache(paths) -> None:
    """Evict the files from the page cache (written back first: dirty pages cannot be dropped)."""
    os.sync()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def gather_epoch(mapped: torch.Tensor, order: torch.Tensor, batch: int = 256) -> None:
    for i in range(0, len(order), batch):
        mapped[order[i : i + batch]]


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def measure(root: Path, base: Path, n: int) -> dict:
    runs = {"listing": [], "decoding": [], "build": [], "read_cold": [], "read_warm": [], "gather": []}
    mb = 0.0
    for _ in range(REPEATS):
        s, listing = timed(cache.take_listing, root)
        runs["listing"].append(s)
        drop_from_page_cache(listing.files)
        s, data = timed(read_images, root, show_progress=False, listing=(listing.files, listing.others))
        runs["decoding"].append(s)
        assert len(data) == n
        del data
        shutil.rmtree(base, ignore_errors=True)
        s, data = timed(cache.read_images_cached, root, cache_dir=base, show_progress=False, listing=listing)
        runs["build"].append(s)
        mb = data.array.nbytes / 1e6
        del data
        (entry,) = [p for p in base.iterdir() if p.is_dir()]
        for which in ("read_cold", "read_warm"):
            if which == "read_cold":
                drop_from_page_cache([entry / "data.npy"])
            cache._verified.clear()  # as a new process: the checksums are checked again
            read = cache.read_images_cached
            s, data = timed(read, root, cache_dir=base, show_progress=False, listing=listing, in_memory_limit=1 << 40)
            assert any("in memory" in note for note in data.notes)
            runs[which].append(s)
            del data
        mapped = torch.from_numpy(np.load(entry / "data.npy", mmap_mode="c"))
        order = torch.randperm(len(mapped), generator=torch.Generator().manual_seed(0))
        s, _ = timed(gather_epoch, mapped, order)
        runs["gather"].append(s)
    return {"decoded_mb": mb, "seconds": runs}


REPEATS = 3


def main() -> None:
    global REPEATS
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=PER)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--kinds", default="28x28x1,32x32x3")
    p.add_argument("--dir", default=None)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale.json"))
    a = p.parse_args()
    REPEATS = a.repeats
    results = {"images": a.images, "repeats": a.repeats, "cpus": len(os.sched_getaffinity(0)), "kinds": {}}
    with tempfile.TemporaryDirectory(prefix="aekit-scale-", dir=a.dir) as tmp:
        for kind in a.kinds.split(","):
            h, w, c = map(int, kind.split("x"))
            root, base = Path(tmp, kind, "imgs"), Path(tmp, kind, "cache")
            root.mkdir(parents=True)
            s, png_bytes = timed(make_pngs, root, a.images, h, w, c)
            before = load()
            res = measure(root, base, a.images)
            res.update(png_mb=png_bytes / 1e6, write_seconds=s, load_before=before, load_after=load())
            results["kinds"][kind] = res
            shutil.rmtree(Path(tmp, kind))
            print(report(kind, res, a.images), flush=True)
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")


def report(kind: str, res: dict, n: int) -> str:
    scale = PER / n
    lines = [f"{kind}: {n} PNGs ({res['png_mb']:.0f} MB), decoded {res['decoded_mb']:.0f} MB; {res['load_before']}"]
    for name, times in res["seconds"].items():
        per = [t * scale for t in times]
        rate = ""
        if name.startswith("read") or name == "gather":
            rate = "  " + " / ".join(f"{res['decoded_mb'] / t:.0f}" for t in times) + " MB/s"
        else:
            rate = "  " + " / ".join(f"{n / t:.0f}" for t in times) + " files/s"
        lines.append(
            f"  {name:10s} per 100k: "
            + " / ".join(f"{t:.2f}" for t in per)
            + f" s (median {statistics.median(per):.2f})"
            + rate
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
