"""Trust boundaries (SECURITY.md): a run folder, a config file, a sweep folder or data is never a
reason to import, unpickle or call code; only what the user installed or named (--plugin,
plugins=) runs. Each test plants code that would leave a file behind if it ever ran."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

import aekit
from aekit.cli.main import main
from aekit.core.errors import AekitError
from tests.conftest import FAST, smooth_images, unchanged, write_pngs

EVIL = """
from pathlib import Path
Path({flag!r}).write_text("imported")
X = lambda **kw: None
"""


def plant(folder: Path, flag: Path, name: str = "evilmod") -> str:
    """A module `name` in `folder` whose import writes `flag`."""
    (folder / f"{name}.py").write_text(textwrap.dedent(EVIL.format(flag=str(flag))))
    return name


def one_line(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, (code, err)
    return err


@pytest.fixture
def hostile_run(rgb_run, tmp_path, monkeypatch) -> tuple[Path, Path, Path]:
    """(run, data, flag): a copy of a trained run whose model.json names os:system as the factory of
    its model, with a shell command that would create `flag`, and an importable module that would
    create it too (on sys.path, as the current folder is under `python -m`)."""
    folder, run = rgb_run
    shutil.copytree(folder, tmp_path / "data")
    shutil.copytree(run, tmp_path / "run", symlinks=True)
    flag = tmp_path / "PWNED"
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    meta.update(arch="pwn_model", factory="os:system", model_kwargs={"command": f"touch {flag}"})
    (tmp_path / "run" / "model.json").write_text(json.dumps(meta))
    lib = tmp_path / "lib"
    lib.mkdir()
    plant(lib, flag)
    monkeypatch.syspath_prepend(str(lib))
    return tmp_path / "run", tmp_path / "data", flag


def test_a_model_json_naming_code_runs_nothing_on_any_path_that_reads_a_run(hostile_run, tmp_path, capsys):
    run, data, flag = hostile_run
    out = tmp_path / "out"
    image = next(data.rglob("*.png"))
    commands = [
        ["encode", str(run), str(data), "-o", str(out / "z.csv")],
        ["score", str(run), str(data), "-o", str(out / "s.csv")],
        ["reconstruct", str(run), str(data), "-o", str(out / "r")],
        ["evaluate", str(run), str(data)],
        ["export", str(run), "-o", str(out / "m.onnx")],
        ["sample", str(run), "-o", str(out / "s.png")],
        ["interpolate", str(run), str(image), str(image), "-o", str(out / "i.png")],
    ]
    with unchanged(data):
        for argv in commands:
            err = one_line(capsys, argv)
            assert "unknown arch 'pwn_model'" in err and "never imports code because a file names it" in err, err
            assert "--plugin os" in err  # what the user would pass, if they trusted it
        with pytest.raises(AekitError, match="never imports code"):
            aekit.load(run)
        with pytest.raises(AekitError, match="never imports code"):
            aekit.encode(run, data)
    assert not flag.exists() and not out.exists()

    # a factory in an importable module that runs code on import: not imported either
    meta = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**meta, "factory": "evilmod:X"}))
    assert "--plugin evilmod" in one_line(capsys, ["encode", str(run), str(data), "-o", str(out / "z.csv")])
    assert "evilmod" not in sys.modules and not flag.exists()

    # a factory path that is not a module path is not echoed
    (run / "model.json").write_text(json.dumps({**meta, "factory": "x; rm -rf / #:y"}))
    err = one_line(capsys, ["encode", str(run), str(data), "-o", str(out / "z.csv")])
    assert "rm -rf" not in err and "--plugin MODULE" in err


def test_resume_never_imports_the_plugins_a_config_yaml_lists(rgb_run, tmp_path):
    """The issue's case: `python -m aekit train --resume .` from inside a run folder whose
    config.yaml lists a module that the folder holds (the current folder is on sys.path)."""
    folder, src = rgb_run
    run = tmp_path / "run"
    shutil.copytree(src, run, symlinks=True)
    flag = tmp_path / "PWNED"
    plant(run, flag)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "data": str(folder), "plugins": ["evilmod"]}))
    env = {**os.environ, "PYTHONPATH": str(Path(aekit.__file__).resolve().parents[1])}
    with unchanged(folder):
        done = subprocess.run([sys.executable, "-m", "aekit", "train", "--resume", ".", "--epochs", "2", "--quiet"],
                              cwd=run, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not flag.exists()
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2


def test_a_config_file_naming_plugins_imports_nothing(tmp_path, monkeypatch, capsys):
    """--config and sweep config files are data too: their `plugins` are never imported; a model
    they would register is a one-line error saying which --plugin to pass."""
    flag = tmp_path / "PWNED"
    monkeypatch.syspath_prepend(str(tmp_path))
    plant(tmp_path, flag)
    write_pngs(tmp_path / "imgs", smooth_images(12, 16, 16, 1))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"plugins": ["evilmod"]}))
    assert main(["train", str(tmp_path / "imgs"), "--config", str(config), *FAST, "--out", str(tmp_path / "r")]) == 0
    assert not flag.exists() and "evilmod" not in sys.modules
    config.write_text(yaml.safe_dump({"plugins": ["evilmod"], "arch": "evil_ae"}))
    err = one_line(capsys, ["train", str(tmp_path / "imgs"), "--config", str(config), *FAST])
    assert "unknown arch 'evil_ae'" in err and "--plugin evilmod" in err, err
    sweep = ["sweep", str(tmp_path / "imgs"), "--latent-dim", "2", "--config", str(config), "-o", str(tmp_path / "s")]
    assert "unknown arch 'evil_ae'" in one_line(capsys, [*sweep, "--epochs", "1", "--quiet"])
    assert not flag.exists() and "evilmod" not in sys.modules


def test_a_run_folder_inside_the_data_is_never_read_as_data(tmp_path):
    """`aekit train DATA --out DATA/runs/r`, then `aekit train DATA`: the second run trains on the
    user's images only, and lists the run folder as skipped."""
    data = tmp_path / "data"
    images = write_pngs(data, smooth_images(12, 16, 16, 3))
    with unchanged(*images):
        first = aekit.train(data, out=data / "runs" / "r", epochs=1, latent_dim=4, width=8, verbose=False)
        assert list((data / "runs" / "r").glob("*.png"))  # recon.png, loss.png: pictures a lister could take
        second = aekit.train(data, out=tmp_path / "r2", epochs=1, latent_dim=4, width=8, verbose=False)
    assert second.summary["n_images"] == first.summary["n_images"] == 12  # the user's 12 images, nothing of the run
    skipped = {s["path"]: s["reason"] for s in second.summary["skipped"]}
    assert "runs/r/" in skipped and "never read as data" in skipped["runs/r/"], skipped


def test_a_table_too_small_to_train_and_validate_is_one_line_naming_the_minimum(tmp_path, capsys):
    (tmp_path / "one.csv").write_text("a,b,c\n1,2,3\n")
    err = one_line(capsys, ["train", str(tmp_path / "one.csv"), "--quiet"])
    assert "has 1 row(s); a table needs at least 9 rows to train" in err, err
    err = one_line(capsys, ["train", str(tmp_path / "one.csv"), "--val-fraction", "0", "--quiet"])
    assert "needs at least 8 rows" in err and "--val-fraction" not in err, err
    rows = np.random.default_rng(0).normal(size=(9, 3)).astype(np.float32)
    run = aekit.train(rows, out=tmp_path / "r", max_steps=5, verbose=False)  # the minimum trains
    assert run.summary["n_val"] == 1 and run.summary["threshold"]["value"] > 0
