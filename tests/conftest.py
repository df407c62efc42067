"""Tiny seeded fixtures generated on the fly: image folders, arrays, datasets."""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import os
import re
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FAST = ["--epochs", "1", "--batch-size", "8", "--latent-dim", "4", "--width", "8", "--quiet"]  # a model in a second


TRAINS = re.compile(r'"(train|demo|sweep)"|\b(train|sweep|_train)\(|subprocess|torchrun')


@functools.cache
def _trains(fn) -> bool:
    try:
        return bool(TRAINS.search(inspect.getsource(fn)))
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(items) -> None:
    """Mark `e2e` the tests that train a model or start processes, found in their source or their
    fixtures' (`pytest -m "not e2e"` runs the unit tests alone, in seconds)."""
    for item in items:
        defs = getattr(item, "_fixtureinfo", None)
        fixtures = [d.func for ds in (defs.name2fixturedefs.values() if defs else ()) for d in ds]
        if any(_trains(fn) for fn in (getattr(item, "function", None), *fixtures) if fn is not None):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own decode cache and working directory (where runs/ would go); the
    user's ~/.cache and the checkout are never touched."""
    monkeypatch.setenv("AEKIT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def smooth_images(n: int, h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    """(n, h, w, c) uint8 images of random smooth blobs: learnable structure, not noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = np.empty((n, h, w, c), np.float32)
    for i in range(n):
        for ch in range(c):
            cy, cx, s = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
            out[i, :, :, ch] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return (out * 255).astype(np.uint8)


def write_pngs(folder: Path, images: np.ndarray, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        p = folder / f"{prefix}{i:03d}.png"
        Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(p)
        paths.append(p)
    return paths


@pytest.fixture
def gray28(tmp_path: Path) -> Path:
    """24 grayscale 28x28 PNGs."""
    folder = tmp_path / "gray28"
    write_pngs(folder, smooth_images(24, 28, 28, 1))
    return folder


@pytest.fixture
def rgb_folder(tmp_path: Path) -> Path:
    """20 RGB 20x24 PNGs in two sub-folders."""
    folder = tmp_path / "rgb"
    imgs = smooth_images(20, 20, 24, 3, seed=1)
    write_pngs(folder / "a", imgs[:10])
    write_pngs(folder / "b", imgs[10:])
    return folder


@pytest.fixture(scope="session")
def rgb_run(tmp_path_factory) -> tuple[Path, Path]:
    """(folder, run): the rgb_folder images and a small model trained on them once per session,
    shared by the tests that only read a run (encode, evaluate, bad options of the commands)."""
    from aekit.cli.main import main

    root = tmp_path_factory.mktemp("rgb_run")
    folder = root / "rgb"
    imgs = smooth_images(20, 20, 24, 3, seed=1)
    write_pngs(folder / "a", imgs[:10])
    write_pngs(folder / "b", imgs[10:])
    run = root / "run"
    argv = ["train", str(folder), "--out", str(run), "--cache-dir", str(root / "cache"), *FAST]
    assert main(argv) == 0
    return folder, run


def jpeg_bytes(im: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format="JPEG", **kw)
    return buf.getvalue()


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """Nested folder of mixed formats, modes and sizes with broken and non-image files."""
    root = tmp_path / "messy"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    rgb = smooth_images(6, 40, 30, 3, seed=2)
    gray = smooth_images(3, 17, 31, 1, seed=3)
    Image.fromarray(rgb[0]).save(root / "a.PNG")
    (root / "b.JPG").write_bytes(jpeg_bytes(rgb[1]))
    Image.fromarray(rgb[2]).save(root / "sub" / "c.bmp")
    Image.fromarray(rgb[3]).convert("P").save(root / "sub" / "d.gif")
    Image.fromarray(rgb[4]).save(root / "sub" / "e.tiff")
    Image.fromarray(rgb[5]).save(root / "sub" / "deeper" / "f.webp")
    Image.fromarray(rgb[0]).convert("RGBA").save(root / "sub" / "g_rgba.png")
    Image.fromarray(rgb[1]).convert("CMYK").save(root / "sub" / "h_cmyk.jpg")
    Image.fromarray(gray[0][..., 0]).save(root / "i_gray.png")
    Image.fromarray(gray[1][..., 0]).convert("LA").save(root / "j_la.png")
    Image.fromarray(gray[2][..., 0].astype(np.uint16) * 257).save(root / "k_16bit.png")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(root / "l_tiny.png")
    # broken and non-image files
    (root / "empty.png").write_bytes(b"")
    (root / "truncated.jpg").write_bytes(jpeg_bytes(rgb[2])[:300])
    (root / "fake.png").write_text("this is not a png")
    (root / "notes.txt").write_text("hello")
    (root / ".DS_Store").write_bytes(b"\x00\x01")
    Image.fromarray(rgb[3]).save(root / ".hidden" / "ignored.png")
    return root


def tree_digest(*roots: Path) -> dict[str, str]:
    """Every entry under `roots` (a root may be a file): files by the sha256 of their bytes, links
    by their target, anything else (folders, FIFOs) by what it is; nothing is opened but files."""
    out = {}
    for root in map(Path, roots):
        paths = [root] if not root.is_dir() or root.is_symlink() else []
        for dirpath, dirnames, filenames in os.walk(root):
            paths += [Path(dirpath, name) for name in sorted(dirnames + filenames)]
        for p in paths:
            if p.is_symlink():
                out[str(p)] = "link:" + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[str(p)] = "folder" if p.is_dir() else ("missing" if not os.path.lexists(p) else "other")
    return out


@contextmanager
def unchanged(*roots: Path):
    """Assert that the block leaves every file under `roots` as it was (sha256 before and after),
    and adds or removes nothing there: the user's input data is never modified."""
    before = tree_digest(*roots)
    yield
    after = tree_digest(*roots)
    assert after == before, {
        k: (before.get(k), after.get(k)) for k in before.keys() | after.keys() if before.get(k) != after.get(k)
    }


# -- processes started by a test (torchrun and its ranks) ----------------------------------------


def descendants(pid: int) -> dict[int, int]:
    """{pid: parent pid} of every process below pid, from /proc."""
    parent = {}
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                text = open(f"/proc/{stat}/stat").read()
            except OSError:
                continue
            parent[int(stat)] = int(text.rsplit(")", 1)[1].split()[1])
    tree, grew = {pid}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        tree, grew = tree | more, bool(more)
    return {p: parent[p] for p in tree - {pid}}


def kill_tree(pid: int) -> None:
    """SIGKILL pid's descendants, then pid."""
    for p in sorted(descendants(pid)) + [pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def alive(pid: int) -> bool:
    """A running process (not gone, not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
