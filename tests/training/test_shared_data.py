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
    outside any mapping of data.npy)."""
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
