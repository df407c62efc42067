"""Distributed training through torchrun: 2 CPU processes with gloo against one process."""

import csv
import json

import pytest
import torch

from aekit.cli.main import main
from aekit.core import distributed
from tests.conftest import alive, descendants, smooth_images, tree_digest, write_pngs

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


def test_a_mid_epoch_checkpoint_resumes_on_two_processes(tmp_path, monkeypatch):
    """The state of a mid-epoch checkpoint holds the loss sums of all ranks: rank 0 goes on with
    them, the others from zero, so a run stopped after one (here on one process, at step 7 of 8,
    checkpoint at step 6) resumed on two processes ends as the run that never stopped."""
    import aekit.training.fit

    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(71, 16, 16, 3, seed=7))  # 64 training items: 4 steps an epoch
    ref, run, before = tmp_path / "ref", tmp_path / "run", tree_digest(folder)
    assert main(["train", str(folder), *ARGS, "--epochs", "2", "--out", str(ref)]) == 0
    real, calls = aekit.training.fit.train_step, []

    def stop_at_step_7(*a, **k):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(aekit.training.fit, "train_step", stop_at_step_7)
    argv = ["train", str(folder), *ARGS, "--epochs", "2", "--checkpoint-every", "6", "--out", str(run)]
    assert main(argv) == 130
    monkeypatch.setattr(aekit.training.fit, "train_step", real)
    assert torch.load(run / "state.pt", weights_only=True)["partial"]["next"] == 32
    assert main(["train", "--resume", str(run), "--devices", "2", "--quiet"]) == 0
    assert tree_digest(folder) == before
    a, b = metrics(ref), metrics(run)
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        for k in COMPARED:
            assert rb[k] == pytest.approx(ra[k], rel=1e-5), k


def test_devices_must_divide_the_global_batch(tmp_path, capsys):
    assert main(["train", str(tmp_path), "--devices", "3", "--batch-size", "16"]) == 2
    assert "multiple of --devices 3" in capsys.readouterr().err


def test_the_time_budget_stops_all_ranks_together(tmp_path):
    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(71, 16, 16, 1, seed=8))
    run = tmp_path / "run"
    argv = ["train", str(folder), *ARGS, "--epochs", "100000", "--max-time", "3", "--patience", "0", "--devices", "2"]
    argv += ["--out", str(run)]
    before = tree_digest(folder)
    assert main(argv) == 0  # a rank left waiting in a collective would hang here
    assert tree_digest(folder) == before
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped"].startswith("time budget of 3 s spent") and summary["world_size"] == 2


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


def test_a_wait_is_reported_every_interval_and_only_while_it_lasts(capsys):
    import time

    with distributed.waiting(lambda s: f"waiting {s:.1f}", every=0.05):
        time.sleep(0.32)
    time.sleep(0.15)
    lines = capsys.readouterr().err.splitlines()
    assert 4 <= len(lines) <= 7 and all(line.startswith("aekit: waiting 0.") for line in lines), lines
    with distributed.waiting(lambda s: "never", every=0.05):
        pass  # a wait that ends at once says nothing
    with distributed.waiting(lambda s: "not this process", report=False, every=0.01):
        time.sleep(0.05)
    time.sleep(0.1)
    assert capsys.readouterr().err == ""


def test_rank_0_says_it_waits_while_its_peer_never_starts(tmp_path):
    """A world of 2 where only rank 0 starts: it waits to join, saying so, until it is stopped."""
    import os
    import socket
    import subprocess
    import sys
    import threading

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    code = "import aekit.core.distributed as d; d.WAIT_REPORT_S = 0.5; d.start('cpu')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    limit = threading.Timer(30, proc.kill)  # a silent wait fails the test instead of hanging it
    limit.start()
    try:
        lines = [proc.stderr.readline().strip() for _ in range(2)]
        assert proc.poll() is None  # still waiting for rank 1
    finally:
        limit.cancel()
        proc.kill()
        proc.wait()
    want = f"aekit: rank 0 of 2: waiting for the others to join at 127.0.0.1:{port}; started "
    assert len(lines) == 2 and all(line.startswith(want) for line in lines), lines
    assert "is every machine of the job running it?" in lines[0]


def test_a_resume_that_cannot_go_on_is_one_line_before_torchrun_starts(tmp_path, capsys, monkeypatch):
    import aekit.cli.commands

    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(20, 16, 16, 1, seed=7))
    run = tmp_path / "run"
    assert main(["train", str(folder), *ARGS, "--epochs", "1", "--out", str(run)]) == 0
    before = tree_digest(run)
    started = []
    monkeypatch.setattr(aekit.cli.commands, "launch", lambda *a: started.append(a) or 0)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--devices", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already trained all 1 epochs" in err and not started
    assert tree_digest(run) == before  # the run is left as it was
    assert main(["train", "--resume", str(run), "--devices", "2", "--epochs", "2", "--quiet"]) == 0
    assert len(started) == 1  # a resume that can go on is launched


def test_the_ranks_stop_when_torchrun_is_killed(tmp_path):
    """torchrun starts its workers in sessions of their own: with its agent killed by -9 they used to
    train on unseen. Now each asked the kernel for a SIGTERM at the agent's death and stops as on
    Ctrl-C: the best model is kept and the state saved."""
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(71, 16, 16, 3, seed=7))
    before = tree_digest(folder)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = ["train", str(folder), *ARGS, "--epochs", "100000", "--devices", "2", "--out", str(run)]
    proc = subprocess.Popen([sys.executable, "-m", "aekit", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "state.pt").is_file():  # the ranks are training
            time.sleep(0.05)
        tree = descendants(proc.pid)
        agent = next(p for p, parent in tree.items() if parent == proc.pid)
        ranks = [p for p, parent in tree.items() if parent == agent]
        assert len(ranks) == 2
        os.kill(agent, signal.SIGKILL)
        deadline = time.time() + 180  # they stop as on Ctrl-C: the best model and the state are saved first
        while time.time() < deadline and any(alive(p) for p in ranks):
            time.sleep(0.05)
        assert not any(alive(p) for p in ranks)
    finally:
        for p in [*descendants(proc.pid), proc.pid]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    # the best model and the last state are there, and the run goes on from them
    step = torch.load(run / "state.pt", weights_only=True)["step"]
    assert step >= 4 and (run / "model.safetensors").is_file()
    assert main(["train", "--resume", str(run), "--devices", "2", "--max-steps", str(step + 8), "--quiet"]) == 0
    assert torch.load(run / "state.pt", weights_only=True)["step"] == step + 8 and tree_digest(folder) == before
