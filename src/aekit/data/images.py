"""Read a folder (recursively) or a single file of images with Pillow, decoding each file once.

Policy, applied in this order:
- Files: extensions .png .jpg .jpeg .bmp .gif .tif .tiff .webp (any case, more with `--ext`);
  hidden files and folders are ignored; other files are listed as skipped. Order is the sorted
  relative path, so runs are deterministic.
- Orientation: EXIF orientation is applied. Animated GIF/WebP: the first frame.
- Channels: 1 when every image is grayscale (modes 1, L, LA, I, I;16, F, gray palettes), else 3.
  `channels=4` keeps alpha (opaque where an image has none); `channels=1` converts colour to luminance.
- Bit depth: when any image is 16-bit (modes I;16*, I) or float (mode F, taken as [0, 1]) the
  set is stored as uint16 with full scale 65535 and 8-bit images are multiplied by 257;
  otherwise uint8 with full scale 255.
- Size: every image is resized to cover the target size, keeping its aspect ratio, then
  center-cropped (Pillow's `ImageOps.fit`). Default target: the most common size in the folder,
  scaled down to a longest side of 128 when larger.
- Broken files (empty, truncated, unreadable, not an image, over Pillow's decompression-bomb
  limit) are skipped with a reason and never stop the run.

Plain 8-bit gray/RGB/RGBA PNGs already at the target size (the common case of a dataset of
patches) are decoded by libspng (pyspng) when installed, about 2x faster than Pillow and with the
very same pixels; every other file goes through Pillow.
"""

from __future__ import annotations

import logging
import mmap
import multiprocessing as mp
import os
import stat
import struct
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:
    import pyspng
except ImportError:  # no wheel for this platform: Pillow decodes every file
    pyspng = None

from aekit.core.errors import AekitError
from aekit.core.progress import track
from aekit.core.rundir import aekit_output
from aekit.data.base import LoadedData, Skipped

# Pillow logs why a file cannot be decoded (e.g. a TIFF tag out of range) and, with no handler set up,
# Python prints it to stderr: the file's skip reason already says it, on its one line
logging.getLogger("PIL").addHandler(logging.NullHandler())
# and warns about the malformed files it reads (corrupt EXIF, TIFF tags past the end, ...) and of sizes
# near its limit (which `probe` refuses, saying so), two lines each on stderr; a filter, not
# catch_warnings(), which is not thread-safe (files decode in threads)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DEFAULT_MAX_SIDE = 128
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
HIGH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
ALPHA_MODES = {"LA", "La", "RGBA", "RGBa", "PA"}
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_WORKERS = min(16, _CPUS * 2)
PROCESS_MIN_ITEMS = 2000  # below this, threads: a process pool costs ~0.3 s to start


@dataclass
class Probe:
    """What the file header says, without decoding pixels."""

    size: tuple[int, int]  # (H, W) after EXIF orientation
    gray: bool
    high: bool


def list_files(root: Path, extensions: tuple[str, ...]) -> tuple[list[Path], list[Skipped]]:
    """Image files under `root` in sorted order, and the non-image files found beside them."""
    if root.is_file():
        return [root], []
    found, others = [], []  # strings until the end: pathlib costs ~5 us a file, 50 ms for 10000
    top = str(root)
    for dirpath, _, filenames in walk(top, others):
        rel_dir = os.path.relpath(dirpath, top)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            ext = os.path.splitext(name)[1].lower()
            path = os.path.join(dirpath, name)
            if ext not in extensions:
                others.append(Skipped(prefix + name, f"not an image file (extension {ext or 'none'!r})"))
            elif reason := not_a_file(path):
                others.append(Skipped(prefix + name, reason))
            else:
                found.append((prefix + name, path))
    found.sort()
    return [Path(p) for _, p in found], others


def walk(top: str, skipped: list[Skipped] | None = None) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk in sorted order without hidden folders, following links to folders (a data set
    of symlinked class folders is common) but never into a folder it is already inside or has
    already listed: a link loop ends there. Folders of aekit's own results (a run folder inside
    the data, core/rundir.py OUTPUT_MARKERS) are never entered: listed in `skipped` instead."""
    seen = {os.path.realpath(top)}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        keep = []
        for d in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, d))
            if d.startswith(".") or real in seen:
                continue
            seen.add(real)
            if kind := aekit_output(real):
                if skipped is not None:
                    rel = os.path.relpath(os.path.join(dirpath, d), top).replace(os.sep, "/")
                    skipped.append(
                        Skipped(rel + "/", f"an aekit {kind} folder: aekit's own results, never read as data")
                    )
            else:
                keep.append(d)
        dirnames[:] = keep
        yield dirpath, dirnames, filenames


def not_a_file(path: str) -> str | None:
    """Why `path` cannot be read as a file (a broken link, a FIFO, a device), or None. One stat:
    opening a FIFO would wait forever for a writer."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist)" if os.path.islink(path) else "file vanished"
    except OSError as e:
        return f"cannot read file: {e.strerror or e}"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO, socket or device): never opened"
    return None


def _rel(path: Path, root: Path) -> str:
    """`path` relative to `root` with / separators (1 us; Path.relative_to plus a stat cost 16)."""
    return path.name if path == root else "/".join(path.parts[len(root.parts) :])


def probe(path: Path) -> Probe:
    """Read the header; raise ValueError with a user-readable reason for files to skip."""
    with _opened(path) as im:
        return _probe_image(im)


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """The image at `path`, opened (header read): a ValueError with the reason to skip it otherwise."""
    try:
        if path.stat().st_size == 0:
            raise ValueError("empty file (0 bytes)")
        im = Image.open(path)
    except ValueError:
        raise
    except UnidentifiedImageError:
        raise ValueError("not a recognised image format (Pillow cannot identify it)") from None
    except PermissionError:
        raise ValueError("cannot read file: permission denied") from None
    except Exception as e:  # any decoder error means: skip this file, say why
        raise ValueError(f"unreadable image: {e}") from None
    with im:
        yield im


def _probe_image(im: Image.Image) -> Probe:
    try:
        w, h = im.size
        if w * h > Image.MAX_IMAGE_PIXELS:
            raise ValueError(
                f"image too large ({w}x{h} px is over Pillow's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} px)"
            )
        if _orientation(im) in (5, 6, 7, 8):  # rotated by 90 degrees
            h, w = w, h
        gray = im.mode in GRAY_MODES or (im.mode in ("P", "PA") and _gray_palette(im))
        return Probe(size=(h, w), gray=gray, high=im.mode in HIGH_MODES)
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"unreadable image: {e}") from None


def _orientation(im: Image.Image) -> int | None:
    """EXIF orientation from the header. PNG's getexif() decodes the whole image to look for a
    trailing eXIf chunk; the header's chunk (where writers put it) is enough and 5x cheaper."""
    if im.format == "PNG" and "exif" not in im.info:
        return None
    return im.getexif().get(0x0112)


def _gray_palette(im: Image.Image) -> bool:
    pal = im.getpalette()
    if not pal:
        return False
    rgb = np.asarray(pal, dtype=np.uint8).reshape(-1, 3)
    return bool((rgb[:, 0] == rgb[:, 1]).all() and (rgb[:, 1] == rgb[:, 2]).all())


def _decode_image(im: Image.Image, channels: int, size: tuple[int, int], high: bool) -> np.ndarray:
    h, w = size
    try:
        if im.mode in ("RGB", "L", "RGBA", "CMYK", "YCbCr") and im.format == "JPEG":
            im.draft(im.mode, (max(h, w), max(h, w)))  # JPEG: decode at a reduced scale when large
        ImageOps.exif_transpose(im, in_place=True)  # no copy when nothing to rotate
        if im.mode in HIGH_MODES:
            arr = _fit_high(im, (w, h))  # (H, W) float in [0, 65535]
            arr = np.rint(arr).astype(np.uint16)
            out = arr[None] if channels == 1 else np.repeat(arr[None], 3, axis=0)
            if channels == 4:
                out = np.concatenate([out, np.full((1, h, w), 65535, np.uint16)])
            return out
        if im.mode in ("P", "PA") or (im.mode == "RGB" and "transparency" in im.info):
            im = im.convert("RGBA")
        target = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
        im = im.convert(target) if im.mode != target else im
        if im.size != (w, h):
            im = ImageOps.fit(im, (w, h), method=Image.Resampling.BICUBIC)
        arr = np.asarray(im, dtype=np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return arr.astype(np.uint16) * 257 if high else np.ascontiguousarray(arr)
    except PermissionError:
        raise ValueError("cannot read file: permission denied") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"truncated or corrupt image: {e}") from None


def _fit_high(im: Image.Image, size_wh: tuple[int, int]) -> np.ndarray:
    if im.mode == "F":
        arr = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0) * 65535.0
    else:
        arr = np.clip(np.asarray(im, dtype=np.float32), 0.0, 65535.0)
    fitted = ImageOps.fit(Image.fromarray(arr, mode="F"), size_wh, method=Image.Resampling.BICUBIC)
    return np.clip(np.asarray(fitted, dtype=np.float32), 0.0, 65535.0)


def infer_size(sizes: list[tuple[int, int]], max_side: int = DEFAULT_MAX_SIDE) -> tuple[tuple[int, int], str]:
    """The most common (H, W), scaled down to `max_side`; and a note saying how it was chosen."""
    counts = Counter(sizes)
    (h, w), count = counts.most_common(1)[0]
    note = f"{h}x{w} (the size of {count} of {len(sizes)} images)"
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        h2, w2 = max(1, round(h * s)), max(1, round(w * s))
        note = f"{h2}x{w2} (most common size {h}x{w} scaled to a longest side of {max_side})"
        h, w = h2, w2
    if len(counts) > 1:  # say how the others are fitted, and how to choose
        note += (
            f"; the images have {len(counts)} sizes: the others are resized to cover {h}x{w} and center-cropped. "
            "Choose another size with --image-size H W"
        )
    return (h, w), note


def scan(root: str | Path, extensions: list[str] | tuple[str, ...] = ()) -> tuple[list[Path], list[Skipped]]:
    """The image files under `root` and the other files found beside them; errors if there is no image."""
    root = Path(root)
    if not root.exists():
        raise AekitError(f"data path not found: {root}; pass an image folder or file that exists")
    exts = tuple(dict.fromkeys([*IMAGE_EXTENSIONS, *(e.lower() for e in extensions)]))
    files, others = list_files(root, exts)
    if not files:
        hint = f"looked for {' '.join(exts)}; pass --ext to add an extension"
        what = "no image files" if not others else f"no image files among {len(others)} files"
        raise AekitError(f"{what} under {root}; {hint}")
    return files, others


def read_images(
    root: str | Path,
    *,
    channels: int | None = None,
    image_size: tuple[int, int] | list[int] | None = None,
    extensions: list[str] | tuple[str, ...] = (),
    high: bool | None = None,
    show_progress: bool = True,
    listing: tuple[list[Path], list[Skipped]] | None = None,
    allocate: Callable[[tuple[int, ...], type], np.ndarray] = np.empty,
    sizes: Counter | None = None,
) -> LoadedData:
    """Decode every image under `root` into one (N, C, H, W) array; see the module policy.

    `listing` is `scan(root, extensions)` when the caller already has it (or a part of it);
    `allocate(shape, dtype)` makes the output array (a memory map for the cache). Rows past
    `len(ids)` are unused. `sizes`, when given, counts the (H, W) of every readable file (what the
    default image size is chosen from, data/shards.py merges them across machines)."""
    root = Path(root)
    if channels is not None and channels not in (1, 3, 4):
        raise AekitError(f"channels must be 1, 3 or 4 for image files, got {channels}; use 1 gray, 3 RGB, 4 RGBA")
    files, others = listing or scan(root, extensions)
    skipped = list(others)

    # One pass opens each file once: it reads the header and decodes the pixels under a plan
    # (channels, size, bit depth) guessed from a sample of headers. The plan the whole folder calls
    # for is known only once every header is read; when it differs from the guess, a second pass
    # decodes again under the right plan (a mixed folder, rarely). Row i of the array is file i.
    user = _Plan(channels, None if image_size is None else (int(image_size[0]), int(image_size[-1])), high)
    sample = [p for p in map(_probe_or_reason, files[:: max(1, len(files) // SAMPLE)]) if not isinstance(p, str)]
    plan = _plan(sample, user)[0] if sample else _Plan(user.channels or 3, user.size or (64, 64), bool(user.high))
    array = _allocate(allocate, files, plan)
    probes = _decode_pass(array, list(enumerate(files)), plan, show_progress, with_probe=True)
    good = []
    for i, (path, p) in enumerate(zip(files, probes)):
        if isinstance(p, str):
            skipped.append(Skipped(_rel(path, root), p))
        else:
            good.append(i)
    if not good:
        raise AekitError(
            f"no readable image under {root}: all {len(files)} image files were skipped "
            f"(first: {skipped[-1].path}: {skipped[-1].reason})"
        )
    final, notes = _plan([probes[i] for i in good], user)
    if sizes is not None:
        sizes.update(probes[i].size for i in good)
    failed = {}
    if final != plan:  # the sample missed what the folder holds: decode under the right plan
        del array  # (a memory map is made again at the same path)
        array = _allocate(allocate, files, final)
        redo = _decode_pass(array, [(i, files[i]) for i in good], final, show_progress, with_probe=False)
        failed = {i: r for i, r in zip(good, redo) if r is not None}
        plan = final
    kept = [i for i in good if i not in failed]
    skipped += [Skipped(_rel(files[i], root), r) for i, r in failed.items()]
    ids = [_rel(files[i], root) for i in kept]
    if len(kept) < len(files):  # close the gaps left by files that were skipped
        array[: len(kept)] = array[kept]
    if not ids:
        raise AekitError(f"no readable image under {root}: every file failed to decode (first: {skipped[-1].reason})")
    if plan.high:
        notes.append("16-bit or float images found: stored as 16-bit, full scale 65535")
    skipped.sort(key=lambda s: s.path)
    return LoadedData(
        array=array[: len(ids)],
        ids=ids,
        scale=65535.0 if plan.high else 255.0,
        source=str(root.resolve()),
        skipped=skipped,
        n_found=len(files) + len(others),
        notes=notes,
        adapted=adaptation([probes[i] for i in kept], user, plan),
    )


def adaptation(probes: list[Probe], user: _Plan, plan: _Plan) -> dict | None:
    """How many images a plan given to the reader (a model's channels and size) made fit: colour ones
    made gray or gray ones colour, and other sizes resized; None when every image was as planned."""
    channels = sum(p.gray != (plan.channels == 1) for p in probes) if user.channels is not None else 0
    other = [p.size for p in probes if p.size != tuple(plan.size)] if user.size is not None else []
    if not channels and not other:
        return None
    example = Counter(other).most_common(1)[0][0] if other else None
    return {
        "n": len(probes),
        "channels": channels,
        "to_channels": plan.channels,
        "resized": len(other),
        "example_size": list(example) if example else None,
        "to_size": list(plan.size),
    }


SAMPLE = 64  # headers read up front to guess the plan


@dataclass(frozen=True)
class _Plan:
    """How every image is decoded: channels, (H, W) and 16-bit; None where still to be chosen."""

    channels: int | None
    size: tuple[int, int] | None
    high: bool | None


def _plan(probes: list[Probe], user: _Plan) -> tuple[_Plan, list[str]]:
    """The module policy applied to the headers `probes`, with the user's choices kept; and notes
    saying how each choice was made."""
    notes = []
    channels, size, high = user.channels, user.size, user.high
    if channels is None:
        channels = 1 if all(p.gray for p in probes) else 3
        notes.append(f"channels: {channels} ({'every image is grayscale' if channels == 1 else 'colour images found'})")
    if size is None:
        size, note = infer_size([p.size for p in probes])
        notes.append(f"image size: {note}; pass --image-size to change")
    if high is None:
        high = any(p.high for p in probes)
    return _Plan(channels, size, high), notes


def _allocate(allocate: Callable, files: list[Path], plan: _Plan) -> np.ndarray:
    """The (N, C, H, W) array for `files` under `plan`, made by `allocate`."""
    shape = (len(files), plan.channels, *plan.size)
    dtype = np.uint16 if plan.high else np.uint8
    if allocate is np.empty and _use_processes(len(files)):
        allocate = shared_empty  # forked workers write their rows straight into it
    try:
        return allocate(shape, dtype)
    except MemoryError:
        need = int(np.prod(shape)) * np.dtype(dtype).itemsize
        raise AekitError(
            f"{len(files)} images of {shape[1]}x{shape[2]}x{shape[3]} need {need / 2**30:.1f} GiB, more than this "
            "machine can hold; pass a smaller --image-size"
        ) from None


def _decode_pass(array: np.ndarray, rows: list[tuple[int, Path]], plan: _Plan, show_progress: bool, with_probe: bool):
    """Decode file `path` into `array[i]` for each (i, path) in `rows`, on every core. Returns per
    row the file's Probe (`with_probe`) or None, or the reason to skip it."""
    global _JOB
    job = (array, rows, plan, with_probe)
    processes = _use_processes(len(rows))
    step = SPAN if processes else 8
    spans = [(a, min(a + step, len(rows))) for a in range(0, len(rows), step)]
    if not processes:  # threads get the job itself
        done = (r for part in parallel_map(partial(_decode_span, job=job), spans, False) for r in part)
        return list(track(done, len(rows), "decoding", show_progress))
    with _PROCESS_PASS:  # processes find it in _JOB, forked after it is set: one such pass at a time
        _JOB = job
        try:
            done = (r for part in parallel_map(_decode_span, spans, True) for r in part)
            return list(track(done, len(rows), "decoding", show_progress))
        finally:
            _JOB = None


def _probe_or_reason(path: Path) -> Probe | str:
    """probe(), with a skip reason (str) in place of the ValueError."""
    try:
        return probe(path)
    except ValueError as e:
        return str(e)


SPAN = 64  # files a worker process decodes per task: tasks are index ranges, not paths
_JOB: tuple | None = None  # (array, rows, plan, with_probe) of the running pass of worker processes
_PROCESS_PASS = threading.Lock()


def _decode_span(span: tuple[int, int], job: tuple | None = None) -> list[Probe | str | None]:
    """Decode rows[a:b] of the pass `job` (default _JOB): open each file once, read its header
    (kept when the pass wants it) and decode it into its row of the array; or give the reason to
    skip it."""
    array, rows, plan, with_probe = job or _JOB
    out: list[Probe | str | None] = []
    for row, path in rows[span[0] : span[1]]:
        fast = _fast_png(path, plan)
        if fast is not None:
            array[row] = fast[1]
            out.append(fast[0] if with_probe else None)
            continue
        try:
            with _opened(path) as im:
                header = _probe_image(im) if with_probe else None
                array[row] = _decode_image(im, plan.channels, plan.size, plan.high)
                out.append(header)
        except ValueError as e:
            out.append(str(e))
    return out


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CHANNELS = {0: 1, 2: 3, 6: 4}  # IHDR colour type -> channels: gray, RGB, RGBA


def _fast_png(path: Path, plan: _Plan) -> tuple[Probe, np.ndarray] | None:
    """(header, pixels) of a plain PNG decoded by libspng: 8-bit gray/RGB/RGBA, at the plan's size,
    without transparency chunk or EXIF, and a channel change Pillow makes without arithmetic (gray
    to RGB, adding or dropping an opaque alpha). None for anything else: Pillow decodes it."""
    if pyspng is None or not str(path).lower().endswith(".png"):
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(33)  # signature and IHDR: most files that do not qualify stop here
            if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
                return None
            w, h, depth, colour = struct.unpack(">IIBB", head[16:26])
            have = PNG_CHANNELS.get(colour)
            exact = have == plan.channels or (have, plan.channels) in ((1, 3), (1, 4), (3, 4), (4, 3))
            if depth != 8 or not exact or (h, w) != plan.size or w * h > Image.MAX_IMAGE_PIXELS:
                return None
            data = head + f.read()
    except OSError:
        return None
    if b"tRNS" in data or b"eXIf" in data:
        return None
    try:
        arr = pyspng.load(data)
    except Exception:  # corrupt or truncated: Pillow says why
        return None
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if have == 1 and plan.channels > 1:
        arr = np.repeat(arr, 3, axis=0)
    if arr.shape[0] < plan.channels:
        arr = np.concatenate([arr, np.full((1, h, w), 255, np.uint8)])
    arr = arr[: plan.channels]
    return Probe(size=(h, w), gray=have == 1, high=False), arr.astype(np.uint16) * 257 if plan.high else arr


def shared_empty(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """An array in anonymous shared memory: rows written by forked workers are seen by the parent."""
    count = int(np.prod(shape))
    buf = mmap.mmap(-1, max(1, count * np.dtype(dtype).itemsize))
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)


def _use_processes(n: int) -> bool:
    return n >= PROCESS_MIN_ITEMS and _CPUS >= 2 and sys.platform == "linux"


def parallel_map(fn: Callable, items: list, processes: bool | None = None) -> Iterator:
    """fn over items, in order, on every core: forked processes for large folders on Linux
    (decoding holds the GIL for much of its work), threads otherwise.

    Fork, not spawn or forkserver: those re-import the user's main script, which a library must
    not require to be guarded by `if __name__ == "__main__"`. The workers only run Pillow and numpy."""
    if not (_use_processes(len(items)) if processes is None else processes):
        with ThreadPoolExecutor(_WORKERS) as pool:
            yield from pool.map(fn, items)
        return
    chunk = max(1, min(256, len(items) // (_CPUS * 8)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+ warns on fork with threads
        pool = ProcessPoolExecutor(_CPUS, mp_context=mp.get_context("fork"))
    with pool:
        yield from pool.map(fn, items, chunksize=chunk)
