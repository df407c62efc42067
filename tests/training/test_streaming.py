"""Training on tar shards streamed (data/stream.py, training/batches.py): a loadable run, resume, bad input."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest
import torch

import aekit
from aekit.cli.main import main
from aekit.data.stream import write_shards
from tests.conftest import kill_tree, smooth_images, write_pngs

ARGS = ["--latent-dim", "4", "--width", "8", "--batch-size", "16", "--seed", "3", "--precision", "fp32", "--quiet"]
COMPARED = ("epoch", "train_loss", "val_loss", "val_mse", "lr")


def metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return [{k: float(r[k]) for k in COMPARED} for r in csv.DictReader(f)]


@pytest.fixture
def shards(tmp_path):
    write_pngs(tmp_path / "imgs", smooth_images(160, 16, 16, 3, seed=5))
    write_shards(tmp_path / "imgs", tmp_path / "shards", per_shard=40)
    return tmp_path / "shards"


def test_a_streamed_run_trains_and_its_model_encodes_and_scores(shards, tmp_path):
    with tarfile.open(shards / "data-000001.tar", "a") as tar:  # a corrupt member: skipped and counted
        info = tarfile.TarInfo("zzz.png")
        info.size = 9
        tar.addfile(info, io.BytesIO(b"not a png"))
    run = aekit.train(shards / "data-{000000..000003}.tar", out=tmp_path / "run", max_steps=12, verbose=False,
                      **{"latent_dim": 4, "width": 8, "batch_size": 16})  # fmt: skip
    s = run.summary
    assert s["n_val"] == 16 and s["n_train"] == 144 and s["image_size"] == [16, 16] and s["channels"] == 3
    assert [k["path"] for k in s["skipped"]] == ["data-000001.tar/zzz"]
    assert s["stopped"] == "completed the budget of 12 steps" and torch.load(run.path / "state.pt")["step"] == 12
    images = smooth_images(5, 16, 16, 3, seed=9)
    assert run.load().encode(images).shape == (5, 4)
    write_pngs(tmp_path / "new", images)
    scores = aekit.score(run.path, tmp_path / "new")
    assert len(scores.scores) == 5 and np.isfinite(scores.scores).all()
    assert len((run.path / "validation_scores.csv").read_text().splitlines()) == 17


def test_a_streamed_run_resumes_after_max_steps(shards, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(shards), *ARGS, "--epochs", "3", "--max-steps", "6", "--out", str(run)]) == 0
    assert torch.load(run / "state.pt")["step"] == 6
    assert main(["train", "--resume", str(run), "--max-steps", "14"]) == 0
    assert torch.load(run / "state.pt")["step"] == 14 and len(metrics(run)) == 2


def test_killed_after_a_mid_epoch_checkpoint_resumes_to_the_same_metrics(shards, tmp_path):
    """144 training items (batches of 16) in 4 shards read by 2 workers; --checkpoint-every 3; killed with -9 once a
    mid-epoch state exists; the resumed run reads that epoch again in its order, leaves out the
    batches done and ends with the metrics of a run never stopped."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [str(shards), *ARGS, "--epochs", "2", "--checkpoint-every", "3"]
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "aekit", "train", *args, "--out", str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline, seen = time.time() + 120, None
    while time.time() < deadline and proc.poll() is None:
        if (run / "state.pt").is_file() and (run / "state.pt").stat().st_mtime_ns != seen:
            seen = (run / "state.pt").stat().st_mtime_ns
            try:
                if torch.load(run / "state.pt", weights_only=True)["partial"] is not None:
                    break
            except Exception:  # caught mid-rename: look again
                pass
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["partial"] is not None and state["partial"]["next"] == 3
    assert main(["train", "--resume", str(run)]) == 0
    assert main(["train", *args, "--out", str(tmp_path / "ref")]) == 0
    ref, resumed = metrics(tmp_path / "ref"), metrics(run)
    assert len(ref) == len(resumed) == 2
    for a, b in zip(ref, resumed):
        for k in COMPARED:
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-9), (a["epoch"], k)
    # 9 full batches an epoch, and each of the 2 workers ends its part with a short batch: 10 steps
    assert torch.load(run / "state.pt")["step"] == torch.load(tmp_path / "ref" / "state.pt")["step"] == 20


def test_an_empty_tar_is_one_line_exit_2(tmp_path, capsys):
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    assert main(["train", str(tmp_path / "empty.tar"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no readable image sample" in err and "Traceback" not in err


def test_two_gloo_processes_stream_disjoint_shards_and_end_each_epoch_together(tmp_path):
    """5 shards on 2 ranks (3 and 2 a rank each epoch, each rank a different count of batches), a
    corrupt member in one: the run ends every epoch on both ranks at the same step (no hang)."""
    write_pngs(tmp_path / "imgs", smooth_images(100, 16, 16, 3, seed=5))
    shards = tmp_path / "shards"
    write_shards(tmp_path / "imgs", shards, per_shard=20)
    with tarfile.open(shards / "data-000004.tar", "a") as tar:
        info = tarfile.TarInfo("zzz.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    run = tmp_path / "run"
    assert main(["train", str(shards), *ARGS, "--epochs", "2", "--devices", "2", "--out", str(run)]) == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["world_size"] == 2 and s["epochs_run"] == 2 and s["n_val"] == 10
    assert [k["path"] for k in s["skipped"]] == ["data-000004.tar/zzz"]


def test_two_gloo_processes_killed_after_a_mid_epoch_checkpoint_resume_to_the_same_metrics(tmp_path):
    """5 shards of 20 on 2 ranks, --checkpoint-every 2; the whole job (torchrun and both ranks) is
    killed with -9 once a mid-epoch state exists; resumed on 2 processes it ends as a run never stopped."""
    write_pngs(tmp_path / "imgs", smooth_images(100, 16, 16, 3, seed=5))
    shards = tmp_path / "shards"
    write_shards(tmp_path / "imgs", shards, per_shard=20)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [str(shards), *ARGS, "--epochs", "2", "--devices", "2", "--checkpoint-every", "2"]
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "aekit", "train", *args, "--out", str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline, seen = time.time() + 180, None
    while time.time() < deadline and proc.poll() is None:
        if (run / "state.pt").is_file() and (run / "state.pt").stat().st_mtime_ns != seen:
            seen = (run / "state.pt").stat().st_mtime_ns
            try:
                if torch.load(run / "state.pt", weights_only=True)["partial"] is not None:
                    break
            except Exception:  # caught mid-rename: look again
                pass
        time.sleep(0.002)
    kill_tree(proc.pid)  # the ranks first: torchrun starts them in their own sessions
    proc.wait()
    assert torch.load(run / "state.pt", weights_only=True)["partial"] is not None
    assert main(["train", "--resume", str(run), "--devices", "2", "--quiet"]) == 0
    assert main(["train", *args, "--out", str(tmp_path / "ref")]) == 0
    ref, resumed = metrics(tmp_path / "ref"), metrics(run)
    assert len(ref) == len(resumed) == 2
    for a, b in zip(ref, resumed):
        for k in COMPARED:
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-9), (a["epoch"], k)
    assert torch.load(run / "state.pt")["step"] == torch.load(tmp_path / "ref" / "state.pt")["step"]
