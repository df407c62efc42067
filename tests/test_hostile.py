"""Hostile inputs and faults found by trying aekit as a new user and as an attacker would: each
gives a clear result (skipped and listed, or one line and exit code 2), and the input is unchanged."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

import aekit.core.plots
from aekit.cli.main import main
from aekit.data.cache import read_images_cached
from aekit.evaluation.metrics import psnr
from tests.conftest import FAST, smooth_images, write_pngs


def digest(root: Path) -> dict:
    """Every entry under `root` (links and FIFOs by what they are, files by content)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath, name)
            if p.is_symlink():
                out[str(p)] = "link:" + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[str(p)] = "other"
    return out


def one_line_error(capsys, argv: list[str], needle: str) -> None:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_a_fifo_named_like_an_image_is_skipped_not_opened(gray28, tmp_path):
    os.mkfifo(gray28 / "pipe.png")  # opening it would wait for a writer forever
    before = digest(gray28)
    run = tmp_path / "run"
    assert main(["train", str(gray28), *FAST, "--out", str(run)]) == 0
    skipped = {d["path"]: d["reason"] for d in summary(run)["skipped"]}
    assert "FIFO" in skipped["pipe.png"] and summary(run)["n_images"] == 24
    assert digest(gray28) == before


def test_a_dangling_symlink_is_skipped_with_its_reason(gray28, tmp_path):
    (gray28 / "x.png").symlink_to(tmp_path / "gone.png")
    before = digest(gray28)
    run = tmp_path / "run"
    assert main(["train", str(gray28), *FAST, "--out", str(run)]) == 0  # with the cache: it lists and stats
    skipped = {d["path"]: d["reason"] for d in summary(run)["skipped"]}
    assert skipped["x.png"].startswith("broken symbolic link")
    assert digest(gray28) == before


def test_a_file_name_that_is_not_utf8_is_read_and_cached(tmp_path):
    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(6, 12, 12, 1))
    os.rename(folder / "img000.png", os.path.join(os.fsencode(folder), b"bad\xff\xfe.png"))
    first = read_images_cached(folder, cache_dir=tmp_path / "cache", show_progress=False)
    again = read_images_cached(folder, cache_dir=tmp_path / "cache", show_progress=False)
    assert len(first) == len(again) == 6 and any("reused from the cache" in n for n in again.notes)
    assert os.fsencode(first.ids[0]) == b"bad\xff\xfe.png"


def test_symlinked_class_folders_are_followed_and_loops_are_not(tmp_path):
    real = tmp_path / "real"
    write_pngs(real / "0", smooth_images(5, 12, 12, 1))
    write_pngs(real / "1", smooth_images(4, 12, 12, 1, seed=1))
    data = tmp_path / "data"
    data.mkdir()
    (data / "0").symlink_to(real / "0")
    (data / "1").symlink_to(real / "1")
    (real / "0" / "loop").symlink_to(data)  # a link back up: listed once, never followed round
    before = digest(real)
    items = read_images_cached(data, cache_dir=None, show_progress=False)
    assert sorted(items.ids) == [f"0/img{i:03d}.png" for i in range(5)] + [f"1/img{i:03d}.png" for i in range(4)]
    assert digest(real) == before


def test_float_values_too_large_for_float32_arithmetic_are_one_line(tmp_path, capsys):
    x = np.full((10, 8, 8), 1e30, np.float32)
    x[::2] *= -1
    np.save(tmp_path / "big.npy", x)
    before = digest(tmp_path)
    one_line_error(capsys, ["train", str(tmp_path / "big.npy"), *FAST], "too large for float32")
    assert digest(tmp_path) == before


def test_a_csv_value_that_overflows_float32_is_one_line(tmp_path, capsys):
    rows = ["a,b,c"] + [f"{i},{i * 2},{i % 3}" for i in range(30)] + ["1e308,1,2"]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    one_line_error(capsys, ["train", str(tmp_path / "t.csv"), "--epochs", "1", "--quiet"], "too large for float32")


def test_psnr_of_an_infinite_or_zero_error_has_no_value():
    assert psnr(float("inf")) is None and psnr(0.0) is None and psnr(0.01) == pytest.approx(20.0)


def test_a_tampered_model_json_or_pca_file_is_one_line(rgb_run, tmp_path, capsys):
    import shutil

    folder, trained = rgb_run
    run = tmp_path / "run"
    shutil.copytree(trained, run, symlinks=True)
    meta = json.loads((run / "model.json").read_text())
    meta["model_kwargs"]["latent_dim"] += 3
    (run / "model.json").write_text(json.dumps(meta))
    one_line_error(capsys, ["encode", str(run), str(folder), "-o", str(tmp_path / "z.csv")], "do not fit")

    shutil.rmtree(run)
    shutil.copytree(trained, run, symlinks=True)
    (run / "pca.safetensors").write_bytes(b"\x00" * 40)
    one_line_error(capsys, ["evaluate", str(run), str(folder)], "pca.safetensors")
    import torch

    save_file({"mean": torch.zeros(5), "components": torch.zeros(7, 2)}, str(run / "pca.safetensors"))
    one_line_error(capsys, ["evaluate", str(run), str(folder)], "does not hold a PCA")


def test_a_wide_table_plots_in_one_call_with_bounded_points(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    calls = []
    real = Axes.scatter

    def counting(self, x, y, *a, **k):
        calls.append(len(x))
        return real(self, x, y, *a, **k)

    monkeypatch.setattr(Axes, "scatter", counting)
    rng = np.random.default_rng(0)
    original = rng.normal(size=(60, 10000)).astype(np.float32)
    aekit.core.plots.table_recon_plot(original, original * 0.9, tmp_path / "t.png")
    assert calls == [aekit.core.plots.TABLE_POINTS] and (tmp_path / "t.png").stat().st_size > 0


def test_the_cache_works_where_the_os_has_no_posix_fallocate(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(8, 12, 12, 3))
    first = read_images_cached(folder, cache_dir=tmp_path / "cache", show_progress=False)
    again = read_images_cached(folder, cache_dir=tmp_path / "cache", show_progress=False)
    np.testing.assert_array_equal(first.array, again.array)
    assert any("reused from the cache" in n for n in again.notes)


def test_two_runs_on_one_out_folder_the_second_is_refused(gray28, tmp_path, capsys):
    import subprocess
    import sys

    out = tmp_path / "run"
    hold = "import sys, time; from aekit.core.rundir import make_run_dir; make_run_dir(sys.argv[1]); "
    hold += "print('held', flush=True); time.sleep(120)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        one_line_error(capsys, ["train", str(gray28), *FAST, "--out", str(out)], "another aekit run is writing")
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", str(gray28), *FAST, "--out", str(out)]) == 0  # the lock went with the process
    assert not (out / ".aekit.lock").exists()
