"""Decode once: the decoded array of a folder is kept on disk and reused by later runs.

An entry is a folder `<cache_dir>/<key>/` holding `data.npy` (N, C, H, W, uint8 or uint16, memory
mappable) and `index.json` (item ids, skipped files, scale, notes). The key is a fingerprint of
the file list (relative paths, sizes, modification times), the preprocessing options, the cache
format and the decoders' versions (Pillow, pyspng): change a file, an option or a decoder and
the entry is rebuilt.

Builds are atomic: an entry is decoded into `.tmp-<key>-<pid>/` and renamed into place only when
complete, so a killed build is never used. A set that fits in memory (half the RAM by default)
is decoded into memory and written out once; a larger one is decoded straight into its memory
map. A full disk (or any error writing the cache) keeps the decoded set in memory with a note.
Later reads hold entries that fit in memory in memory; larger ones stay memory-mapped and
batches are read from the map. With several processes per machine (torchrun) every process maps
the entry, never copies it: one decoded copy per machine, in the page cache, shared (memory_limit).

Integrity: index.json records a CRC-32 of every 16 MB of each array's data, with its shape and
type, and a CRC-32 of its own content, computed when the entry is built. The first read of an entry
in a process checks them (one sequential pass; later reads in the same process trust it); a
mismatch (flipped bits, a truncated or overwritten file, a changed id or scale) prints one line and
the entry is rebuilt, never used; an entry that cannot be read at all is rebuilt too. An alias
names an entry of its folder and nothing else. A CRC detects corruption, not tampering: whoever can
write the cache can write its index too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import tokenize
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL

from aekit.core.progress import console
from aekit.data.base import LoadedData, Skipped
from aekit.data.images import pyspng, read_images, scan, shared_empty

CACHE_VERSION = 3  # 2: index.json holds the checksums of the arrays; 3: and one of itself
CHECK_CHUNK = 16 << 20  # bytes of array data per CRC-32
STALE_SECONDS = 24 * 3600  # unfinished builds older than this are removed
SIZES_KEPT = 64  # an entry's index keeps this many of its most common image sizes (data/shards.py)
DECODED = "decoded into memory"
# what reading a damaged entry raises (numpy parses a .npy header as Python literals: TokenError)
UNUSABLE = (OSError, ValueError, KeyError, TypeError, EOFError, SyntaxError, tokenize.TokenError)


def default_cache_dir() -> Path:
    """$AEKIT_CACHE_DIR, else the user cache directory (e.g. ~/.cache/aekit)."""
    if os.environ.get("AEKIT_CACHE_DIR"):
        return Path(os.environ["AEKIT_CACHE_DIR"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("aekit"))


def memory_limit() -> int:
    """Bytes of decoded data a process holds in memory rather than memory-mapped: half the physical
    RAM for one process; 0 with several processes per machine (torchrun's LOCAL_WORLD_SIZE), which
    then all map the one file: the page cache holds a single copy that they share read-only, where
    8 private copies could exhaust the RAM on data far smaller than it."""
    if local_processes() > 1:
        return 0
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def local_processes() -> int:
    """The processes of this run on this machine: torchrun's LOCAL_WORLD_SIZE, else 1."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def index_of(data: LoadedData, **extra) -> dict:
    """What a cache entry's index.json records of the decoded data besides the array itself."""
    return {
        "ids": data.ids,
        "scale": data.scale,
        "source": data.source,
        "skipped": [{"path": s.path, "reason": s.reason} for s in data.skipped],
        "n_found": data.n_found,
        "notes": data.notes,
        "adapted": data.adapted,
        "n_valid": len(data.ids),
        **extra,
        "created": time.time(),
    }


@dataclass
class Listing:
    """A folder's image files in sorted order with their sizes and modification times (one stat
    each), and the other files found beside them: what a cache key is made from. Under torchrun
    rank 0 alone takes it and sends it to the other processes (data/shards.py)."""

    files: list[Path]
    others: list[Skipped]
    stats: list[tuple[int, int]]  # (size in bytes, modification time in ns) of each file

    def part(self, node: int, nodes: int) -> Listing:
        """The files of machine `node` of `nodes`: every nodes-th file of the sorted listing from
        the node-th on (strided, so that each machine gets a like mix of the folders)."""
        return Listing(self.files[node::nodes], self.others, self.stats[node::nodes])


def take_listing(root: str | Path, extensions: list[str] | tuple[str, ...] = ()) -> Listing:
    """The Listing of the image files under `root` (images.scan, then one stat per file)."""
    files, others = scan(root, extensions)
    return Listing(files, others, [_size_and_time(f) for f in files])


def _size_and_time(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def listing_digest(files: list[Path], others: list[Skipped], stats: list[tuple[int, int]] | None = None) -> str:
    """Digest of the file list with sizes and modification times (`stats`, else one stat per file)."""
    h = hashlib.sha256()
    for i, f in enumerate(files):
        size, mtime = stats[i] if stats is not None else _size_and_time(f)
        h.update(os.fsencode(f) + f"\0{size}\0{mtime}\n".encode())  # any bytes a name holds
    for s in others:
        h.update(b"other\0" + os.fsencode(s.path) + b"\n")
    return h.hexdigest()


def fingerprint(root: Path, listing: str, options: dict) -> str:
    """Cache key: the listing digest, the preprocessing options, the cache format and the decoders."""
    head = {"v": CACHE_VERSION, "pillow": PIL.__version__, "root": str(root.resolve()), "options": options}
    if pyspng is not None:  # the PNG decoder too (it gives Pillow's pixels, tested; a new one rebuilds all the same)
        head["pyspng"] = getattr(pyspng, "__version__", "?")
    return hashlib.sha256((json.dumps(head, sort_keys=True) + listing).encode()).hexdigest()[:32]


def read_images_cached(
    root: str | Path,
    *,
    cache_dir: str | Path | None = None,
    channels: int | None = None,
    image_size: tuple[int, int] | list[int] | None = None,
    extensions: list[str] | tuple[str, ...] = (),
    high: bool | None = None,
    show_progress: bool = True,
    in_memory_limit: int | None = None,
    listing: Listing | None = None,
    shard: tuple[int, int, int] | None = None,
    verified: bool = False,
) -> LoadedData:
    """`read_images` through the cache: decode on the first call, reuse afterwards.

    `listing` is the folder's Listing when the caller has it (no file is then listed or stat'ed
    here). `shard=(node, nodes, files)`: `listing` is machine `node`'s part (Listing.part) of a
    folder of `files` image files, read into an entry of its own; `data.shard` records what
    data/shards.py needs. `verified`: the entry was checked by another process of this machine
    just now; trust it."""
    root = Path(root)
    mine = listing or take_listing(root, extensions)
    node, nodes, total = shard or (0, 1, len(mine.files))
    files, others = mine.files, mine.others
    options = {
        "channels": channels,
        "image_size": list(image_size) if image_size is not None else None,
        "extensions": sorted(e.lower() for e in extensions),
        "high": high,
    }
    base = Path(cache_dir) if cache_dir else default_cache_dir()
    listing = listing_digest(files, others, mine.stats)
    if nodes > 1:  # the files alone say which they are; the shard's own entry says it too
        listing += f"\nnode shard {node} of {nodes}, strided by file"
    key = fingerprint(root, listing, options)
    entry = base / key
    limit = memory_limit() if in_memory_limit is None else in_memory_limit
    if not entry.is_dir():  # same data and resolved options as an existing entry
        entry = aliased(base, key) or entry
    data, sizes = None, Counter()
    if (entry / "index.json").is_file():
        try:
            data, index = _load(entry, limit, check=not verified)
            sizes = Counter({(h, w): n for h, w, n in index.get("sizes", [])})
        except CorruptEntry as e:
            console.print(f"{e}; rebuilding it", style="yellow", markup=False, soft_wrap=True)
            shutil.rmtree(entry, ignore_errors=True)
        except UNUSABLE:
            shutil.rmtree(entry, ignore_errors=True)  # unreadable entry: rebuild it
    if data is None:
        data = _build(root, files, others, listing, base, key, options, show_progress, limit, sizes)
    if shard is not None:
        data.shard = {"node": node, "nodes": nodes, "files": total, "sizes": _top_sizes(sizes)}
    return data


def aliased(base: Path, key: str) -> Path | None:
    """The entry that `<key>.alias` under `base` names; None without one, or when what it holds is
    not an entry's name (a damaged alias must not lead out of the cache, where a rebuild deletes)."""
    try:
        name = (base / f"{key}.alias").read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return None
    return base / name if re.fullmatch(r"[0-9a-f]{32}", name) else None


def _top_sizes(sizes: Counter) -> list[list[int]]:
    return [[h, w, n] for (h, w), n in sizes.most_common(SIZES_KEPT)]


class CorruptEntry(ValueError):
    """A cache entry whose data do not match the checksums written when it was built."""


_verified: set[tuple[str, float]] = set()  # entries checked by this process: (folder, time built)


def checksums(path: Path) -> dict:
    """The shape, type and CRC-32 of every CHECK_CHUNK bytes of the data of the .npy file `path`."""
    a = np.load(path, mmap_mode="r")
    return {"shape": list(a.shape), "dtype": a.dtype.str, "crc32": _crcs(a)}


def _crcs(a: np.ndarray) -> list[int]:
    flat = a.reshape(-1).view(np.uint8)  # the file's data bytes, in order (C-contiguous .npy)
    return [zlib.crc32(flat[i : i + CHECK_CHUNK]) for i in range(0, len(flat), CHECK_CHUNK)]


def index_crc(index: dict) -> int:
    """CRC-32 of an index's content (all but the CRC itself)."""
    return zlib.crc32(json.dumps({k: v for k, v in index.items() if k != "index_crc32"}, sort_keys=True).encode())


def verify(entry: Path, index: dict, arrays: dict[str, np.ndarray]) -> None:
    """Check the entry's index against its own checksum, and `arrays` (the entry's .npy files,
    memory-mapped whole) against the checksums in it, once per entry and process; raises
    CorruptEntry naming the file and the bytes that differ."""
    if not isinstance(index, dict):
        raise CorruptEntry(f"the cache entry {entry} is corrupt: index.json holds no index")
    key = (str(entry), index.get("created", 0.0))
    if key in _verified:
        return
    if index.get("index_crc32") != index_crc(index):
        raise CorruptEntry(f"the cache entry {entry} is corrupt: index.json does not match its checksum")
    sums = index.get("checksums")
    if not isinstance(sums, dict):
        raise CorruptEntry(f"the cache entry {entry} has no checksums")
    for name, a in arrays.items():
        want = sums.get(name)
        if not isinstance(want, dict) or want.get("shape") != list(a.shape) or want.get("dtype") != a.dtype.str:
            raise CorruptEntry(f"the cache entry {entry} is corrupt: {name} is not the array it was built with")
        got = _crcs(a)
        if got != want.get("crc32"):
            bad = next((i for i, (g, w) in enumerate(zip(got, want["crc32"])) if g != w), len(got))
            at = f"MB {bad * (CHECK_CHUNK >> 20)}-{(bad + 1) * (CHECK_CHUNK >> 20)}"
            raise CorruptEntry(f"the cache entry {entry} is corrupt: {name} does not match its checksum ({at})")
    _verified.add(key)


def _load(entry: Path, limit: int, check: bool = True) -> tuple[LoadedData, dict]:
    index = json.loads((entry / "index.json").read_text())
    mapped = np.load(entry / "data.npy", mmap_mode="r")
    if check:
        verify(entry, index, {"data.npy": mapped})
    n = index["n_valid"]
    if mapped.nbytes <= limit:
        array = np.array(mapped[:n])  # one sequential read into memory
        where = "in memory"
    else:  # copy-on-write map: bounded memory; nothing writes it, so its pages stay the page cache's
        array = np.load(entry / "data.npy", mmap_mode="c")[:n]  # one copy, shared by every process mapping it
        where = "memory-mapped"
    data = LoadedData(
        array=array,
        ids=index["ids"],
        scale=index["scale"],
        source=index["source"],
        skipped=[Skipped(**s) for s in index["skipped"]],
        n_found=index["n_found"],
        notes=[*index["notes"], f"decoded images reused from the cache ({where}): {entry}"],
        adapted=index.get("adapted"),
    )
    return data, index


def start_entry(base: Path, key: str) -> Path:
    """A fresh temporary folder for the entry `key` under `base` (renamed into place by
    `finish_entry` once complete, so a killed build is never used); raises OSError."""
    base.mkdir(parents=True, exist_ok=True)
    _remove_stale(base)
    tmp = base / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def reserved_memmap(path: Path, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A new .npy memory map whose disk space is reserved now: a full disk fails here, not later."""
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    with open(path, "rb+") as f:
        reserve(f.fileno(), os.path.getsize(path))
    return mm


def reserve(fd: int, size: int) -> None:
    """Claim `size` bytes of disk for the file now, so that a full disk fails before writing;
    where the OS has no posix_fallocate (macOS, Windows) the write itself will fail instead."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)


def entry_allocator(tmp: Path, limit: int) -> Callable[[tuple[int, ...], type, str], np.ndarray]:
    """`allocate(shape, dtype, name)` for a build into `tmp`: an array that fits in `limit` bytes
    is made in memory (shared with forked decode workers) and written out by `save_arrays`, so the
    run trains from it with no copy; a larger one is a memory map of its file, filled in place."""

    def allocate(shape: tuple[int, ...], dtype: type, name: str) -> np.ndarray:
        if int(np.prod(shape)) * np.dtype(dtype).itemsize <= limit:
            return shared_empty(shape, dtype)
        return reserved_memmap(tmp / name, shape, dtype)

    return allocate


def save_arrays(tmp: Path, arrays: dict[str, np.ndarray | None]) -> None:
    """Write each array to `tmp/name` as .npy (memory maps are flushed in place; None: no file,
    removing one made for it); raises OSError."""
    for name, a in arrays.items():
        if isinstance(a, np.memmap):
            a.flush()
        elif a is None:
            (tmp / name).unlink(missing_ok=True)
        else:
            with open(tmp / name, "wb") as f:
                reserve(f.fileno(), a.nbytes + 4096)
                np.lib.format.write_array(f, np.ascontiguousarray(a), allow_pickle=False)
                f.truncate()


def write_entry(
    tmp: Path, entry: Path, data: LoadedData, arrays: dict[str, np.ndarray | None], index: dict, how: str
) -> bool:
    """Write `arrays` and `index` into `tmp` and make it the entry. On an OSError (a full disk)
    nothing is left behind, `data` (already in memory, `how`) gets a note, and the answer is False."""
    try:
        save_arrays(tmp, arrays)
        index = {**index, "checksums": {name: checksums(tmp / name) for name, a in arrays.items() if a is not None}}
        (tmp / "index.json").write_text(json.dumps({**index, "index_crc32": index_crc(index)}))
        finish_entry(tmp, entry)
        return True
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        data.notes.append(not_cached(e, how))
        return False


def not_cached(error: Exception, how: str) -> str:
    """The note of a read whose cache could not be written, saying `how` the data are held."""
    return f"cache not written ({getattr(error, 'strerror', None) or error}); {how}"


def finish_entry(tmp: Path, entry: Path) -> None:
    """Make the complete entry visible atomically."""
    _fsync_dir(tmp)
    try:
        os.rename(tmp, entry)
    except OSError:  # another process finished the same entry first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


def _build(root, files, others, listing, base, key, options, show_progress, limit, sizes: Counter) -> LoadedData:
    """Decode `files` into a new entry `key` (counting their image sizes into `sizes`)."""
    try:
        tmp = start_entry(base, key)
    except OSError as e:
        return _uncached(root, files, others, options, show_progress, e, sizes)
    allocate = entry_allocator(tmp, limit)
    try:
        data = read_images(
            root,
            **options,
            show_progress=show_progress,
            listing=(files, others),
            allocate=lambda shape, dtype: allocate(shape, dtype, "data.npy"),
            sizes=sizes,
        )
    except OSError as e:  # no room for the memory map of a large set
        shutil.rmtree(tmp, ignore_errors=True)
        sizes.clear()
        return _uncached(root, files, others, options, show_progress, e, sizes)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    index = index_of(data, sizes=_top_sizes(sizes))
    if not write_entry(tmp, base / key, data, {"data.npy": data.array}, index, DECODED):
        return data
    data.notes.append(f"decoded images cached in {base / key}")
    resolved = _resolved(data, options)
    _write_alias(base, key, fingerprint(root, listing, resolved))
    # a resume passes the run's channels and size with 16-bit left to the data (config.yaml): the same entry
    _write_alias(base, key, fingerprint(root, listing, {**resolved, "high": options["high"]}))
    return data


def _resolved(data: LoadedData, options: dict) -> dict:
    """The options that reading with inferred values amounted to (what encode/score pass explicitly)."""
    c, h, w = data.shape
    return {**options, "channels": c, "image_size": [h, w], "high": data.array.dtype == np.uint16}


def _write_alias(base: Path, key: str, resolved_key: str) -> None:
    if resolved_key == key:
        return
    tmp = base / f".tmp-{resolved_key}-{os.getpid()}.alias"
    try:
        tmp.write_text(key)
        os.replace(tmp, base / f"{resolved_key}.alias")
    except OSError:
        tmp.unlink(missing_ok=True)


def _uncached(root, files, others, options, show_progress, error, sizes: Counter | None = None) -> LoadedData:
    data = read_images(
        root,
        **options,
        show_progress=show_progress,
        listing=(files, others),
        sizes=sizes,
    )
    data.notes.append(not_cached(error, DECODED))
    return data


def _remove_stale(base: Path) -> None:
    now = time.time()
    for tmp in base.glob(".tmp-*"):
        try:
            if now - tmp.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def _fsync_dir(path: Path) -> None:
    for f in path.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
