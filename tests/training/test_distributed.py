"""Distributed training through torchrun: 2 CPU processes with gloo against one process."""

import csv
import json

import pytest
import torch

from aekit.cli.main import main
from aekit.core import distributed
from tests.conftest import smooth_images, write_pngs

ARGS = ["--batch-size", "16", "--latent-dim", "4", "--width", "8", "--precision", "fp32", "--quiet"]
COMPARED = ("train_loss", "val_loss", "val_mse", "lr")


def metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return [{k: float(r[k]) for k in COMPARED} for r in csv.DictReader(f)]


@pytest.mark.parametrize("n, world", [(16, 2), (13, 2), (7, 3), (1, 2)])
def test_each_rank_takes_a_disjoint_equal_slice_of_every_global_batch(n, world):
    order = torch.randperm(50)
    batch = order[:n]
    padded = distributed.pad_to_world(batch, order, distributed.Context(0, world))
    parts = [padded[distributed.rank_slice(padded, distributed.Context(r, world))] for r in range(world)]
    assert len({len(p) for p in parts}) == 1  # equal sizes: DDP's averaged gradient is the batch mean
    assert torch.equal(torch.cat(parts), padded)  # together, in order: the whole global batch
    assert set(torch.cat(parts).tolist()) == set(batch.tolist())  # padding only repeats items


def test_each_rank_gets_its_own_gpu_when_cuda_is_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ctx = distributed.Context(rank=3, world=4, local_rank=1)
    assert distributed.rank_device("auto", ctx) == "cuda:1"
    assert distributed.rank_device("cuda", ctx) == "cuda:1"
    assert distributed.rank_device("cpu", ctx) == "cpu"
    assert distributed.rank_device("auto", distributed.Context()) == "auto"  # one process: unchanged


def test_two_gloo_processes_match_one_process_and_resume(tmp_path):
    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(71, 16, 16, 3, seed=7))  # 64 training items: 4 full global batches
    one, two = tmp_path / "one", tmp_path / "two"
    # 2 epochs, then resumed for a third: one process, and two processes with the same global batch
    for run, devices in ((one, []), (two, ["--devices", "2"])):
        assert main(["train", str(folder), *ARGS, "--epochs", "2", *devices, "--out", str(run)]) == 0
        assert main(["train", "--resume", str(run), "--epochs", "3", *devices, "--quiet"]) == 0
    a, b = metrics(one), metrics(two)
    assert len(a) == len(b) == 3
    # the same steps on the same items; only the order of float sums differs (gradients averaged over
    # two ranks, one thread per rank): equal to ~1e-7 (measured), asserted to 1e-5
    for ra, rb in zip(a, b):
        for k in COMPARED:
            assert rb[k] == pytest.approx(ra[k], rel=1e-5), k
    assert json.loads((two / "summary.json").read_text())["world_size"] == 2


def test_devices_must_divide_the_global_batch(tmp_path, capsys):
    assert main(["train", str(tmp_path), "--devices", "3", "--batch-size", "16"]) == 2
    assert "multiple of --devices 3" in capsys.readouterr().err


def test_the_time_budget_stops_all_ranks_together(tmp_path):
    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(71, 16, 16, 1, seed=8))
    run = tmp_path / "run"
    argv = ["train", str(folder), *ARGS, "--epochs", "100000", "--max-time", "3", "--patience", "0", "--devices", "2"]
    argv += ["--out", str(run)]
    assert main(argv) == 0  # a rank left waiting in a collective would hang here
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped"] == "time budget of 3 s spent" and summary["world_size"] == 2


def test_encode_and_score_under_torchrun_write_one_merged_output(tmp_path):
    import subprocess
    import sys

    import numpy as np

    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(37, 16, 16, 1, seed=9))
    run = tmp_path / "run"
    assert main(["train", str(folder), *ARGS, "--epochs", "1", "--out", str(run)]) == 0
    assert main(["encode", str(run), str(folder), "-o", str(tmp_path / "z1.csv"), "--quiet"]) == 0
    assert main(["score", str(run), str(folder), "-o", str(tmp_path / "s1.csv"), "--quiet"]) == 0
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "aekit"]
    for cmd, out in (("encode", "z2.csv"), ("score", "s2.csv")):
        subprocess.run([*torchrun, cmd, str(run), str(folder), "-o", str(tmp_path / out), "--quiet"], check=True)
    for one, two in (("z1.csv", "z2.csv"), ("s1.csv", "s2.csv")):
        a = list(csv.reader(open(tmp_path / one)))
        b = list(csv.reader(open(tmp_path / two)))
        assert len(a) == len(b) == 38 and [r[0] for r in a] == [r[0] for r in b]  # every item once, in order
        np.testing.assert_allclose(
            np.array([r[1:2] for r in a[1:]], float), np.array([r[1:2] for r in b[1:]], float), rtol=1e-5
        )


def test_a_sweep_under_torchrun_trains_each_trial_on_both_ranks(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(71, 16, 16, 1, seed=10))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "aekit"]
    out = tmp_path / "sweep"
    argv = ["sweep", str(folder), "--latent-dim", "2,4", "--epochs", "2", *ARGS[:2], "--quiet", "-o", str(out)]
    subprocess.run([*torchrun, *argv], check=True)
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert sorted(r["latent_dim"] for r in rows) == ["2", "4"] and all(r["status"] == "done" for r in rows)
    for trial in (out / "trials").iterdir():
        assert json.loads((trial / "summary.json").read_text())["world_size"] == 2
    assert (out / "best").resolve().parent == (out / "trials").resolve()
