"""core/distributed.py without starting processes: which backend a device gets, refused where none
serves it (Apple MPS), and what the process group is started with."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

import aekit.cli.commands
from aekit.cli.main import main
from aekit.core import distributed
from aekit.core.errors import AekitError


@pytest.fixture
def mac(monkeypatch):
    """This machine as a Mac: MPS, no CUDA; torchrun never starts (a call is recorded)."""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    launched = []
    monkeypatch.setattr(aekit.cli.commands, "launch", lambda n, argv: launched.append(n) or 0)
    return launched


def test_several_processes_on_mps_are_refused_in_one_line_before_torchrun(mac, tmp_path, capsys):
    for device in ([], ["--device", "mps"], ["--device", "auto"]):
        assert main(["train", str(tmp_path), "--devices", "2", *device]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "2 processes cannot run on Apple MPS" in err, err
        assert "--device cpu" in err and "Traceback" not in err
    assert mac == []  # torchrun was never started
    assert main(["train", str(tmp_path), "--devices", "2", "--device", "cpu"]) == 0
    config = tmp_path / "c.yaml"
    config.write_text("device: cpu\n")
    assert main(["train", str(tmp_path), "--devices", "2", "--config", str(config)]) == 0
    assert mac == [2, 2]  # CPU processes (gloo) are started


def test_a_torchrun_launch_on_mps_is_refused_before_the_process_group(mac, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: pytest.fail("joined a process group"))
    for device in ("auto", "mps"):
        with pytest.raises(AekitError, match="2 processes cannot run on Apple MPS"):
            distributed.start(device)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with both: auto is CUDA (nccl)
    distributed.check_backend("auto")
    with pytest.raises(AekitError):
        distributed.check_backend("mps")


def joined(monkeypatch, device: str = "cpu") -> dict:
    """The keyword arguments `start(device)` joins the process group with (under a 2-process launch)."""
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls.append(kw))
    distributed.start(device)
    return calls[0]


def test_the_process_group_waits_an_hour_or_aekit_dist_timeout(monkeypatch):
    from datetime import timedelta

    monkeypatch.delenv("AEKIT_DIST_TIMEOUT", raising=False)
    assert joined(monkeypatch) == {"backend": "gloo", "timeout": timedelta(minutes=60)}  # not NCCL's 10 minutes
    monkeypatch.setenv("AEKIT_DIST_TIMEOUT", "7200")
    assert joined(monkeypatch)["timeout"] == timedelta(hours=2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: None)
    assert joined(monkeypatch, "auto") == {"backend": "nccl", "timeout": timedelta(hours=2)}
    for bad in ("soon", "0", "-5", "inf", "nan"):
        monkeypatch.setenv("AEKIT_DIST_TIMEOUT", bad)
        with pytest.raises(AekitError, match="AEKIT_DIST_TIMEOUT=.*give the seconds"):
            distributed.timeout()
