"""Users' own models: registered with aekit.register_model, trained by name, and found again in a
new process from the module the user names (--plugin, plugins=) or an entry point; never from the
import path that model.json records, which only says which --plugin to pass (SECURITY.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import aekit
from aekit.cli.main import main
from aekit.core.errors import AekitError

USER_MODELS = '''
"""A user's package: two small models of their own."""

import math

from torch import nn

import aekit
from aekit.models import AEModule, AEOutput


@aekit.register_model("tiny_user_ae", "a user's two-layer autoencoder")
class TinyAE(AEModule):
    def __init__(self, in_shape, latent_dim, width=None):
        super().__init__()
        self.in_shape = tuple(in_shape)
        d, width = math.prod(self.in_shape), width or 32
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.SiLU(), nn.Linear(width, latent_dim))
        self.dec = nn.Sequential(nn.Linear(latent_dim, width), nn.SiLU(), nn.Linear(width, d))

    def encode(self, x):
        return self.enc(x)

    def decode(self, z):
        return self.dec(z).view(-1, *self.in_shape)

    def forward(self, x):
        z = self.encode(x)
        return AEOutput(self.decode(z), z)


@aekit.register_model("plain_user_ae")
class PlainAE(nn.Module):
    """A plain nn.Module with encode and decode only."""

    def __init__(self, in_shape, latent_dim):
        super().__init__()
        self.shape = tuple(in_shape)
        self.enc = nn.Linear(math.prod(self.shape), latent_dim)
        self.dec = nn.Linear(latent_dim, math.prod(self.shape))

    def encode(self, x):
        return self.enc(x.flatten(1))

    def decode(self, z):
        return self.dec(z).view(-1, *self.shape)
'''

ENCODE = (
    "import sys, numpy as np, aekit; m = aekit.load(sys.argv[1], plugins=sys.argv[4:]); "
    "np.save(sys.argv[3], m.encode(np.load(sys.argv[2]))); print(repr(m))"
)


@pytest.fixture
def user_package(tmp_path, monkeypatch) -> Iterator[Path]:
    """mypkg/models.py in a folder of its own, importable here (and in children given PYTHONPATH)."""
    root = tmp_path / "userlib"
    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "models.py").write_text(textwrap.dedent(USER_MODELS))
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.split(".")[0] == "mypkg"]:  # its folder goes with tmp_path
        del sys.modules[name]


def images(n: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:12, 0:12]
    blobs = [np.exp(-((yy - rng.uniform(2, 10)) ** 2 + (xx - rng.uniform(2, 10)) ** 2) / 8) for _ in range(n)]
    return (np.stack(blobs) * 255).astype(np.uint8)  # (N, 12, 12) gray


def child(args: list[str], pythonpath: list[Path]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


def src_dir() -> Path:
    return Path(aekit.__file__).resolve().parents[1]


def test_a_users_model_trains_and_loads_in_a_new_process(tmp_path, user_package):
    import mypkg.models  # noqa: F401  (registers tiny_user_ae and plain_user_ae)

    x = images()
    np.save(tmp_path / "x.npy", x)
    run = aekit.train(x, arch="tiny_user_ae", latent_dim=4, epochs=3, out=tmp_path / "run", verbose=False)
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["arch"] == "tiny_user_ae" and meta["factory"] == "mypkg.models:TinyAE"
    assert meta["model_kwargs"] == {"in_shape": [1, 12, 12], "latent_dim": 4}  # no depth/width it did not get
    assert run.summary["arch"] == "tiny_user_ae" and np.isfinite(run.summary["val_mse"])
    assert not list(run.path.glob("*.pt*")) or {p.name for p in run.path.glob("*.pt*")} == {"state.pt"}
    z_here = aekit.load(run.path).encode(x)

    # a new process that never imported mypkg: the module the user names (plugins=) finds the model
    out = child(["-c", ENCODE, str(run.path), str(tmp_path / "x.npy"), str(tmp_path / "z.npy"), "mypkg.models"],
                [user_package, src_dir()])  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "arch='tiny_user_ae'" in out.stdout
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), z_here, rtol=1e-5, atol=1e-5)

    # the package importable but not named: model.json's import path is never imported; one line
    # says which --plugin to pass
    for argv in (
        ["-c", ENCODE, str(run.path), str(tmp_path / "x.npy"), str(tmp_path / "z1.npy")],
        ["-m", "aekit", "encode", str(run.path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "z2.npy")],
    ):
        out = child(argv, [user_package, src_dir()])
        err = out.stderr.strip().splitlines()[-1]
        assert out.returncode != 0 and "--plugin mypkg.models" in err and "plugins=['mypkg.models']" in err, err
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "z1.npy").exists() and not (tmp_path / "z2.npy").exists()

    # the command line names it: the same codes
    out = child(["-m", "aekit", "encode", str(run.path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "z3.npy"),
                 "--plugin", "mypkg.models"], [user_package, src_dir()])  # fmt: skip
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "z3.npy"), z_here, rtol=1e-5, atol=1e-5)


def test_cli_trains_a_plain_module_registered_by_a_plugin(tmp_path, user_package):
    np.save(tmp_path / "x.npy", images())
    run = tmp_path / "run"
    args = ["-m", "aekit", "train", str(tmp_path / "x.npy"), "--arch", "plain_user_ae", "--plugin", "mypkg.models"]
    out = child([*args, "--epochs", "2", "--latent-dim", "3", "--quiet", "--out", str(run)], [user_package, src_dir()])
    assert out.returncode == 0, out.stderr
    meta = json.loads((run / "model.json").read_text())
    assert meta["factory"] == "mypkg.models:PlainAE" and meta["latent_dim"] == 3
    import yaml

    assert yaml.safe_load((run / "config.yaml").read_text())["plugins"] == ["mypkg.models"]
    z = aekit.load(run, plugins=["mypkg.models"]).encode(images()[:5])  # this process names the module
    assert z.shape == (5, 3)


def test_entry_points_name_models_without_a_plugin(tmp_path, user_package):
    """An installed package's entry point (group aekit.models) is found by name."""
    info = user_package / "mypkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[aekit.models]\nep_user_ae = mypkg.models:TinyAE\n")
    np.save(tmp_path / "x.npy", images())
    out = child(["-m", "aekit", "models"], [user_package, src_dir()])
    assert out.returncode == 0 and "ep_user_ae" in out.stdout, out.stderr
    run = tmp_path / "run"
    out = child(["-m", "aekit", "train", str(tmp_path / "x.npy"), "--arch", "ep_user_ae", "--epochs", "1", "--quiet",
                 "--out", str(run)], [user_package, src_dir()])  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads((run / "model.json").read_text())["factory"] == "mypkg.models:TinyAE"


def test_unknown_arch_is_one_line_before_reading_data(tmp_path, capsys):
    assert main(["train", str(tmp_path / "not-read.npy"), "--arch", "nope", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown arch 'nope'" in err, err
    assert "conv" in err and "mlp" in err and "--plugin" in err
    assert main(["train", str(tmp_path / "x.npy"), "--plugin", "no_such_module_xyz", "--quiet"]) == 2
    assert "cannot import --plugin no_such_module_xyz" in capsys.readouterr().err


def test_register_model_refuses_a_taken_name():
    with pytest.raises(AekitError, match="already registered"):
        aekit.register_model("conv")(lambda in_shape, latent_dim: None)
    with pytest.raises(AekitError, match="model name"):
        aekit.register_model("auto")
