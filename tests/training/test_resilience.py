"""Resilience: exact resume after kill -9, Ctrl-C, the NaN guard, safe loading, atomic writes."""

import builtins
import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import aekit
import aekit.models.checkpoint
import aekit.training.fit
from aekit.cli.main import main
from aekit.core.compute import compute_settings
from aekit.core.rundir import RUN_MARKER
from aekit.models import create_model
from aekit.training.step import train_step
from tests.conftest import smooth_images, write_pngs

# fp32: the measured auto precision (training/probe.py) may differ between two runs
ARGS = ["--epochs", "8", "--latent-dim", "6", "--width", "8", "--batch-size", "16", "--seed", "3"]
ARGS += ["--precision", "fp32", "--quiet"]
COMPARED = ("epoch", "train_loss", "val_loss", "val_mse", "lr")


def metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return [{k: float(r[k]) for k in COMPARED} for r in csv.DictReader(f)]


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def folder(tmp_path):
    f = tmp_path / "imgs"
    write_pngs(f, smooth_images(400, 16, 16, 3, seed=5))
    return f


def test_killed_run_resumes_to_the_same_metrics(folder, tmp_path):
    before = digest(folder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "aekit", "train", str(folder), *ARGS]
    subprocess.run([*cmd, "--out", str(tmp_path / "ref")], check=True, env=env, capture_output=True)
    run = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (run / "metrics.csv").is_file() and len(metrics(run)) >= 2:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # somewhere in the third epoch or later: no chance to clean up
    proc.wait()
    done = len(metrics(run))
    assert 2 <= done < 8, f"the run was not killed mid-training ({done} epochs written)"
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    ref, resumed = metrics(tmp_path / "ref"), metrics(run)
    assert len(resumed) == len(ref) == 8
    for a, b in zip(ref, resumed):
        for k in COMPARED:
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-9), (a["epoch"], k)
    assert aekit.load(run).encode(np.zeros((1, 16, 16, 3), np.uint8)).shape == (1, 6)
    assert digest(folder) == before


def test_killed_after_a_mid_epoch_checkpoint_resumes_at_that_step(tmp_path, capsys):
    """--checkpoint-every 12 (9 steps an epoch): state.pt at step 12, inside epoch 2; killed with
    -9 before the end of that epoch, the resumed run goes on from step 12 with the epoch's own order
    and ends with the steps and metrics of a run never stopped (no item seen twice or skipped)."""
    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(160, 16, 16, 3, seed=5))
    before = digest(folder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [str(folder), "--epochs", "2", *ARGS[2:]]
    run = tmp_path / "killed"
    argv = [sys.executable, "-m", "aekit", "train", *args, "--out", str(run), "--checkpoint-every", "12"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, seen = time.time() + 120, None
    while time.time() < deadline and proc.poll() is None:
        if (run / "state.pt").is_file() and (run / "state.pt").stat().st_mtime_ns != seen:
            seen = (run / "state.pt").stat().st_mtime_ns
            if torch.load(run / "state.pt", weights_only=True)["partial"] is not None:
                break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)  # 6 steps before the end of epoch 2
    proc.wait()
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["step"] == 12 and state["epoch"] == 1 and state["partial"]["next"] == 3 * 16, state["step"]
    assert len(metrics(run)) == 1
    assert main(["train", "--resume", str(run)]) == 0
    assert "resuming inside epoch 2 of 2, after step 12" in capsys.readouterr().err
    assert main(["train", *args, "--out", str(tmp_path / "ref")]) == 0  # the same run, never stopped
    ref, resumed = metrics(tmp_path / "ref"), metrics(run)
    assert len(resumed) == len(ref) == 2
    for a, b in zip(ref, resumed):
        for k in COMPARED:
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-9), (a["epoch"], k)
    final = torch.load(run / "state.pt", weights_only=True)
    assert final["step"] == torch.load(tmp_path / "ref" / "state.pt", weights_only=True)["step"] == 2 * 9
    assert final["partial"] is None and digest(folder) == before


def test_checkpoints_are_due_every_n_steps_or_once_the_time_has_passed():
    from aekit.core.distributed import Context
    from aekit.training.state import Checkpoints

    cpu, one = torch.device("cpu"), Context()
    steps = Checkpoints("3", save=None)
    assert [steps.due(step, 0.0, cpu, one) for step in range(1, 8)] == [False, False, True, False, False, True, False]
    timed = Checkpoints("10s", save=None)
    timed.saved(100.0)  # the last save (the end of an epoch counts too)
    assert not timed.due(1, 109.9, cpu, one) and timed.due(2, 110.0, cpu, one)
    timed.saved(110.0)
    assert not timed.due(3, 115.0, cpu, one) and Checkpoints("2m", save=None).every == 120.0


def test_sigterm_stops_like_ctrl_c_with_exit_143(folder, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "aekit", "train", str(folder), *ARGS[2:-1], "--epochs", "200", "--out", str(run)]
    before = digest(folder)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (run / "metrics.csv").is_file() and len(metrics(run)) >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # what timeout, SLURM and Kubernetes send
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert f"aekit train --resume {run}" in err.replace("\n", "")
    s = json.loads((run / "summary.json").read_text())
    assert s["stopped"] == "interrupted (SIGTERM)" and (run / "model.safetensors").is_file()
    assert 2 <= s["epochs_run"] < 200 and digest(folder) == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pseudo-terminal as on Linux")
def test_ctrl_c_typed_in_a_real_terminal_keeps_the_run_and_exits_130(folder, tmp_path):
    """aekit runs in a pseudo-terminal as in a shell; ^C typed into it makes the terminal driver send
    SIGINT to the whole foreground process group (aekit and its data loader, if any)."""
    import fcntl
    import pty
    import select
    import termios

    def own_terminal() -> None:  # in the child: a new session whose controlling terminal is the pty
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "aekit", "train", str(folder), *ARGS[2:-1], "--epochs", "200", "--out", str(run)]
    before = digest(folder)
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, env=env, stdin=slave, stdout=slave, stderr=slave, preexec_fn=own_terminal)
    os.close(slave)
    out, deadline = b"", time.time() + 120

    def read_some() -> bytes:
        ready, _, _ = select.select([master], [], [], 0.05)
        try:
            return os.read(master, 65536) if ready else b""
        except OSError:  # the child closed the terminal
            return b""

    while time.time() < deadline and proc.poll() is None:
        out += read_some()
        if (run / "metrics.csv").is_file() and len(metrics(run)) >= 2:
            break
    os.write(master, b"\x03")  # Ctrl-C, as typed
    while proc.poll() is None and time.time() < deadline:
        out += read_some()
    out += read_some()
    os.close(master)
    text = out.decode(errors="replace").replace("\r", "").replace("\n", "")
    assert proc.wait(timeout=60) == 130, text[-2000:]
    assert f"aekit train --resume {run}" in text
    s = json.loads((run / "summary.json").read_text())
    assert s["stopped"].startswith("interrupted") and (run / "model.safetensors").is_file()
    assert 2 <= s["epochs_run"] < 200 and digest(folder) == before


def test_ctrl_c_keeps_the_run_and_says_how_to_resume(folder, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = aekit.training.fit.train_step

    def interrupt_in_epoch_two(*a, **k):
        calls["n"] += 1
        if calls["n"] == 30:  # 23 steps an epoch
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(aekit.training.fit, "train_step", interrupt_in_epoch_two)
    run, before = tmp_path / "run", digest(folder)
    assert main(["train", str(folder), *ARGS[:-1], "--out", str(run)]) == 130
    err = capsys.readouterr().err
    assert f"aekit train --resume {run}" in err
    assert len(metrics(run)) == 1 and (run / "model.safetensors").is_file()
    monkeypatch.setattr(aekit.training.fit, "train_step", real)
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert [r["epoch"] for r in metrics(run)] == [1, 2, 3] and digest(folder) == before


def test_a_torchrun_restart_goes_on_with_the_run_of_the_same_command(folder, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = aekit.training.fit.train_step

    def crash_in_epoch_two(*a, **k):
        calls["n"] += 1
        if calls["n"] == 30:  # 23 steps an epoch
            raise KeyboardInterrupt  # the process dies after epoch 1 (what torchrun would restart)
        return real(*a, **k)

    monkeypatch.setattr(aekit.training.fit, "train_step", crash_in_epoch_two)
    run, before = tmp_path / "run", digest(folder)
    argv = ["train", str(folder), "--epochs", "3", *ARGS[2:-1], "--out", str(run)]
    assert main(argv) == 130 and len(metrics(run)) == 1
    monkeypatch.setattr(aekit.training.fit, "train_step", real)
    assert main(argv) == 2  # the same command again, by hand: the folder holds a run
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # set by torchrun when it restarts a job
    capsys.readouterr()
    assert main(argv) == 0
    assert "torchrun restart 1: going on with" in capsys.readouterr().err
    assert [r["epoch"] for r in metrics(run)] == [1, 2, 3] and digest(folder) == before


def test_resume_refuses_changes_and_finished_runs(folder, tmp_path, capsys):
    run, before = tmp_path / "run", digest(folder)
    assert main(["train", str(folder), "--epochs", "1", "--latent-dim", "4", "--quiet", "--out", str(run)]) == 0
    for argv, needle in [
        (["--resume", str(run)], "already trained all 1 epochs"),
        (["--resume", str(run), "--lr", "0.1"], "cannot change lr"),
        (["--resume", str(tmp_path)], "not a run folder"),
        ([], "give DATA"),
    ]:
        assert main(["train", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
    assert digest(folder) == before


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_state_file_that_would_run_code_is_refused(folder, tmp_path, capsys, monkeypatch):
    run, before = tmp_path / "run", digest(folder)
    assert main(["train", str(folder), "--epochs", "1", "--latent-dim", "4", "--quiet", "--out", str(run)]) == 0
    torch.save({"format": 1, "epoch": 0, "payload": Evil()}, run / "state.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "refusing to load" in err and "run code" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "pwned").exists() and digest(folder) == before


def test_train_step_skips_non_finite_steps_without_touching_the_weights():
    model = create_model("conv", in_shape=(1, 8, 8), latent_dim=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    s = compute_settings(torch.device("cpu"), "fp32")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 1, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    terms = train_step(model, opt, x, s)
    assert terms["skipped"] is True
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert "skipped" not in train_step(model, opt, torch.randn(4, 1, 8, 8), s)


def test_repeated_non_finite_steps_stop_the_run_with_the_likely_cause(folder, tmp_path, monkeypatch, capsys):
    def always_nan(*a, **k):
        return {"loss": torch.tensor(float("nan")), "skipped": True}

    monkeypatch.setattr(aekit.training.fit, "train_step", always_nan)
    before = digest(folder)
    run = aekit.train(folder, epochs=3, latent_dim=4, verbose=False, out=tmp_path / "run")
    assert digest(folder) == before
    assert run.summary["stopped"].startswith("diverged: 8 steps")
    assert "--lr too high" in run.summary["stopped"] and "extreme values" in run.summary["stopped"]
    assert run.summary["best_epoch"] == 0  # the finite starting point is what is kept
    z = aekit.load(run.path).encode(np.zeros((2, 16, 16, 3), np.uint8))
    assert np.isfinite(z).all()


def test_a_crash_while_saving_leaves_the_previous_model_loadable(folder, tmp_path, monkeypatch):
    run = aekit.train(folder, epochs=1, latent_dim=4, verbose=False, out=tmp_path / "run")
    before = aekit.load(run.path).encode(np.zeros((1, 16, 16, 3), np.uint8))

    def crash(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk gone")

    monkeypatch.setattr(aekit.models.checkpoint, "save_file", crash)
    model, _, meta = aekit.models.checkpoint.load_model(run.path)
    with pytest.raises(OSError):
        aekit.models.checkpoint.save_model(run.path, model, meta)
    hidden = [p.name for p in run.path.iterdir() if p.name.startswith(".")]
    assert hidden == [RUN_MARKER]  # no temporary left behind, only the marker of a run folder
    np.testing.assert_array_equal(aekit.load(run.path).encode(np.zeros((1, 16, 16, 3), np.uint8)), before)


def test_bombs_and_unreadable_files_are_skipped_and_data_is_never_modified(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "d"
    write_pngs(folder, smooth_images(12, 16, 16, 3))
    Image.new("RGB", (400, 300)).save(folder / "bomb.png")
    (folder / "locked.png").write_bytes((folder / "img000.png").read_bytes())
    before = digest(folder)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)  # 120000 pixels: over twice the limit

    real_open = builtins.open

    def no_permission(fp, *a, **k):  # what reading a file without read permission does (root reads all)
        if str(fp).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(builtins, "open", no_permission)
        m.setattr(io, "open", no_permission)  # Path.read_bytes
        run = aekit.train(folder, epochs=1, latent_dim=4, verbose=False, out=tmp_path / "run", cache_dir=None)
    skipped = {s["path"]: s["reason"] for s in run.summary["skipped"]}
    assert set(skipped) == {"bomb.png", "locked.png"}
    assert "pixels" in skipped["bomb.png"] and "ermission" in skipped["locked.png"]
    assert run.summary["n_images"] == 12
    assert digest(folder) == before


@pytest.mark.skipif(not os.path.isfile("/proc/self/status"), reason="reads the peak from /proc (Linux)")
def test_a_very_large_image_is_resized_without_a_memory_blow_up(tmp_path):
    folder = tmp_path / "big"
    write_pngs(folder, smooth_images(8, 32, 32, 3))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (4000, 6000, 3), dtype=np.uint8)).save(
        folder / "huge.jpg", quality=80
    )
    code = (
        "import sys, aekit; r = aekit.train(sys.argv[1], epochs=1, latent_dim=4, image_size=32, verbose=False, "
        "out=sys.argv[2], cache_dir=None); assert r.summary['n_images'] == 9, r.summary; "
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    before = digest(folder)
    argv = [sys.executable, "-c", code, str(folder), str(tmp_path / "run")]
    done = subprocess.run(argv, check=True, env=env, capture_output=True, text=True)
    assert digest(folder) == before
    # the child's own peak since it started Python: VmHWM starts again at exec, while getrusage's
    # ru_maxrss keeps the forking pytest process's size (and RUSAGE_CHILDREN is the largest child ever)
    peak_mb = int(done.stdout.split()[-1]) / 1024
    assert peak_mb < 1000, peak_mb  # ~410 MB measured: torch ~400 MB; the 24-megapixel image decodes as ~70 MB


def test_a_second_sigterm_while_stopping_changes_nothing():
    """A dying parent can send its children two SIGTERMs (seen with torchrun killed by -9): the
    first stops the run, the second must not interrupt the clean stop (saving, the summary)."""
    import signal as sig

    from aekit.core.signals import Terminated, sigterm_as_interrupt

    stopped, second = False, None
    with sigterm_as_interrupt():
        try:
            os.kill(os.getpid(), sig.SIGTERM)
            time.sleep(1)  # the handler raises here
        except Terminated:
            stopped = True
            try:
                os.kill(os.getpid(), sig.SIGTERM)  # the second, during the clean stop
                time.sleep(0.05)
                second = "ignored"
            except Terminated:
                second = "raised again"
    assert stopped and second == "ignored"
