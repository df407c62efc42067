"""Tar shards read as a stream (data/stream.py): sources, samples, the skip policy, the epoch order."""

import io
import tarfile

import numpy as np
import pytest
import torch

from aekit.core.errors import AekitError
from aekit.data.stream import ShardStream, expand_shards, is_stream_source, read_stream, shard_samples, write_shards
from tests.conftest import smooth_images, write_pngs


@pytest.fixture
def shards(tmp_path):
    write_pngs(tmp_path / "imgs", smooth_images(40, 12, 12, 3, seed=2))
    write_shards(tmp_path / "imgs", tmp_path / "shards", per_shard=10)
    return tmp_path / "shards"


def test_sources_are_a_folder_a_tar_a_brace_pattern_or_a_url(shards):
    names = [str(shards / f"data-{i:06d}.tar") for i in range(4)]
    assert is_stream_source(shards) and is_stream_source(names[0]) and not is_stream_source(shards.parent / "imgs")
    assert expand_shards(str(shards)) == names
    assert expand_shards(str(shards / "data-{000000..000003}.tar")) == names
    assert expand_shards(names[1]) == names[1:2]
    url = f"file://{names[0]}"
    assert [k for k, _ in shard_samples(url, [])] == [k for k, _ in shard_samples(names[0], [])]


def test_samples_group_members_by_key_and_keep_the_image(shards):
    got = list(shard_samples(str(shards / "data-000001.tar"), []))
    assert [k for k, _ in got] == [f"data-000001.tar/{i:06d}" for i in range(10, 20)]
    assert got[0][1][:4] == b"\x89PNG"


def test_read_stream_infers_the_plan_and_decodes_the_first_sample(shards):
    data = read_stream(shards, sample=15)
    assert data.array.shape == (15, 3, 12, 12) and data.array.dtype == np.uint8
    assert data.stream["estimate"] == 40 and len(data.stream["shards"]) == 4
    assert data.ids[0] == "data-000000.tar/000000" and data.ids[-1] == "data-000001.tar/000014"
    assert any("streaming 4 tar shard" in n for n in data.notes)


def test_epoch_covers_every_item_once_except_the_excluded_in_a_seeded_order(shards):
    data = read_stream(shards)
    ds = ShardStream(data.stream["shards"], data.stream["plan"], 7, seed=5, exclude=data.ids[:3], buffer=8)
    batches = [b for b, _ in ds]
    assert sum(len(b) for b in batches) == 37
    again = [b for b, _ in ShardStream(data.stream["shards"], data.stream["plan"], 7, 5, data.ids[:3], buffer=8)]
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    other = [b for b, _ in ShardStream(data.stream["shards"], data.stream["plan"], 7, 6, data.ids[:3], buffer=8)]
    assert not torch.equal(batches[0], other[0])
    rows = {bytes(x.numpy()) for b in batches for x in b}
    assert rows == {bytes(x) for x in data.array[3:]}


def test_ranks_read_disjoint_shards(shards):
    data = read_stream(shards)
    parts = [ShardStream(data.stream["shards"], data.stream["plan"], 4, 1, (), r, 2).mine(0, 1) for r in (0, 1)]
    assert sorted(parts[0] + parts[1]) == data.stream["shards"] and not set(parts[0]) & set(parts[1])


def add_member(tar_path, name, payload):
    with tarfile.open(tar_path, "a") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))


def test_a_corrupt_member_is_skipped_and_counted(shards):
    add_member(shards / "data-000002.tar", "bad001.png", b"\x89PNG not really")
    data = read_stream(shards)
    assert len(data) == 40 and [s.path for s in data.skipped] == ["data-000002.tar/bad001"]
    ds = ShardStream(data.stream["shards"], data.stream["plan"], 64, 0, ())
    (batch, bad), *_ = list(ds)
    assert len(batch) == 40 and [k for k, _ in bad] == ["data-000002.tar/bad001"]


def test_a_truncated_shard_keeps_its_first_samples_and_says_so(shards):
    path = shards / "data-000003.tar"
    path.write_bytes(path.read_bytes()[:5000])
    skipped = []
    got = list(shard_samples(str(path), skipped))
    assert 0 < len(got) < 10 and len(skipped) == 1 and "truncated" in skipped[0].reason


def test_an_empty_tar_is_an_error(tmp_path):
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    with pytest.raises(AekitError, match="no readable image sample"):
        read_stream(tmp_path / "empty.tar")


@pytest.mark.parametrize(
    "cpus, local, shards, workers",
    [(32, None, 100, 8), (32, "8", 100, 4), (16, "4", 100, 4), (8, "8", 100, 1), (4, "16", 100, 1), (32, "2", 3, 3)],
)
def test_workers_share_the_machines_cpus_among_its_processes(monkeypatch, cpus, local, shards, workers):
    from aekit.data import stream

    monkeypatch.setattr(stream.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(stream.os, "cpu_count", lambda: cpus)
    if local is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    assert stream.workers_for(shards) == workers
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "garbage")  # not torchrun's: one process
    assert stream.workers_for(shards) == min(shards, cpus, 8)


def test_workers_hand_over_pinned_batches_when_asked(monkeypatch):
    """Training on CUDA asks for pinned batches (training/batches.py): asynchronous copies to the GPU."""
    from aekit.data import stream

    class Shards:
        def __init__(self, *a):
            pass

        def mine(self, rank, world):
            return [0, 1]

    made = []
    monkeypatch.setattr(stream, "ShardStream", Shards)
    monkeypatch.setattr(torch.utils.data, "DataLoader", lambda ds, **kw: made.append(kw["pin_memory"]) or [])
    for pin in (False, True):
        stream.epoch_batches({"shards": [], "plan": None}, 4, 0, [], pin=pin)
    stream.epoch_batches({"shards": [], "plan": None}, 4, 0, [])
    assert made == [False, True, False]
