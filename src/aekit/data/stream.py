"""Streaming input: WebDataset-style tar shards, decoded on the fly, never cached.

A source is a folder holding `*.tar` files, one `.tar` file, or a brace pattern such as
`shards/data-{000..009}.tar`; local paths or fsspec URLs (`file://`, `s3://` with s3fs, ...).
Each sample is the group of consecutive members sharing a key (the name up to its first dot):
`000123.png` is the image, `000123.cls` or `000123.json` beside it are ignored.

Read with the standard library's `tarfile` in stream mode (`r|*`, one sequential read a shard,
gzip too) through `fsspec.open` (which comes with torch) for URLs, inside a
`torch.utils.data.IterableDataset` whose DataLoader workers decode with Pillow: no extra package,
and the skip policy (a corrupt member or a truncated shard is skipped and counted, never fatal) and
the seeded order that an exact resume needs stay in aekit's hands.

What the run needs before training (`read_stream`): the decode plan (channels, size, 16-bit) from
the first `PLAN_SAMPLE` samples, and a first sample of up to `STREAM_SAMPLE` items in shard order,
decoded into memory: the validation items are a seeded `--val-fraction` of it (left out of the
training stream), its other items give the normalisation statistics and the PCA start.
"""

from __future__ import annotations

import io
import os
import random
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from aekit.core.errors import AekitError
from aekit.data.base import LoadedData, Skipped
from aekit.data.images import IMAGE_EXTENSIONS, Probe, _decode_image, _Plan, _plan, _probe_image

STREAM_SAMPLE = 2000  # items decoded up front: validation, normalisation statistics, PCA
PLAN_SAMPLE = 64  # samples whose headers choose channels and size
SHUFFLE_BUFFER = 1000  # items each worker shuffles among
BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def is_url(path: str) -> bool:
    return "://" in path


def is_stream_source(data) -> bool:
    """Whether DATA names tar shards: a .tar file or URL, a brace pattern of them, or a folder
    holding .tar files (at its top level)."""
    if not isinstance(data, (str, Path)):
        return False
    text = str(data)
    if text.endswith((".tar", ".tar.gz", ".tgz")) or (BRACE.search(text) and ".tar" in text):
        return True
    p = Path(text)
    if is_url(text) or not p.is_dir():
        return False
    return any(q.suffix == ".tar" for q in p.iterdir() if not q.name.startswith("."))


def source_name(spec) -> str:
    """How tar shards are named in outputs: a URL or brace pattern as given, a path resolved."""
    return str(spec) if is_url(str(spec)) or BRACE.search(str(spec)) else str(Path(spec).resolve())


def expand_shards(spec: str) -> list[str]:
    """The shard paths or URLs of `spec`, in order."""
    spec = str(spec)
    m = BRACE.search(spec)
    if m:
        a, b = m.group(1), m.group(2)
        width = len(a) if a.startswith("0") or len(a) == len(b) else 0
        lo, hi = int(a), int(b)
        if hi < lo:
            raise AekitError(f"the brace pattern {m.group(0)} in {spec} counts down; write it as {{{b}..{a}}}")
        out = []
        for i in range(lo, hi + 1):
            out += expand_shards(spec[: m.start()] + str(i).zfill(width) + spec[m.end() :])
        return out
    if is_url(spec):
        return [spec]
    p = Path(spec)
    if p.is_dir():
        found = sorted(str(q) for q in p.iterdir() if q.suffix == ".tar" and not q.name.startswith("."))
        if not found:
            raise AekitError(f"{spec} holds no .tar shards")
        return found
    if not p.exists():
        raise AekitError(
            f"{spec} does not exist; pass a folder of .tar shards, a .tar file or a pattern like a-{{0..9}}.tar"
        )
    return [str(p)]


def _open(url: str):
    if is_url(url):
        try:
            import fsspec
        except ImportError:  # pragma: no cover - fsspec comes with torch
            raise AekitError(f"reading {url} needs fsspec (pip install fsspec)") from None
        return fsspec.open(url, "rb").open()
    return open(url, "rb")


def shard_samples(url: str, skipped: list[Skipped]) -> Iterator[tuple[str, bytes]]:
    """(id, image bytes) of each sample of one shard, in its order; a shard that cannot be read
    further (corrupt or truncated) ends with a Skipped appended. The id is `shard/key`."""
    name = url.rsplit("/", 1)[-1]
    key, data = None, None
    n = 0
    try:
        with _open(url) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                base = member.name.rsplit("/", 1)[-1]
                if base.startswith("."):
                    continue
                k, ext = _split(member.name)
                if k != key:
                    if data is not None:
                        yield f"{name}/{key}", data
                        n += 1
                    key, data = k, None
                if "." + ext.lower() in IMAGE_EXTENSIONS and data is None:
                    if too_large(member.size):  # never read into memory (a gzip bomb in a .tar.gz)
                        skipped.append(Skipped(f"{name}/{k}", f"{member.name}: {member.size} bytes, {TOO_LARGE}"))
                        continue
                    data = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        skipped.append(Skipped(f"{name} (after {n} samples)", f"corrupt or truncated shard, rest skipped: {e}"))
        return
    if data is not None:
        yield f"{name}/{key}", data


TOO_LARGE = "more than an uncompressed 16-bit RGBA image at Pillow's pixel limit (Image.MAX_IMAGE_PIXELS)"


def too_large(size: int) -> bool:
    """Whether an image file of `size` bytes is over any image Pillow decodes: 8 bytes per pixel."""
    from PIL import Image

    return bool(Image.MAX_IMAGE_PIXELS) and size > 8 * Image.MAX_IMAGE_PIXELS


def _split(name: str) -> tuple[str, str]:
    """WebDataset's rule: the key is the member's path up to the first dot of its file name."""
    folder, _, base = name.rpartition("/")
    k, _, ext = base.partition(".")
    return (f"{folder}/{k}" if folder else k), ext


def probe_bytes(data: bytes) -> Probe:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValueError("empty member (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            return _probe_image(im)
    except UnidentifiedImageError:
        raise ValueError("not a recognised image format (Pillow cannot identify it)") from None
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"unreadable image: {e}") from None


def decode_bytes(data: bytes, plan: _Plan) -> np.ndarray:
    """(C, H, W) under `plan`; ValueError with the reason to skip it otherwise."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValueError("empty member (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            _probe_image(im)
            return _decode_image(im, plan.channels, plan.size, plan.high)
    except UnidentifiedImageError:
        raise ValueError("not a recognised image format (Pillow cannot identify it)") from None
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"unreadable image: {e}") from None


def count_samples(url: str) -> int:
    """Samples in one shard (headers only for a local file)."""
    keys = set()
    try:
        with _open(url) as f, tarfile.open(fileobj=f, mode="r:*" if not is_url(url) else "r|*") as tar:
            for m in tar:
                if m.isfile() and "." + m.name.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS:
                    keys.add(_split(m.name)[0])
    except (tarfile.TarError, OSError, EOFError):
        pass
    return len(keys)


def read_stream(
    spec,
    *,
    channels: int | None = None,
    image_size=None,
    sample: int = STREAM_SAMPLE,
    show_progress: bool = False,
) -> LoadedData:
    """The plan and the first sample of tar shards `spec`; `array` holds the sample (decoded),
    `stream` says how to read the rest (see StreamInput)."""
    if channels is not None and channels not in (1, 3, 4):
        raise AekitError(f"channels must be 1, 3 or 4 for image files, got {channels}; use 1 gray, 3 RGB, 4 RGBA")
    shards = expand_shards(str(spec))
    skipped: list[Skipped] = []
    raw: list[tuple[str, bytes]] = []
    for url in shards:
        for item in shard_samples(url, skipped):
            raw.append(item)
            if len(raw) >= sample:
                break
        if len(raw) >= sample:
            break
    probes, good = [], []
    for key, data in raw:
        try:
            probes.append(probe_bytes(data))
            good.append((key, data))
        except ValueError as e:
            skipped.append(Skipped(key, str(e)))
    if not good:
        where = shards[0] if len(shards) == 1 else f"{len(shards)} shards ({shards[0]}, ...)"
        first = f" (first skipped: {skipped[0].path}: {skipped[0].reason})" if skipped else ""
        raise AekitError(f"no readable image sample in {where}: each sample needs a .png/.jpg/... member{first}")
    user = _Plan(channels, None if image_size is None else (int(image_size[0]), int(image_size[-1])), None)
    plan, notes = _plan(probes[:PLAN_SAMPLE], user)
    rows, ids = [], []
    for key, data in good:
        try:
            rows.append(decode_bytes(data, plan))
            ids.append(key)
        except ValueError as e:
            skipped.append(Skipped(key, str(e)))
    array = np.stack(rows)
    exhausted = len(raw) < sample
    estimate = len(ids) if exhausted else count_samples(shards[0]) * len(shards)
    notes.append(
        f"streaming {len(shards)} tar shard(s): plan from the first {min(len(probes), PLAN_SAMPLE)} samples, "
        f"validation, statistics and PCA from the first {len(ids)} items; "
        + (f"{estimate} items" if exhausted else f"about {estimate} items (the first shard's count x shards)")
    )
    if plan.high:
        notes.append("16-bit or float images found: stored as 16-bit, full scale 65535")
    data = LoadedData(
        array=array,
        ids=ids,
        scale=65535.0 if plan.high else 255.0,
        source=source_name(spec),
        skipped=skipped,
        n_found=estimate,
        notes=notes,
    )
    data.stream = {"shards": shards, "plan": plan, "estimate": max(estimate, len(ids))}
    return data


def read_batches(
    spec, *, channels: int, size: tuple[int, int], high: bool, batch: int, skipped: list[Skipped], rank=0, world=1
) -> Iterator[tuple[list[str], np.ndarray]]:
    """Every sample of tar shards `spec` under a trained model's plan, in shard order, as batches
    of (ids, (B, C, H, W) uint8 or uint16): what `aekit encode` and `score` read from shards, one
    batch in memory at a time. Under torchrun rank r reads shards r, r + world, ...; unreadable
    samples and shards are appended to `skipped`."""
    plan = _Plan(channels, (int(size[0]), int(size[1])), bool(high))
    ids: list[str] = []
    rows: list[np.ndarray] = []
    for url in expand_shards(str(spec))[rank::world]:
        for key, data in shard_samples(url, skipped):
            try:
                rows.append(decode_bytes(data, plan))
                ids.append(key)
            except ValueError as e:
                skipped.append(Skipped(key, str(e)))
            if len(rows) == batch:
                yield ids, np.stack(rows)
                ids, rows = [], []
    if rows:
        yield ids, np.stack(rows)


class ShardStream(torch.utils.data.IterableDataset):
    """The training items of tar shards as batches: an iterable dataset for a DataLoader with
    `batch_size=None`. Each epoch the shards are put in a seeded order, dealt out to the ranks
    (`rank::world`) and within a rank to the DataLoader workers; each worker reads its shards in
    turn, leaves out the `exclude` ids (validation), decodes, shuffles through a buffer of
    `buffer` items (seeded) and yields (uint8/uint16 (B, C, H, W) tensor, skipped) where skipped
    lists the (id, reason) of items it could not use since its last batch."""

    def __init__(self, shards, plan, batch, seed, exclude, rank=0, world=1, buffer=SHUFFLE_BUFFER):
        self.shards, self.plan, self.batch, self.seed = list(shards), plan, batch, seed
        self.exclude, self.rank, self.world, self.buffer = frozenset(exclude), rank, world, buffer

    def mine(self, worker: int, workers: int) -> list[str]:
        order = list(self.shards)
        random.Random(self.seed).shuffle(order)
        return order[self.rank :: self.world][worker::workers]

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(self.seed * 1009 + self.rank * 101 + worker)
        buf, out, bad = [], [], []

        def emit(x):
            out.append(x)
            if len(out) == self.batch:
                batch = torch.from_numpy(np.stack(out))
                out.clear()
                skipped = list(bad)
                bad.clear()
                return batch, skipped
            return None

        for url in self.mine(worker, workers):
            shard_bad: list[Skipped] = []
            for key, data in shard_samples(url, shard_bad):
                if key in self.exclude:
                    continue
                try:
                    x = decode_bytes(data, self.plan)
                except ValueError as e:
                    bad.append((key, str(e)))
                    continue
                if len(buf) < self.buffer:
                    buf.append(x)
                    continue
                j = rng.randrange(len(buf))
                buf[j], x = x, buf[j]
                got = emit(x)
                if got is not None:
                    yield got
            bad += [(s.path, s.reason) for s in shard_bad]
        rng.shuffle(buf)
        for x in buf:
            got = emit(x)
            if got is not None:
                yield got
        if out or bad:
            yield (torch.from_numpy(np.stack(out)) if out else None), list(bad)


MAX_WORKERS = 8  # DataLoader workers per process


def workers_for(n_shards: int) -> int:
    """DataLoader workers of one process: at most one per shard it reads and MAX_WORKERS, and its
    share of the machine's CPUs: under torchrun the LOCAL_WORLD_SIZE processes of a machine split
    them (8 GPUs of a 32-CPU machine: 4 workers each, not 8 each on 32 CPUs)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(1, min(n_shards, cpus // local, MAX_WORKERS))


def epoch_batches(
    stream: dict, batch: int, seed: int, exclude, rank: int = 0, world: int = 1, pin: bool = False
) -> Iterator:
    """The batches of one epoch (see ShardStream), decoded by DataLoader worker processes; with
    `pin` (training on CUDA) in page-locked memory, so their copy to the GPU is asynchronous."""
    ds = ShardStream(stream["shards"], stream["plan"], batch, seed, exclude, rank, world)
    n_mine = len(ds.mine(0, 1))
    workers = workers_for(n_mine) if n_mine > 1 else 0
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=workers, worker_init_fn=_worker_init, pin_memory=pin
    )
    return iter(loader)


def _worker_init(_: int) -> None:
    from aekit.core.rundir import drop_inherited_locks

    drop_inherited_locks()


def write_shards(folder, out, per_shard: int = 1000, prefix: str = "data") -> list[Path]:
    """WebDataset-style shards of the images under `folder` (sorted, recursive): `out/prefix-000000.tar`, ...
    each holding `per_shard` samples `NNNNNN.<ext>` (the file's bytes, not decoded) and `NNNNNN.txt`
    (its path under `folder`)."""
    folder, out = Path(folder), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    written = []
    for start in range(0, len(files), per_shard):
        path = out / f"{prefix}-{start // per_shard:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for i, f in enumerate(files[start : start + per_shard], start):
                tar.add(f, arcname=f"{i:06d}{f.suffix.lower()}")
                name = str(f.relative_to(folder)).encode()
                info = tarfile.TarInfo(f"{i:06d}.txt")
                info.size = len(name)
                tar.addfile(info, io.BytesIO(name))
        written.append(path)
    return written
