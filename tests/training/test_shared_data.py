"""Data under torchrun: one decoded copy per machine, shared by its processes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from aekit.data.cache import memory_limit
from tests.conftest import smooth_images, write_pngs

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]

# Run under torchrun: read the data and prepare training as `aekit train` does, touch every byte of
# the training tensor, then report how the memory holding the decoded data is counted in
# /proc/self/smaps (the mapping of the cache's data.npy) while the other rank holds it too.
MEMORY_PROBE = """
import json, sys, tempfile
from pathlib import Path
import torch
import torch.distributed as dist
from aekit.config.train import make_config
from aekit.core import distributed
from aekit.training import workflow
from aekit.models.pca import PCA
from aekit.training import setup
from aekit.training.setup import prepare

def mappings(suffix):
    out, cur = [], None
    for line in open("/proc/self/smaps"):
        head = line.split()
        if "-" in head[0] and not head[0].endswith(":"):
            lo, hi = (int(v, 16) for v in head[0].split("-"))
            cur = {"lo": lo, "hi": hi} if line.rstrip().endswith(suffix) else None
            if cur is not None:
                out.append(cur)
        elif cur is not None and head[0].endswith(":") and len(head) == 3:
            cur[head[0][:-1]] = int(head[1]) * 1024
    return out

def pca_stub(x, k, seed=0):  # PCA is not what is measured: an exact SVD of these items takes minutes here
    d = x[0].numel()
    return PCA(torch.zeros(d), torch.eye(d, k), torch.ones(k))

setup.fit_pca = pca_stub
ctx = distributed.start("cpu")
if ctx.rank == 1:  # rank 0 lists the folder and stats its files for every process
    import aekit.data.cache, aekit.data.images, aekit.data.rasters, aekit.data.shards

    def refuse(*args, **kwargs):
        raise AssertionError("rank 1 listed or stat'ed the folder")

    for module in (aekit.data.cache, aekit.data.images, aekit.data.rasters, aekit.data.shards):
        for name in ("take_listing", "_size_and_time", "scan", "list_files", "use_rasterio"):
            if hasattr(module, name):
                setattr(module, name, refuse)
cfg = make_config(None, epochs=1, batch_size=16, latent_dim=4, width=8, precision="fp32", device="cpu")
data = workflow.read_data(sys.argv[1], cfg, False, ctx)
with tempfile.TemporaryDirectory() as tmp:
    s = prepare(data, cfg, Path(tmp))
    total = int(s.x_all.sum())  # every page of the training tensor read by this rank
    dist.barrier()  # ... and by the other one
    ptr = s.x_all.data_ptr()
    maps = mappings("/data.npy")
    holding = [m for m in maps if m["lo"] <= ptr < m["hi"]]
    report = {"rank": ctx.rank, "nbytes": s.x_all.numel(), "sum": total, "maps": maps, "holding": len(holding)}
    Path(sys.argv[2], f"rank{ctx.rank}.json").write_text(json.dumps(report))
    dist.barrier()
distributed.stop()
"""


def test_the_processes_of_a_machine_share_one_mapped_copy_of_the_data(tmp_path):
    """2 gloo processes on one machine, 24 MB of decoded images: each trains from a tensor that
    points into the one mapping of the cache file, whose pages are counted as shared (both
    processes hold them), none private, none anonymous (a private copy would be anonymous memory
    outside any mapping of data.npy). Rank 1 never lists the folder nor stats a file in it."""
    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(2000, 64, 64, 3, seed=3))  # 2000 x 12 KB = 24.6 MB decoded
    (tmp_path / "probe.py").write_text(MEMORY_PROBE)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [*TORCHRUN, "--standalone", "--nproc-per-node=2", str(tmp_path / "probe.py"), str(folder), str(out)]
    subprocess.run(cmd, check=True, timeout=300)
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    nbytes = 2000 * 3 * 64 * 64
    for rep in reports:
        assert rep["nbytes"] == nbytes and rep["sum"] == reports[0]["sum"]
        assert rep["holding"] == 1, rep  # the training tensor is the mapping itself, not a copy of it
        assert len(rep["maps"]) == 1, rep["maps"]  # data.npy mapped once per process
        m = rep["maps"][0]
        assert m["Rss"] >= nbytes  # every page resident ...
        assert m["Shared_Clean"] >= 0.95 * nbytes, m  # ... and shared with the other process
        assert m["Private_Dirty"] == 0 and m["Anonymous"] == 0, m  # no page of it copied
        assert m["Pss"] <= 0.6 * m["Rss"], m  # each process is charged half of it


def test_several_processes_per_machine_never_take_private_copies(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    alone = memory_limit()
    assert alone > 0  # one process: data up to half the RAM is read into memory
    for n, want in (("1", alone), ("2", 0), ("8", 0)):
        monkeypatch.setenv("LOCAL_WORLD_SIZE", n)
        assert memory_limit() == want


@pytest.mark.parametrize("value", ["", "x"])
def test_a_bad_local_world_size_counts_as_one_process(monkeypatch, value):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", value)
    assert memory_limit() > 0


ARGS = ["--batch-size", "16", "--latent-dim", "4", "--width", "8", "--precision", "fp32", "--quiet"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_two_machines(
    argv: list[str], caches: list, timeout: float = 300, script: str | None = None, until=None, per_machine: int = 1
) -> None:
    """`aekit ARGV` (or the Python file `script` with ARGV) as a job of 2 simulated machines with
    `per_machine` processes each: two torchrun launches on this machine (node ranks 0 and 1, one
    rendezvous), each with its own decode cache. With `until`, the job is killed (SIGKILL, every
    process) as soon as `until()` is true, as a crash would end it."""
    import os
    import signal
    import time

    port = free_port()
    procs = []
    for node, cache in enumerate(caches):
        launch = [*TORCHRUN, "--nnodes=2", f"--nproc-per-node={per_machine}", f"--node-rank={node}"]
        launch.append("--master-addr=127.0.0.1")
        env = {**os.environ, "AEKIT_CACHE_DIR": str(cache)}
        program = [script] if script else ["-m", "aekit"]
        procs.append(subprocess.Popen([*launch, f"--master-port={port}", *program, *argv], env=env))
    try:
        if until is not None:
            t0 = time.monotonic()
            while not until() and time.monotonic() - t0 < timeout and all(p.poll() is None for p in procs):
                time.sleep(0.05)
            assert until(), "the job ended before the moment to kill it"
            return
        codes = [p.wait(timeout=timeout) for p in procs]
        assert codes == [0, 0]
    finally:
        for p in procs:  # torchrun's workers too: they outlive a killed torchrun
            for pid in [*descendants(p.pid), p.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait()


def descendants(pid: int) -> list[int]:
    """The processes started by `pid` and by them, deepest first (from /proc)."""
    from pathlib import Path

    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            for child in map(int, children.read_text().split()):
                found += [*descendants(child), child]
        except OSError:
            pass
    return found


def mid_epoch_checkpoint(run, epoch: int):
    """A predicate: RUN/state.pt is a checkpoint inside an epoch after `epoch`."""
    import torch

    def saved() -> bool:
        try:
            state = torch.load(run / "state.pt", weights_only=True)
        except Exception:  # not there yet, or being replaced
            return False
        return state["partial"] is not None and state["epoch"] >= epoch

    return saved


def cached_ids(cache) -> list[str]:
    """The item ids of every entry of a decode cache folder."""
    return sorted(i for index in cache.glob("*/index.json") for i in json.loads(index.read_text())["ids"])


def test_two_machines_each_decode_only_their_shard_and_train_as_one_process(tmp_path):
    """2 simulated machines: each decodes only its half of the files (every other file) into its
    own cache and trains on it; killed inside its 3rd epoch and resumed on two machines, the run
    ends with a model as good as one process's trained as long on the whole folder."""
    import csv

    import numpy as np

    import aekit
    from aekit.cli.main import main
    from aekit.data.images import read_images

    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(200, 16, 16, 1, seed=11))
    one, two = tmp_path / "one", tmp_path / "two"
    caches = [tmp_path / "cache0", tmp_path / "cache1"]
    assert main(["train", str(folder), *ARGS, "--epochs", "4", "--out", str(one)]) == 0
    argv = ["train", str(folder), *ARGS, "--epochs", "4", "--checkpoint-every", "5", "--out", str(two)]
    on_two_machines(argv, caches, until=mid_epoch_checkpoint(two, 2))  # killed after a checkpoint in epoch 3
    on_two_machines(["train", "--resume", str(two), "--quiet"], caches)  # warm caches

    files = sorted(p.name for p in folder.iterdir())
    for node, cache in enumerate(caches):  # one entry each (the resume reused it), of its shard only
        assert len(list(cache.glob("*/index.json"))) == 1 and cached_ids(cache) == files[node::2]
    summary = json.loads((two / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["n_images"] == 200 and summary["epochs_run"] == 4
    shards = json.loads((two / "shards.json").read_text())
    assert shards["machines"] == 2 and [m["train"] + m["val"] for m in shards["items"]] == [100, 100]
    rows = [list(csv.DictReader(open(run / "metrics.csv"))) for run in (one, two)]
    assert len(rows[0]) == len(rows[1]) == 4
    mse = [float(r[-1]["val_mse"]) for r in rows]  # each on its own validation items
    x = read_images(folder, show_progress=False).array
    whole = [float(np.mean((aekit.load(run).reconstruct(x) / 255.0 - x / 255.0) ** 2)) for run in (one, two)]
    print(f"val MSE one process {mse[0]:.6f}, two machines {mse[1]:.6f}; all items {whole[0]:.6f} {whole[1]:.6f}")
    assert whole[1] == pytest.approx(whole[0], rel=0.1)  # measured: 0.3% apart
    assert mse[1] == pytest.approx(mse[0], rel=0.25)  # other validation items: measured 5% apart


# Run on each simulated machine: read the folder as `aekit train` does and save what this machine holds.
READ_PROBE = """
import json, sys
from pathlib import Path
import numpy as np
from aekit.config.train import make_config
from aekit.core import distributed
from aekit.training import workflow

ctx = distributed.start("cpu")
data = workflow.read_data(sys.argv[1], make_config(None, batch_size=2), False, ctx)
name = f"node{ctx.node}-{ctx.local_rank}"
np.save(Path(sys.argv[2], name + ".npy"), data.array)
Path(sys.argv[2], name + ".json").write_text(json.dumps({"ids": data.ids, "shard": data.shard, "notes": data.notes}))
distributed.stop()
"""


def test_machines_whose_shards_call_for_other_plans_agree_on_the_folders(tmp_path):
    """2 machines of 2 processes. Machine 0's files are gray, mostly 16x16; machine 1's are 20x20,
    one in colour. Alone each would decode its shard otherwise; together both take the folder's
    plan (3 channels, 20x20, the most common size of all) and hold exactly the rows one process
    decodes from the whole folder; each machine's second process maps what its first decoded."""
    import numpy as np
    from PIL import Image

    from aekit.data.images import read_images

    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(11):  # machine 0: files 0, 2, ..., 10; machine 1: files 1, 3, ..., 9
        size = 16 if i in (0, 2, 4, 6) else 20
        im = smooth_images(1, size, size, 3 if i == 5 else 1, seed=i)[0]
        Image.fromarray(im if i == 5 else im[..., 0]).save(folder / f"f{i:02d}.png")
    (tmp_path / "probe.py").write_text(READ_PROBE)
    out = tmp_path / "out"
    out.mkdir()
    caches = [tmp_path / "cache0", tmp_path / "cache1"]
    on_two_machines([str(folder), str(out)], caches, script=str(tmp_path / "probe.py"), per_machine=2)
    whole = read_images(folder, show_progress=False)
    assert whole.shape == (3, 20, 20)
    for node in (0, 1):
        for local in (0, 1):
            got = json.loads((out / f"node{node}-{local}.json").read_text())
            assert got["ids"] == whole.ids[node::2] and got["shard"]["nodes"] == 2 and got["shard"]["files"] == 11
            np.testing.assert_array_equal(np.load(out / f"node{node}-{local}.npy"), whole.array[node::2])
            if local == 1:
                assert any("reused from the cache (memory-mapped)" in n for n in got["notes"]), got["notes"]
        assert {i for index in caches[node].glob("*/index.json") for i in json.loads(index.read_text())["ids"]} == set(
            whole.ids[node::2]
        )


def test_the_plan_of_the_folder_is_merged_from_the_shards():
    from aekit.data.shards import merged_plan

    def found(c, size, high, sizes):
        return {"plan": {"channels": c, "image_size": size, "high": high}, "sizes": sizes}

    parts = [found(1, [16, 16], False, [[16, 16, 4], [20, 20, 2]]), found(3, [20, 20], True, [[20, 20, 5]])]
    assert merged_plan(parts, None, None) == {"channels": 3, "image_size": [20, 20], "high": True}
    assert merged_plan(parts[:1], None, None) == {"channels": 1, "image_size": [16, 16], "high": False}
    assert merged_plan(parts, 4, (8, 12)) == {"channels": 4, "image_size": [8, 12], "high": True}
    big = [found(3, [128, 128], False, [[256, 256, 3]]), found(3, [100, 128], False, [[200, 256, 2]])]
    assert merged_plan(big, None, None)["image_size"] == [128, 128]  # scaled to a longest side of 128


def test_a_run_on_node_shards_resumes_only_on_as_many_machines(tmp_path, capsys):
    import torch

    from aekit.cli.main import main

    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(20, 8, 8, 1, seed=2))
    run = tmp_path / "run"
    assert main(["train", str(folder), *ARGS, "--epochs", "1", "--out", str(run)]) == 0
    state = torch.load(run / "state.pt", weights_only=True)
    torch.save({**state, "data_machines": 2}, run / "state.pt")  # as a run on 2 machines leaves it
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "node shards on 2 machine(s)" in err and "resume it on as many machines" in err, err


def test_the_listing_sent_to_the_machines_gives_each_its_part(tmp_path):
    from aekit.data.cache import listing_digest, take_listing
    from aekit.data.shards import pack, unpack

    write_pngs(tmp_path / "a", smooth_images(5, 4, 4, 1))
    write_pngs(tmp_path / "b" / "c", smooth_images(4, 4, 4, 1))
    (tmp_path / "notes.txt").write_text("x")
    whole = take_listing(tmp_path)
    for nodes in (1, 2, 3):
        for node in range(nodes):
            part, total = unpack(pack(whole), node, nodes)
            want = whole.part(node, nodes)
            assert total == 9 and part.files == want.files and part.stats == want.stats and part.others == want.others
            assert listing_digest(part.files, part.others, part.stats) == listing_digest(want.files, want.others)
