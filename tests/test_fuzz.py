"""Property-based fuzzing (hypothesis) of every reader and of run-folder loading: random bytes, and
small valid files with a few bytes or values changed, given as images (PNG, JPEG, TIFF, ...),
GeoTIFFs, .npy/.npz arrays, CSV/Parquet tables, tar shards, decode-cache entries and run folders
(model.json, model.safetensors, state.pt, config.yaml).

The contract every example checks (`contract`): the reader returns data or raises AekitError, whose
message is one line; never another exception, never a hang (a time limit per example), never a
huge allocation (the address space is capped per example; a swallowed MemoryError shows in a
reason), never a write outside the output folder, and the input files unchanged. A mutated cache
entry must be detected and rebuilt: what the cache gives equals a fresh decode.

A fixed seed and a few examples per reader in the test suite; `make fuzz` runs AEKIT_FUZZ_EXAMPLES
(2000) per reader.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import re
import resource
import shutil
import signal
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from aekit.cli.main import main
from aekit.core.errors import AekitError
from aekit.data import cache as image_cache
from tests.conftest import smooth_images, tree_digest, write_pngs

# what the examples' malformed files make libraries warn of (aekit filters Pillow's, pytest undoes it)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.*", "ignore:overflow encountered:RuntimeWarning")

EXAMPLES = int(os.environ.get("AEKIT_FUZZ_EXAMPLES", "0"))  # make fuzz: 2000 per reader
TIME_LIMIT = 10.0  # seconds per example: far more than any of them takes
MEMORY = 1536 << 20  # address space an example may add (bytes)


def fuzz(n: int, cli: bool = False):
    """hypothesis settings: n examples in the test suite, AEKIT_FUZZ_EXAMPLES under `make fuzz` (a
    tenth of them for end-to-end CLI tests); a fixed seed, no example database."""
    runs = (max(n, EXAMPLES // 10) if cli else EXAMPLES) or n
    return settings(
        max_examples=runs,
        derandomize=True,
        database=None,
        deadline=None,  # the time limit is contract()'s: hypothesis' own flakes on a loaded machine
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


# -- the contract --------------------------------------------------------------------------------


class Hang(Exception):
    """An example ran past TIME_LIMIT (raised again every second, should a reader's `except` catch it)."""


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def check_message(text: str) -> None:
    """A message the user reads: one line, no traceback, and no trace of an allocation that failed."""
    assert text.strip() and "\n" not in text.strip() and "Traceback" not in text, text
    for sign in ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory"):
        assert sign not in text, text


@contextmanager
def contract(*inputs: Path, outside: Path | None = None, allowed: tuple[str, ...] = ()):
    """Run the block as one example of the contract: an AekitError ends it (its message checked),
    any other exception fails it; TIME_LIMIT and MEMORY bound it; `inputs` are unchanged after it,
    and under `outside` nothing but the `allowed` names is added, removed or changed."""

    def alarm(signum, frame):
        late.append(True)
        raise Hang(f"no answer within {TIME_LIMIT} s")

    late: list[bool] = []

    watched = [p for p in (outside.iterdir() if outside else ()) if p.name not in allowed]
    before = tree_digest(*inputs), tree_digest(*watched), sorted(os.listdir(outside or "."))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + MEMORY
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT, 1.0)
    try:
        yield
    except AekitError as e:
        check_message(str(e))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert not late, f"no answer within {TIME_LIMIT} s"
    assert tree_digest(*inputs) == before[0], "an input file was changed"
    assert tree_digest(*watched) == before[1], "a file outside the output was changed"
    names = sorted(os.listdir(outside or "."))
    assert set(names) - set(allowed) == set(before[2]) - set(allowed), f"written beside the output: {names}"


@contextmanager
def example_dir():
    with tempfile.TemporaryDirectory(prefix="fuzz-") as d:
        yield Path(d)


def check_skips(data) -> None:
    for s in data.skipped:
        check_message(s.reason)
        assert not s.reason.rstrip().endswith(":"), s.reason  # an exception with no message: a MemoryError?


def check_items(data) -> None:
    """What a reader returned is usable: one id per item, items of (N, C, H, W)."""
    assert data.array.ndim == 4 and len(data.array) == len(data.ids) > 0, (data.array.shape, len(data.ids))
    if data.mask is not None:
        assert data.mask.shape == (len(data.array), 1, *data.array.shape[2:])
    check_skips(data)


# -- byte mutations ------------------------------------------------------------------------------

INTERESTING = (0, 1, 2, 3, 7, 8, 15, 16, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 100_000, 0x7FFFFFFF, 0xFFFFFFFF)


@st.composite
def mutated(draw, seed: bytes, fix: Callable[[bytearray], bytearray] | None = None, near: int = 160) -> bytes:
    """`seed` with 1 to 4 changes (a flipped bit, a byte, an integer field, a cut, a deletion, an
    insertion, a repeat), mostly in its first or last `near` bytes (where headers and footers are);
    `fix` then repairs what would stop a parser early (checksums)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        if n == 0:
            break
        where = draw(st.sampled_from(("head", "tail", "any")))
        lo, hi = {"head": (0, min(near, n - 1)), "tail": (max(0, n - near), n - 1), "any": (0, n - 1)}[where]
        at = draw(st.integers(lo, hi))
        op = draw(st.sampled_from(("flip", "byte", "int", "cut", "delete", "insert", "repeat")))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[at] = draw(st.integers(0, 255))
        elif op == "int":
            width = draw(st.sampled_from((1, 2, 4, 8)))
            value = draw(st.sampled_from(INTERESTING)) & ((1 << (8 * width)) - 1)
            data[at : at + width] = value.to_bytes(width, draw(st.sampled_from(("little", "big"))))
        elif op == "cut":
            del data[at:]
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 32))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 64))] * draw(st.integers(1, 8))
    return bytes(fix(data) if fix else data)


def fix_png(data: bytearray) -> bytearray:
    """Recompute the CRC of every whole chunk, so that a change reaches the decoder."""
    at = 8
    while at + 12 <= len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        end = at + 8 + length
        if end + 4 > len(data):
            break
        data[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(data[at + 4 : end])))
        at = end + 4
    return data


def fix_tar(data: bytearray) -> bytearray:
    """Recompute the checksum of every member header whose size field still parses."""
    at = 0
    while at + 512 <= len(data):
        head = data[at : at + 512]
        if not any(head):
            break
        head[148:156] = b" " * 8
        head[148:155] = b"%06o\0" % (sum(head) & 0o777777) + b" "
        data[at : at + 512] = head
        try:
            size = int(bytes(head[124:136]).strip(b"\0 ") or b"0", 8)
        except ValueError:
            break
        at += 512 + -(-size // 512) * 512
    return data


def raw_or_mutated(seeds: dict[str, bytes], fixes: dict[str, Callable] | None = None):
    """A (name, bytes) pair: a seed with a few changes (mostly), or random bytes after its first 8."""
    fixes = fixes or {}

    def of(name: str):
        seed = seeds[name]
        random_tail = st.binary(max_size=2048).map(lambda b: seed[:8] + b)
        fix = fixes.get(name)
        return st.tuples(st.just(name), st.one_of(mutated(seed, fix), mutated(seed, fix), random_tail))

    return st.sampled_from(sorted(seeds)).flatmap(of)


# -- seeds: small valid files of each format -------------------------------------------------------


def image_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


@functools.cache
def image_seeds() -> dict[str, bytes]:
    rgb = Image.fromarray(smooth_images(1, 12, 10, 3, seed=4)[0])
    gray = rgb.convert("L")
    return {
        "rgb.png": image_bytes(rgb, "PNG"),
        "gray16.png": image_bytes(Image.fromarray(np.asarray(gray).astype(np.uint16) * 257), "PNG"),
        "palette.png": image_bytes(rgb.convert("P"), "PNG"),
        "rgba.png": image_bytes(rgb.convert("RGBA"), "PNG"),
        "a.jpg": image_bytes(rgb, "JPEG", quality=80),
        "progressive.jpg": image_bytes(rgb, "JPEG", progressive=True, exif=b"Exif\0\0MM\0*\0\0\0\x08\0\0"),
        "a.tif": image_bytes(rgb, "TIFF"),
        "lzw.tif": image_bytes(gray, "TIFF", compression="tiff_lzw"),
        "a.bmp": image_bytes(rgb, "BMP"),
        "a.gif": image_bytes(rgb.convert("P"), "GIF"),
        "a.webp": image_bytes(rgb, "WEBP"),
    }


IMAGE_FIXES = {"rgb.png": fix_png, "gray16.png": fix_png, "palette.png": fix_png, "rgba.png": fix_png}


@functools.cache
def raster_seeds() -> dict[str, bytes]:
    from affine import Affine
    from rasterio.io import MemoryFile

    from tests.rasters import ORIGIN, PIXEL, smooth_bands

    out = {}
    for name, arr, kw in (
        ("u16.tif", smooth_bands(3, 16, 16), {"nodata": 0}),
        ("f32_tiled.tif", smooth_bands(1, 32, 32, dtype=np.float32), {"tiled": True, "blockxsize": 16,
                                                                       "blockysize": 16, "compress": "deflate"}),
        ("u8.tif", smooth_bands(5, 12, 12, dtype=np.uint8, gain=200, base=0), {"interleave": "band"}),
    ):  # fmt: skip
        c, h, w = arr.shape
        profile = {"driver": "GTiff", "height": h, "width": w, "count": c, "dtype": arr.dtype.name, **kw}
        profile.update(crs="EPSG:32633", transform=Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1]))
        with MemoryFile() as mem:
            with mem.open(**profile) as dst:
                dst.write(arr)
            out[name] = bytes(mem.read())
    return out


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


@functools.cache
def array_seeds() -> dict[str, bytes]:
    imgs = smooth_images(4, 6, 6, 3, seed=5)
    return {
        "u8.npy": npy_bytes(imgs),
        "f32.npy": npy_bytes(imgs.transpose(0, 3, 1, 2).astype(np.float32) / 255),
        "table.npy": npy_bytes(np.arange(24, dtype=np.float64).reshape(6, 4)),
        "gray.npz": npz_bytes(images=imgs[..., 0]),
        "two.npz": npz_bytes(True, x=imgs, labels=np.arange(4)),
    }


@st.composite
def npy_with_header(draw) -> bytes:
    """A .npy file whose header says what hypothesis likes: any type, order and shape (huge ones
    too), followed by a few bytes of data."""
    descr = draw(st.sampled_from(("|u1", "<u2", ">u2", ">f4", "<f8", "<f2", "<c8", "|O", "<i8", "|b1", "<U3", "|V4",
                                  "<M8[s]", [("a", "<f4")], "x", 7)))  # fmt: skip
    shape = tuple(draw(st.lists(st.sampled_from((0, 1, 2, 3, 6, 1 << 20, 1 << 31, 1 << 62, -1)), max_size=5)))
    header = {"descr": descr, "fortran_order": draw(st.booleans()), "shape": shape}
    text = repr(header).encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text
    return head + draw(st.binary(max_size=400))


def zipped(name: str, data: bytes, deflated: bool) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED) as z:
        z.writestr(name, data)
    return buf.getvalue()


# -- images --------------------------------------------------------------------------------------


@fuzz(100)
@given(data=st.data())
def test_image_files_read_or_one_line_error(data):
    from aekit.data.images import read_images

    name, blob = data.draw(raw_or_mutated(image_seeds(), IMAGE_FIXES))
    with_good = data.draw(st.booleans())
    size = data.draw(st.sampled_from((None, (8, 8))))
    with example_dir() as d:
        (d / "in").mkdir()
        (d / "in" / name).write_bytes(blob)
        if with_good:
            write_pngs(d / "in", smooth_images(1, 12, 10, 3))
        with contract(d / "in", outside=d):
            got = read_images(d / "in", image_size=size, show_progress=False)
            check_items(got)
            assert len(got) + len(got.skipped) == 1 + with_good


@fuzz(25)
@given(data=st.data())
def test_image_folders_read_in_shards_through_the_cache(data):
    """data/shards.py (one process), through the decode cache: a folder of a good and a changed image."""
    from aekit.core.distributed import Context
    from aekit.data.shards import read_folder_shared

    name, blob = data.draw(raw_or_mutated(image_seeds(), IMAGE_FIXES))
    with example_dir() as d:
        write_pngs(d / "in", smooth_images(2, 10, 10, 1))
        (d / "in" / name).write_bytes(blob)
        with contract(d / "in", outside=d, allowed=("cache",)):
            got = read_folder_shared(d / "in", Context(), cache_dir=d / "cache", show_progress=False)
            check_items(got)


# -- rasters -------------------------------------------------------------------------------------


@fuzz(60)
@given(data=st.data())
def test_rasters_read_or_one_line_error(data):
    pytest.importorskip("rasterio")
    from aekit.data.rasters import RasterOptions, read_rasters, use_rasterio

    name, blob = data.draw(raw_or_mutated(raster_seeds()))
    patch = data.draw(st.sampled_from((None, 8)))
    bands = data.draw(st.sampled_from((None, [1])))
    grid = data.draw(st.booleans())
    with example_dir() as d:
        (d / "in").mkdir()
        (d / "in" / name).write_bytes(blob)
        with contract(d / "in", outside=d):
            use_rasterio(d / "in", RasterOptions())
            got = read_rasters(d / "in", RasterOptions(bands=bands, patch_size=patch), grid=grid, show_progress=False)
            check_items(got)


# -- arrays --------------------------------------------------------------------------------------


@fuzz(150)
@given(data=st.data())
def test_array_files_read_or_one_line_error(data):
    from aekit.data.memory import read_array_file

    kind = data.draw(st.sampled_from(("seed", "header", "header in npz")))
    if kind == "seed":
        name, blob = data.draw(raw_or_mutated(array_seeds()))
    else:
        blob = data.draw(npy_with_header())
        name = "x.npy"
        if kind == "header in npz":
            name, blob = (
                "x.npz",
                zipped(data.draw(st.sampled_from(("images.npy", "a.npy"))), blob, data.draw(st.booleans())),
            )
    with example_dir() as d:
        (d / "in").mkdir()
        (d / "in" / name).write_bytes(blob)
        with contract(d / "in", outside=d):
            check_items(read_array_file(d / "in" / name))


# -- tables --------------------------------------------------------------------------------------

CELLS = st.one_of(
    st.sampled_from(("", "NA", "nan", "-nan", "inf", "-Inf", "1e308", "-1e309", "0x10", "1_000", "\uff11\uff12",
                     " 3 ", '"', '""', '"a,b"', "\\N", "True", "2024-01-01", "9" * 400, "1;2", "\t")),
    st.integers(-(10**20), 10**20).map(str),
    st.floats().map(repr),
    st.text(max_size=6),
)  # fmt: skip
HEADS = st.one_of(st.sampled_from(("id", "a", "b", "c", "x_id", "", " a ", "Unnamed: 0")), st.text(max_size=5))


@st.composite
def csv_bytes(draw) -> bytes:
    """A CSV file: a header and rows of numbers, missing values, text, quotes (ragged at times), in
    one of several delimiters, line ends and encodings."""
    delim = draw(st.sampled_from(",;\t|"))
    ncol = draw(st.integers(1, 5))
    rows = [draw(st.lists(HEADS, min_size=ncol, max_size=ncol))]
    for _ in range(draw(st.integers(0, 12))):
        ragged = draw(st.integers(0, 9)) == 0
        n = draw(st.integers(max(0, ncol - 1), ncol + 1)) if ragged else ncol
        rows.append(draw(st.lists(CELLS, min_size=n, max_size=n)))
    text = draw(st.sampled_from(("\n", "\r\n", "\r"))).join(delim.join(r) for r in rows)
    encoding = draw(st.sampled_from(("utf-8", "utf-8-sig", "utf-16", "latin-1")))
    return text.encode(encoding, errors="replace")


@functools.cache
def table_seeds() -> dict[str, bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv = "id,a,b,name\n" + "".join(f"r{i},{i * 0.5},{i % 3},n{i}\n" for i in range(8))
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(6)],
            "a": [0.5, 1.5, None, 2.0, 3.0, 4.0],
            "b": pa.array([1, 2, 3, 4, 5, 6], pa.int16()),
            "c": [True, False, True, True, False, True],
            "d": pa.array([1, 2, 3, 4, 5, 6], pa.decimal128(5, 2)),
            "when": pa.array(list(range(6)), pa.timestamp("s")),
            "tags": pa.array([["x"], [], ["y", "z"], None, ["x"], ["w"]]),
            "cat": pa.array(["u", "v", "u", "u", "v", "u"]).dictionary_encode(),
        }
    )
    seeds = {"t.csv": csv.encode(), "t.tsv": csv.replace(",", "\t").encode()}
    for name, kw in (("plain.parquet", {}), ("snappy.parquet", {"compression": "snappy", "use_dictionary": True})):
        buf = io.BytesIO()
        pq.write_table(table if kw else table.drop_columns(["tags"]), buf, **kw)
        seeds[name] = buf.getvalue()
    return seeds


@fuzz(120)
@given(data=st.data())
def test_tables_read_or_one_line_error(data):
    pytest.importorskip("pyarrow")
    from aekit.data.tables import read_table_file

    if data.draw(st.booleans()):
        name, blob = data.draw(st.sampled_from(("t.csv", "t.tsv"))), data.draw(csv_bytes())
    else:
        name, blob = data.draw(raw_or_mutated(table_seeds()))
    columns = data.draw(st.sampled_from((None, ["a"], ["a", "b"], ["zz"])))
    id_column = data.draw(st.sampled_from((None, "id", "a")))
    with example_dir() as d:
        (d / "in").mkdir()
        (d / "in" / name).write_bytes(blob)
        with contract(d / "in", outside=d):
            got = read_table_file(d / "in" / name, columns=columns, id_column=id_column)
            check_items(got)
            assert got.columns and np.isfinite(got.array).all()


# -- tar shards ----------------------------------------------------------------------------------


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, blob in members:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


@functools.cache
def shard_seeds() -> dict[str, bytes]:
    imgs = image_seeds()
    members = []
    for i, name in enumerate(("rgb.png", "a.jpg", "gray16.png")):
        key = f"{i:06d}"
        members += [(f"{key}.{name.split('.')[-1]}", imgs[name]), (f"{key}.cls", b"%d" % i), (f"{key}.json", b"{}")]
    return {"shard.tar": tar_bytes(members), "nested.tar": tar_bytes([("d/000000.png", imgs["rgba.png"])])}


@st.composite
def shard_file(draw) -> tuple[str, bytes]:
    name, blob = draw(raw_or_mutated(shard_seeds(), {"shard.tar": fix_tar, "nested.tar": fix_tar}))
    if draw(st.integers(0, 3)) == 0:
        return name + ".gz", gzip.compress(blob, mtime=0)
    return name, blob


@fuzz(100)
@given(data=st.data())
def test_tar_shards_read_or_one_line_error(data):
    from aekit.data.images import _Plan
    from aekit.data.stream import ShardStream, count_samples, read_batches, read_stream

    name, blob = data.draw(shard_file())
    reader = data.draw(st.sampled_from(("read_stream", "read_batches", "ShardStream")))
    with example_dir() as d:
        (d / "in").mkdir()
        (d / "in" / name).write_bytes(blob)
        shard = str(d / "in" / name)
        with contract(d / "in", outside=d):
            count_samples(shard)
            if reader == "read_stream":
                got = read_stream(shard, sample=data.draw(st.integers(1, 4)))
                check_items(got)
            elif reader == "read_batches":
                skipped = []
                size, high = data.draw(st.sampled_from(((8, 8), (12, 10)))), data.draw(st.booleans())
                for ids, x in read_batches(shard, channels=3, size=size, high=high, batch=2, skipped=skipped):
                    assert len(ids) == len(x) and x.shape[1:] == (3, *size)
                for s in skipped:
                    check_message(s.reason)
            else:
                stream = ShardStream([shard], _Plan(1, (8, 8), False), batch=2, seed=0, exclude=(), buffer=2)
                for x, bad in stream:
                    assert x is None or x.shape[1:] == (1, 8, 8)
                    for _, reason in bad:
                        check_message(reason)


# -- decode-cache entries ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cached_images(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(folder, cache, what a fresh decode gives): an image folder and its cache entry (with aliases)."""
    from aekit.data.cache import read_images_cached

    root = tmp_path_factory.mktemp("cached")
    write_pngs(root / "imgs", smooth_images(5, 10, 12, 3, seed=6))
    (root / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    fresh = read_images_cached(root / "imgs", cache_dir=root / "cache", show_progress=False)
    return root / "imgs", root / "cache", _facts(fresh)


@pytest.fixture(scope="module")
def cached_rasters(tmp_path_factory) -> tuple[Path, Path, dict]:
    pytest.importorskip("rasterio")
    from aekit.data.raster_cache import read_rasters_cached
    from aekit.data.rasters import RasterOptions
    from tests.rasters import tile_folder

    root = tmp_path_factory.mktemp("cached_rasters")
    tile_folder(root / "tiles", n=3, c=2, size=16)
    fresh = read_rasters_cached(root / "tiles", RasterOptions(), cache_dir=root / "cache", show_progress=False)
    return root / "tiles", root / "cache", _facts(fresh)


class Facts(dict):
    """What a fresh read gave (short in hypothesis' report of a failing example)."""

    def __repr__(self) -> str:
        return f"Facts(array {self['array'].shape}, {len(self['ids'])} ids)"


def _facts(data) -> Facts:
    mask = None if data.mask is None else np.array(data.mask)
    return Facts(array=np.array(data.array), ids=data.ids, scale=data.scale, mask=mask,
                 skipped=[(s.path, s.reason) for s in data.skipped], raster=data.raster)  # fmt: skip


def _same(data, facts: dict) -> None:
    """A cache read gave what a fresh decode gives: never what a changed entry holds."""
    got = _facts(data)
    assert np.array_equal(got["array"], facts["array"]) and got["array"].dtype == facts["array"].dtype
    assert (got["mask"] is None) == (facts["mask"] is None)
    assert got["mask"] is None or np.array_equal(got["mask"], facts["mask"])
    assert {k: got[k] for k in ("ids", "scale", "skipped", "raster")} == {
        k: facts[k] for k in ("ids", "scale", "skipped", "raster")
    }


JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from((1 << 40, 10**400, -1, [], {}, [[1, 2]], [{"path": 1}], "../victim", "/")),
)  # fmt: skip


def _leaves(value, path=()):
    """(path, value) of every leaf of parsed JSON, and of every list and dict too."""
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from _leaves(v, (*path, k))


@st.composite
def changed_json(draw, doc):
    """`doc` (parsed JSON) with one value replaced, a key removed or added."""
    doc = json.loads(json.dumps(doc))
    paths = [p for p, _ in _leaves(doc)]
    path = draw(st.sampled_from(paths))
    op = draw(st.sampled_from(("replace", "replace", "remove", "add")))
    if not path:
        return draw(JSON_VALUES) if op == "replace" else doc
    parent = functools.reduce(lambda v, k: v[k], path[:-1], doc)
    if op == "replace":
        parent[path[-1]] = draw(JSON_VALUES)
    elif op == "remove":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=4))] = draw(JSON_VALUES)
    else:
        parent.append(draw(JSON_VALUES))
    return doc


@st.composite
def changed_file(draw, path: Path, json_file: bool) -> bytes:
    """New bytes for `path`: its bytes changed, or (JSON) one of its values changed."""
    blob = path.read_bytes()
    if json_file and draw(st.booleans()):
        try:
            doc = json.loads(blob)
        except ValueError:  # changed already
            doc = {}
        return json.dumps(draw(changed_json(doc))).encode()
    return draw(mutated(blob, near=400))


def change_entry(data, cache: Path) -> None:
    """Change one file of the cache folder `cache` (an entry's array, mask or index, or an alias)."""
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    path = data.draw(st.sampled_from(files))
    if path.suffix == ".alias" and data.draw(st.booleans()):
        path.write_text(data.draw(st.sampled_from(("../victim", "/", "", "..", ".", "x" * 32, "a/b"))))
    else:
        path.write_bytes(data.draw(changed_file(path, path.suffix == ".json")))


def _victim(d: Path) -> Path:
    """A folder beside the cache that looks like an entry: nothing may remove or change it."""
    (d / "victim").mkdir()
    (d / "victim" / "index.json").write_text("{}")
    (d / "victim" / "data.npy").write_bytes(b"mine")
    return d / "victim"


@fuzz(60)
@given(data=st.data())
def test_a_changed_image_cache_entry_is_rebuilt_never_trusted(data, cached_images):
    from aekit.data.cache import read_images_cached

    folder, template, facts = cached_images
    resolved = data.draw(st.booleans())  # the options the first read resolved to: found through an alias
    opts = {"channels": 3, "image_size": [10, 12], "high": False} if resolved else {}
    with example_dir() as d:
        shutil.copytree(template, d / "cache")
        change_entry(data, d / "cache")
        image_cache._verified.clear()  # as in a new process
        with contract(folder, _victim(d), outside=d, allowed=("cache",)):
            _same(read_images_cached(folder, cache_dir=d / "cache", show_progress=False, **opts), facts)


@fuzz(40)
@given(data=st.data())
def test_a_changed_raster_cache_entry_is_rebuilt_never_trusted(data, cached_rasters):
    from aekit.data.raster_cache import read_rasters_cached
    from aekit.data.rasters import RasterOptions

    folder, template, facts = cached_rasters
    with example_dir() as d:
        shutil.copytree(template, d / "cache")
        change_entry(data, d / "cache")
        image_cache._verified.clear()
        with contract(folder, _victim(d), outside=d, allowed=("cache",)):
            _same(read_rasters_cached(folder, RasterOptions(), cache_dir=d / "cache", show_progress=False), facts)


# -- run folders ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """(run, {format: data}): a tiny model trained once on 8x8 gray images, and data to encode."""
    import aekit

    root = tmp_path_factory.mktemp("fuzz_run")
    x = smooth_images(32, 8, 8, 1, seed=7)[..., 0]
    aekit.train(x, out=root / "run", max_steps=5, latent_dim=4, width=8, batch_size=8, verbose=False)
    write_pngs(root / "data" / "imgs", smooth_images(3, 8, 8, 1))
    np.save(root / "data" / "x.npy", x[:4])
    (root / "data" / "s.tar").write_bytes(shard_seeds()["shard.tar"])
    return root / "run", {
        "folder": root / "data" / "imgs",
        "npy": root / "data" / "x.npy",
        "tar": root / "data" / "s.tar",
    }


RUN_FILES = ("model.json", "model.safetensors")


def _changed_run(data, run: Path, d: Path, files=RUN_FILES) -> Path:
    shutil.copytree(run, d / "run", symlinks=True)
    for _ in range(data.draw(st.integers(1, 2))):
        path = d / "run" / data.draw(st.sampled_from(files))
        path.write_bytes(data.draw(changed_file(path, path.suffix == ".json")))
    return d / "run"


@fuzz(60)
@given(data=st.data())
def test_a_changed_run_folder_loads_or_is_one_line(data, trained):
    import aekit

    run, _ = trained
    x = smooth_images(3, 8, 8, 1)
    with example_dir() as d:
        changed = _changed_run(data, run, d)
        with contract(changed, outside=d):
            model = aekit.load(changed, device="cpu")
            z = model.encode(x)
            assert z.shape == (3, model.latent_dim)
            assert model.reconstruct(x).shape == x.shape
            assert model.score(x).shape == (3,) and model.score(x, metric="mse+latent").shape == (3,)
            assert model.threshold is None or np.isfinite(model.threshold)


@fuzz(60)
@given(data=st.data())
def test_a_changed_state_or_pca_file_loads_or_is_one_line(data, trained):
    """state.pt (what --resume reads) and pca.safetensors (what evaluate reads)."""
    from aekit.models.checkpoint import load_pca
    from aekit.training.state import load_state

    run, _ = trained
    name = data.draw(st.sampled_from(("state.pt", "pca.safetensors")))
    with example_dir() as d:
        changed = _changed_run(data, run, d, files=(name,))
        with contract(changed, outside=d):
            if name == "state.pt":
                assert isinstance(load_state(changed), dict)
            else:
                pca = load_pca(changed)
                assert pca.components.shape[0] == pca.mean.shape[0]


YAML_VALUES = st.one_of(
    JSON_VALUES,
    st.sampled_from(("!!python/object/apply:os.system ['touch pwned']", "*a", "&a [1, 2]", "{", "2001-12-14",
                     "!!binary aGk=", "[[[[[[[[[[]]]]]]]]]]", "1e400", ".nan", "~", "yes", "0o17", "[*a, *a]")),
)  # fmt: skip


@functools.cache
def config_text() -> str:
    """A config.yaml as a run writes it: every option, resolved, and the data."""
    import yaml

    from aekit.config.train import make_config

    cfg = make_config(latent_dim=4, depth=1, width=8, channels=1, image_size=[8, 8], epochs=2, precision="fp32")
    return yaml.safe_dump({"data": "array", **cfg.to_dict()}, sort_keys=False)


@st.composite
def changed_yaml(draw, text: str) -> bytes:
    kind = draw(st.sampled_from(("bytes", "value", "value")))
    if kind == "bytes":
        return draw(mutated(text.encode(), near=400))
    lines = text.splitlines()
    i = draw(st.integers(0, len(lines) - 1))
    key = lines[i].split(":", 1)[0]
    value = draw(YAML_VALUES)
    lines[i] = f"{key}: {value if isinstance(value, str) else json.dumps(value)}"
    return "\n".join(lines).encode()


@fuzz(200)
@given(data=st.data())
def test_a_changed_config_file_loads_or_is_one_line(data):
    from aekit.config.train import load_yaml, make_config

    with example_dir() as d:
        (d / "in").mkdir()
        (d / "in" / "config.yaml").write_bytes(data.draw(changed_yaml(config_text())))
        with contract(d / "in", outside=d):
            check_types(make_config(load_yaml(d / "in" / "config.yaml")))


SCALARS = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,)}
LOOSE = {"checkpoint_every": (int,)}  # "500" or 500 (config/train.py parse_every)


def check_types(cfg) -> None:
    """Every value of an accepted config has its field's type (str | None, list[int], ...): what the
    config lets through, training takes (a seed of "x" would be a traceback there)."""
    import dataclasses

    for f in dataclasses.fields(cfg):
        value, kinds = getattr(cfg, f.name), str(f.type).replace(" ", "").split("|")
        ok = (value is None and "None" in kinds) or any(
            isinstance(value, (*SCALARS.get(k, ()), *LOOSE.get(f.name, ()))) and not (k != "bool" and value is True)
            for k in kinds
        )
        for k in kinds:
            if k.startswith("list[") and isinstance(value, list):
                ok = ok or all(isinstance(v, SCALARS[k[5:-1]]) and not isinstance(v, bool) for v in value)
        assert ok, f"{f.name}: {value!r} accepted as {f.type}"


@pytest.fixture(scope="module")
def bomb_config(tmp_path_factory) -> Path:
    """A YAML file of 1 kB whose aliases make the value of beta a list of 10**9 items if walked as a tree
    (as repr() does for an error message)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.yaml"
    level = "&a0 [x, x, x, x, x, x, x, x, x, x]"
    for i in range(1, 9):
        level = f"&a{i} [{level}, {', '.join([f'*a{i - 1}'] * 9)}]"
    path.write_text(f"beta: {level}\n")
    return path


def test_a_config_file_of_aliases_that_expand_to_a_billion_items_is_one_line(bomb_config):
    from aekit.config.train import load_yaml, make_config

    with contract(bomb_config.parent, outside=bomb_config.parent):
        make_config(load_yaml(bomb_config))
        raise AssertionError("the file was accepted")


# -- the command line, end to end ------------------------------------------------------------------


@contextmanager
def as_a_program():
    """Logging as in `aekit`, which sets none up (pytest adds a handler): what a library logs then
    goes to stderr. (Python's warnings, which pytest records, are checked in a process of their own:
    test_found_malformed_images_print_nothing_beside_their_reasons.)"""
    import logging

    handlers = logging.root.handlers
    logging.root.handlers = []
    try:
        yield
    finally:
        logging.root.handlers = handlers


def run_cli(argv: list[str], capsys) -> None:
    capsys.readouterr()
    try:
        with as_a_program():
            code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code in (0, 2), (code, err)
    if code == 2:
        check_message(err)


@fuzz(6, cli=True)
@given(data=st.data())
def test_cli_encode_with_a_changed_run_folder(data, trained, capsys):
    run, inputs = trained
    fmt = data.draw(st.sampled_from(sorted(inputs)))
    with example_dir() as d:
        changed = _changed_run(data, run, d, files=(*RUN_FILES, "config.yaml"))
        with contract(changed, inputs[fmt], outside=d, allowed=("z.csv",)):
            run_cli(["encode", str(changed), str(inputs[fmt]), "-o", str(d / "z.csv"), "--quiet", "--no-cache"], capsys)


CLI_DATA = {  # reader -> (strategy of (name, bytes), the command)
    "images": (lambda: raw_or_mutated(image_seeds(), IMAGE_FIXES), "encode"),
    "arrays": (lambda: raw_or_mutated(array_seeds()), "encode"),
    "tables": (lambda: raw_or_mutated(table_seeds()), "encode"),
    "rasters": (lambda: raw_or_mutated(raster_seeds()), "encode"),
    "tar shards": (shard_file, "score"),
}


@pytest.mark.parametrize("reader", sorted(CLI_DATA))
@fuzz(3, cli=True)
@given(data=st.data())
def test_cli_reads_changed_data_or_is_one_line(reader, data, trained, capsys):
    if reader in ("tables", "rasters"):
        pytest.importorskip("pyarrow" if reader == "tables" else "rasterio")
    run, _ = trained
    make, command = CLI_DATA[reader]
    name, blob = data.draw(make())
    with example_dir() as d:
        (d / "in").mkdir()
        (d / "in" / name).write_bytes(blob)
        target = d / "in" / name if reader != "images" else d / "in"
        with contract(d / "in", run, outside=d, allowed=("out.csv", "out_worst.png", "out_summary.json", "cache")):
            argv = [
                command,
                str(run),
                str(target),
                "-o",
                str(d / "out.csv"),
                "--quiet",
                "--cache-dir",
                str(d / "cache"),
            ]
            run_cli(argv, capsys)


# -- what fuzzing found, pinned: each case failed before its fix ---------------------------------------


def npy_header(header: str, data: bytes = b"") -> bytes:
    text = header.encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


ARRAY_CASES = {  # case: (file name, bytes, what its one line says)
    "npz member claiming 2 GiB": (
        "x.npz",
        zipped("images.npy", npy_header("{'descr': '|u1', 'fortran_order': False, 'shape': (2147483648,), }"), False),
        "claims 2147483648 bytes of data but holds 0",
    ),
    "npy claiming 2**62 values (mmap overflows)": (
        "x.npy",
        npy_header("{'descr': '<u2', 'fortran_order': False, 'shape': (4611686018427387904,), }"),
        "truncated or not a .npy file",
    ),
    "npy header numpy's tokenizer cannot end": (
        "x.npy",
        npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3,"),
        "truncated or not a .npy file",
    ),
    "npy of no item in a shape too big to copy": (
        "x.npy",
        npy_header("{'descr': '<f2', 'fortran_order': False, 'shape': (0, 2, 1048576, 1048576, 1048576), }"),
        "holds no items",
    ),
    "npy of 2**40 items of no value (ids for each took forever)": (
        "x.npy",
        npy_header("{'descr': '|u1', 'fortran_order': False, 'shape': (1099511627776, 0, 3), }"),
        "holds no values",
    ),
}


@pytest.mark.parametrize("case", sorted(ARRAY_CASES))
def test_found_array_files_are_one_line(case, tmp_path):
    from aekit.data.memory import read_array_file

    name, blob, needle = ARRAY_CASES[case]
    (tmp_path / name).write_bytes(blob)
    with contract(tmp_path), pytest.raises(AekitError, match=needle):
        read_array_file(tmp_path / name)


def test_found_a_raster_whose_tiles_cannot_be_read_is_skipped(tmp_path):
    pytest.importorskip("rasterio")
    from aekit.data.rasters import RasterOptions, read_rasters

    good = raster_seeds()["f32_tiled.tif"]
    (tmp_path / "a.tif").write_bytes(good)
    (tmp_path / "b.tif").write_bytes(good[: len(good) * 4 // 5])  # the header, not all of the tiles
    with contract(tmp_path):
        got = read_rasters(tmp_path, RasterOptions(), show_progress=False)
    assert got.ids == ["a.tif"] and "unreadable pixels" in got.skipped[0].reason


def test_found_malformed_images_print_nothing_beside_their_reasons(tmp_path):
    """Pillow logs why a TIFF is bad and warns of corrupt EXIF and of sizes near its limit: in a process
    that set up no logging and keeps Python's warning filters (the CLI's), all of it went to stderr,
    six lines beside aekit's one. A process of its own: pytest undoes the warning filters a module sets."""
    import subprocess
    import sys

    tiff = bytearray(image_seeds()["a.tif"])
    at = tiff.find(struct.pack("<HHI", 0x115, 3, 1))  # SamplesPerPixel, SHORT, 1 value
    tiff[at + 8 : at + 10] = struct.pack("<H", 54275)
    write_pngs(tmp_path / "imgs", smooth_images(1, 8, 8, 1))
    (tmp_path / "imgs" / "many_samples.tif").write_bytes(bytes(tiff))
    (tmp_path / "imgs" / "exif_only.tif").write_bytes(b"II*\x00\x08\x00\x00\x00")
    header = struct.pack(">IIBBBBB", 10_000, 10_000, 1, 0, 0, 0, 0)  # 10**8 px: over the limit, under twice it
    chunks = [(b"IHDR", header), (b"IDAT", zlib.compress(b"\0" * 1251)), (b"IEND", b"")]
    png = b"".join(struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d)) for k, d in chunks)
    (tmp_path / "imgs" / "large.png").write_bytes(b"\x89PNG\r\n\x1a\n" + png)
    code = "from aekit.data.images import read_images\nfor s in read_images('imgs', show_progress=False).skipped:\n"
    code += "    print(s.path, s.reason)"
    with contract(tmp_path):
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert len(done.stdout.splitlines()) == 3 and "large.png image too large" in done.stdout, done.stdout


def test_found_a_tar_member_larger_than_any_image_is_never_read(tmp_path, monkeypatch):
    from PIL import Image

    from aekit.data.stream import shard_samples

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 800 bytes: a 10 MB member of a .tar.gz bomb, scaled
    (tmp_path / "s.tar").write_bytes(tar_bytes([("a.png", image_seeds()["rgb.png"]), ("b.png", b"\0" * 900)]))
    skipped = []
    with contract(tmp_path):
        assert [k for k, _ in shard_samples(str(tmp_path / "s.tar"), skipped)] == ["s.tar/a"]
    assert [s.path for s in skipped] == ["s.tar/b"] and "900 bytes" in skipped[0].reason


CONFIG_CASES = {  # case: (config.yaml, what its one line says; None: accepted)
    "not UTF-8": (b"\x80epochs: 2\n", "is not UTF-8 text"),
    "nested too deeply for the YAML parser": (b"epochs: " + b"[" * 5000 + b"]" * 5000, "nests lists or mappings"),
    "a number as an option name": (b"1: 2\nepochs: 3\n", "unknown option(s) 1"),
    "a seed that is text": (b"seed: x\n", "seed must be a whole number"),
    "an extension that is a list": (b"extensions: [[.png]]\n", "extensions must be file extensions"),
    "compile: maybe": (b"compile: maybe\n", "compile must be true or false"),
    "weight_decay: yes (a YAML boolean)": (b"weight_decay: yes\n", "weight_decay must be >= 0"),
    "model: null (the default)": (b"model: null\nepochs: 3\n", None),
    "nodata: 10**400 (no float holds it)": (b"nodata: 1" + b"0" * 400 + b"\n", "nodata must be a number"),
    "lr: 10**400": (b"lr: 1" + b"0" * 400 + b"\n", "lr must be a positive float"),
    "checkpoint_every: 10**400 steps": (b"checkpoint_every: 1" + b"0" * 400 + b"\n", "checkpoint_every must be"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_found_config_files(case, tmp_path):
    from aekit.config.train import load_yaml, make_config

    text, needle = CONFIG_CASES[case]
    (tmp_path / "c.yaml").write_bytes(text)
    with contract(tmp_path):
        if needle is None:
            check_types(make_config(load_yaml(tmp_path / "c.yaml")))
        else:
            with pytest.raises(AekitError, match=re.escape(needle)):
                make_config(load_yaml(tmp_path / "c.yaml"))


def test_found_an_empty_state_file_is_one_line(tmp_path):
    from aekit.training.state import load_state

    (tmp_path / "state.pt").write_bytes(b"")
    with contract(tmp_path), pytest.raises(AekitError, match="cannot read .*state.pt: EOFError"):
        load_state(tmp_path)


def _set(path: tuple, value) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        functools.reduce(lambda v, k: v[k], path[:-1], meta)[path[-1]] = value

    return edit


MODEL_JSON_CASES = {  # case: (how model.json changes, what the one line says)
    "scale that is text": (_set(("normalization", "scale"), "../victim"), "normalization must hold a scale > 0"),
    "scale false (a division by zero)": (_set(("normalization", "scale"), False), "normalization must hold"),
    "input width of 12890 (a 2 GB resize)": (_set(("input", "width"), 12890), "input channels, height, width must"),
    "input height 0.0": (_set(("input", "height"), 0.0), "input channels, height, width must"),
    "in_shape with -1 channels": (_set(("model_kwargs", "in_shape"), [-1, 8, 8]), "in_shape must be 3 positive"),
    "latent_score of another size": (_set(("latent_score", "mean"), [0.0]), "latent_score must hold"),
    "threshold that is text": (_set(("threshold",), "high"), "threshold must hold"),
    "threshold by metric that is a list": (_set(("threshold", "by_metric"), [1]), "threshold must hold"),
    "a mean of 10**400 (no float holds it)": (_set(("normalization", "mean"), [10**400]), "normalization must hold"),
}


@pytest.mark.parametrize("case", sorted(MODEL_JSON_CASES))
def test_found_model_json_changes_are_one_line(case, trained, tmp_path):
    import aekit

    run, _ = trained
    shutil.copytree(run, tmp_path / "run")
    edit, needle = MODEL_JSON_CASES[case]
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    edit(meta)
    (tmp_path / "run" / "model.json").write_text(json.dumps(meta))
    with contract(tmp_path / "run"), pytest.raises(AekitError, match=re.escape(needle)):
        aekit.load(tmp_path / "run", device="cpu")


def test_found_model_json_that_is_not_utf8_is_one_line(trained, tmp_path):
    import aekit

    run, _ = trained
    shutil.copytree(run, tmp_path / "run")
    (tmp_path / "run" / "model.json").write_bytes(b"\x80" + (run / "model.json").read_bytes()[1:])
    with contract(tmp_path / "run"), pytest.raises(AekitError, match="not a valid aekit model description"):
        aekit.load(tmp_path / "run", device="cpu")


CACHE_CASES = {  # case: how the cache folder changes (the entry is rebuilt; nothing outside it is touched)
    "an alias leading out of the cache, to a folder with an index.json": lambda c: _write(c, ".alias", "../victim"),
    "an alias that is not UTF-8": lambda c: _write(c, ".alias", b"\x80"),
    "index.json null": lambda c: _write(c, "index.json", "null"),
    "index.json naming other ids": lambda c: _edit_index(c, lambda i: i.update(ids=i["ids"][::-1])),
    "index.json with another scale": lambda c: _edit_index(c, lambda i: i.update(scale=1.0)),
    "index.json with skipped null": lambda c: _edit_index(c, lambda i: i.update(skipped=None)),
    "data.npy empty": lambda c: _write(c, "data.npy", b""),
    "data.npy header numpy's tokenizer cannot end": lambda c: _write(
        c, "data.npy", npy_header("{'descr': '|u1', 'fortran_order': False, 'shape': (5, 3,")
    ),
}


def _write(cache: Path, name: str, content: str | bytes) -> None:
    for path in cache.rglob(f"*{name}"):
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def _edit_index(cache: Path, edit: Callable[[dict], object]) -> None:
    for path in cache.rglob("index.json"):
        index = json.loads(path.read_text())
        edit(index)
        path.write_text(json.dumps(index))


@pytest.mark.parametrize("case", sorted(CACHE_CASES))
def test_found_cache_entries_are_rebuilt(case, cached_images, tmp_path):
    from aekit.data.cache import read_images_cached

    folder, template, facts = cached_images
    shutil.copytree(template, tmp_path / "cache")
    CACHE_CASES[case](tmp_path / "cache")
    image_cache._verified.clear()
    opts = {"channels": 3, "image_size": [10, 12], "high": False}  # the resolved options: through the alias
    with contract(folder, _victim(tmp_path), outside=tmp_path, allowed=("cache",)):
        _same(read_images_cached(folder, cache_dir=tmp_path / "cache", show_progress=False, **opts), facts)
