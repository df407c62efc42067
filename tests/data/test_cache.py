import errno
import os

import numpy as np
import pytest
from PIL import Image

import aekit.data.images as images_mod
from aekit.data.cache import default_cache_dir, index_crc, read_images_cached
from aekit.data.images import read_images
from tests.conftest import smooth_images, tree_digest, unchanged, write_pngs


def entries(cache):
    return sorted(p.name for p in cache.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_second_read_reuses_cache_without_decoding(rgb_folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = read_images_cached(rgb_folder, cache_dir=cache, show_progress=False)
    assert len(entries(cache)) == 1

    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(images_mod, "_decode_span", boom)
    second = read_images_cached(rgb_folder, cache_dir=cache, show_progress=False)
    np.testing.assert_array_equal(first.array, second.array)
    assert second.ids == first.ids and any("reused from the cache" in n for n in second.notes)


def test_cache_matches_uncached_read(messy_folder, tmp_path):
    cached = read_images_cached(messy_folder, cache_dir=tmp_path / "c", show_progress=False)
    again = read_images_cached(messy_folder, cache_dir=tmp_path / "c", show_progress=False)
    plain = read_images(messy_folder, show_progress=False)
    for data in (cached, again):
        np.testing.assert_array_equal(data.array, plain.array)
        assert data.ids == plain.ids and data.scale == plain.scale
        assert [(s.path, s.reason) for s in data.skipped] == [(s.path, s.reason) for s in plain.skipped]


def test_changed_file_or_option_rebuilds(rgb_folder, tmp_path):
    cache = tmp_path / "cache"
    before = read_images_cached(rgb_folder, cache_dir=cache, show_progress=False)
    target = rgb_folder / "a" / "img000.png"
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(target)
    os.utime(target, ns=(1, 1))  # a different modification time
    after = read_images_cached(rgb_folder, cache_dir=cache, show_progress=False)
    assert len(entries(cache)) == 2
    assert after.array[0].max() == 0 and before.array[0].max() > 0
    read_images_cached(rgb_folder, cache_dir=cache, image_size=(8, 8), show_progress=False)
    assert len(entries(cache)) == 3


def test_killed_build_is_never_used(rgb_folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    real, calls = images_mod._decode_span, []

    def dies_midway(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # like a kill in the middle of decoding
        return real(*a, **k)

    monkeypatch.setattr(images_mod, "_decode_span", dies_midway)
    before = tree_digest(rgb_folder)
    with pytest.raises(KeyboardInterrupt):
        read_images_cached(rgb_folder, cache_dir=cache, show_progress=False)
    assert entries(cache) == []
    monkeypatch.setattr(images_mod, "_decode_span", real)
    data = read_images_cached(rgb_folder, cache_dir=cache, show_progress=False)
    assert tree_digest(rgb_folder) == before
    np.testing.assert_array_equal(data.array, read_images(rgb_folder, show_progress=False).array)


def test_leftover_partial_entry_without_index_is_ignored(rgb_folder, tmp_path):
    cache = tmp_path / "cache"
    read_images_cached(rgb_folder, cache_dir=cache, show_progress=False)
    (entry,) = [cache / e for e in entries(cache)]
    (entry / "index.json").unlink()  # as if the build had died before finishing
    (entry / "data.npy").write_bytes(b"garbage")
    with unchanged(rgb_folder):
        data = read_images_cached(rgb_folder, cache_dir=cache, show_progress=False)
    np.testing.assert_array_equal(data.array, read_images(rgb_folder, show_progress=False).array)


def test_disk_full_falls_back_to_memory(rgb_folder, tmp_path, monkeypatch):
    def full(*a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with unchanged(rgb_folder):
        data = read_images_cached(rgb_folder, cache_dir=tmp_path / "cache", show_progress=False)
    assert len(data) == 20 and any("No space left" in n for n in data.notes)
    assert entries(tmp_path / "cache") == []


def test_large_entry_stays_memory_mapped(tmp_path):
    write_pngs(tmp_path / "imgs", smooth_images(10, 16, 16, 3))
    read_images_cached(tmp_path / "imgs", cache_dir=tmp_path / "c", show_progress=False)
    data = read_images_cached(tmp_path / "imgs", cache_dir=tmp_path / "c", show_progress=False, in_memory_limit=0)
    assert isinstance(data.array, np.memmap) and any("memory-mapped" in n for n in data.notes)
    np.testing.assert_array_equal(np.asarray(data.array), read_images(tmp_path / "imgs", show_progress=False).array)


def test_default_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AEKIT_CACHE_DIR", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"


def flip_byte(path, at: int) -> None:
    """Corrupt one byte of the array data of the .npy file `path` (`at` bytes into the data)."""
    header = len(path.read_bytes()) - np.load(path, mmap_mode="r").nbytes
    with open(path, "r+b") as f:
        f.seek(header + at)
        byte = f.read(1)
        f.seek(header + at)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("limit", [None, 0], ids=["in memory", "memory-mapped"])
def test_a_corrupt_cache_entry_is_detected_and_rebuilt(rgb_folder, tmp_path, capsys, limit):
    import aekit.data.cache as cache_mod

    cache = tmp_path / "cache"
    first = read_images_cached(rgb_folder, cache_dir=cache, show_progress=False)
    (entry,) = entries(cache)
    flip_byte(cache / entry / "data.npy", 1234)
    capsys.readouterr()
    with unchanged(rgb_folder):
        again = read_images_cached(rgb_folder, cache_dir=cache, show_progress=False, in_memory_limit=limit)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is corrupt: data.npy does not match its checksum (MB 0-16)" in err, err
    assert err.endswith("rebuilding it") and not any("reused" in n for n in again.notes)
    np.testing.assert_array_equal(np.asarray(again.array), first.array)  # decoded again, never the bad bytes
    assert entries(cache) == [entry]
    calls = []
    real = cache_mod._crcs
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cache_mod, "_crcs", lambda a: calls.append(1) or real(a))
        for _ in range(3):  # checked on the first read in a process, trusted afterwards
            read_images_cached(rgb_folder, cache_dir=cache, show_progress=False, in_memory_limit=limit)
    assert len(calls) == 1


def test_a_cache_entry_without_checksums_or_with_another_shape_is_rebuilt(rgb_folder, tmp_path, capsys):
    import json

    cache = tmp_path / "cache"
    read_images_cached(rgb_folder, cache_dir=cache, show_progress=False)
    (entry,) = entries(cache)
    index = json.loads((cache / entry / "index.json").read_text())
    index["checksums"]["data.npy"]["shape"][0] += 1
    (cache / entry / "index.json").write_text(json.dumps(index))
    capsys.readouterr()
    with unchanged(rgb_folder):
        again = read_images_cached(rgb_folder, cache_dir=cache, show_progress=False)
    assert "index.json does not match its checksum; rebuilding it" in capsys.readouterr().err  # the index itself
    assert not any("reused" in n for n in again.notes) and len(again) == 20
    index = json.loads((cache / entry / "index.json").read_text())
    index["checksums"]["data.npy"]["shape"][0] += 1
    index["index_crc32"] = index_crc(index)  # an index that holds together, about another array
    (cache / entry / "index.json").write_text(json.dumps(index))
    with unchanged(rgb_folder):
        again = read_images_cached(rgb_folder, cache_dir=cache, show_progress=False)
    assert "is not the array it was built with; rebuilding it" in capsys.readouterr().err
    assert not any("reused" in n for n in again.notes) and len(again) == 20
