"""aekit sweep end to end on tiny data: results.csv, the plot and page, the best link, failed
trials, resuming an interrupted sweep, Optuna search, and one-line errors."""

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import aekit
import aekit.data.cache
import aekit.training.workflow
from aekit.cli.main import main
from tests.conftest import smooth_images

FAST = ["--epochs", "1", "--batch-size", "8", "--width", "8", "--image-size", "16"]


def read_rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def count_calls(monkeypatch, module, name: str) -> list:
    """Replace module.name by a wrapper that records its calls' `out` (or None) and calls through."""
    real, calls = getattr(module, name), []

    def wrapper(*args, **kw):
        calls.append(Path(kw["out"]).name if kw.get("out") else None)
        return real(*args, **kw)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_sweep_end_to_end(gray28, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    decodes = count_calls(monkeypatch, aekit.data.cache, "read_images")
    args = ["sweep", str(gray28), "--latent-dim", "2,4", "--depth", "2,6", *FAST, "-o", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "trials by validation MSE" in captured.err
    assert len(decodes) == 1  # decoded once; every trial read the cache

    rows = read_rows(out)
    assert len(rows) == 4
    for col in ("trial", "status", "model", "latent_dim", "depth", "lr", "val_mse", "val_psnr", "pca_val_mse"):
        assert col in rows[0]
    assert {"parameters", "seconds", "error"} <= rows[0].keys()
    done = [r for r in rows if r["status"] == "done"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert sorted(int(r["latent_dim"]) for r in done) == [2, 4] and {r["depth"] for r in done} == {"2"}
    assert len(failed) == 2 and all("too deep" in r["error"] for r in failed)  # recorded, the sweep went on
    mses = [float(r["val_mse"]) for r in done]
    assert mses == sorted(mses) and rows[:2] == done  # best first, failed last
    for r in done:  # each trial is a normal run, and the row holds its summary's numbers
        run = out / "trials" / r["trial"]
        assert aekit.load(run).latent_dim == int(r["latent_dim"])
        s = json.loads((run / "summary.json").read_text())
        assert float(r["val_mse"]) == pytest.approx(s["val_mse"])
        assert float(r["pca_val_mse"]) == pytest.approx(s["pca_val_mse"])
        assert int(r["parameters"]) == s["parameters"]
    assert not (out / "trials" / failed[0]["trial"]).exists()
    # PCA at latent 4 explains more than at latent 2
    pca = {int(r["latent_dim"]): float(r["pca_val_mse"]) for r in done}
    assert pca[4] < pca[2]

    best = out / "best"
    assert best.is_symlink() and best.resolve() == (out / "trials" / rows[0]["trial"]).resolve()
    with Image.open(out / "sweep.png") as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
    html = (out / "sweep.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html
    assert html.index(rows[0]["trial"]) < html.index(rows[1]["trial"])  # sorted by quality
    assert "too deep" in html


def test_interrupted_sweep_resumes_and_grows(gray28, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    real = aekit.training.workflow.train
    calls: list[str] = []

    def interrupted_second(data, *, out, **kw):
        calls.append(Path(out).name)
        if len(calls) == 2:  # Ctrl-C while the second trial has written part of its folder
            Path(out).mkdir(parents=True)
            (Path(out) / "metrics.csv").write_text("epoch\n")
            raise KeyboardInterrupt
        return real(data, out=out, **kw)

    monkeypatch.setattr(aekit.training.workflow, "train", interrupted_second)
    args = ["sweep", str(gray28), *FAST, "-o", str(out), "--quiet"]
    assert main([*args, "--latent-dim", "2,4"]) == 130
    rows = read_rows(out)
    assert [r["trial"] for r in rows] == ["ae-latent2-depthauto-lr0.001"]
    model = out / "trials" / rows[0]["trial"] / "model.safetensors"
    stamp = model.stat().st_mtime_ns

    monkeypatch.setattr(aekit.training.workflow, "train", real)
    calls = count_calls(monkeypatch, aekit.training.workflow, "train")
    assert main([*args, "--latent-dim", "2,4,8"]) == 0  # the same sweep, with one more size
    assert calls == ["ae-latent4-depthauto-lr0.001", "ae-latent8-depthauto-lr0.001"]  # the finished one is kept
    assert model.stat().st_mtime_ns == stamp
    rows = read_rows(out)
    assert sorted(int(r["latent_dim"]) for r in rows) == [2, 4, 8] and {r["status"] for r in rows} == {"done"}
    assert (out / "trials" / "ae-latent4-depthauto-lr0.001" / "summary.json").is_file()

    calls.clear()
    assert main([*args, "--latent-dim", "2,4,8"]) == 0
    assert calls == []  # all done: nothing to train
    capsys.readouterr()
    assert main([*args, "--epochs", "2", "--latent-dim", "2"]) == 2  # other fixed options: another sweep
    err = capsys.readouterr().err.strip()
    assert err.startswith("aekit sweep: error:") and "epochs" in err and "\n" not in err


def test_python_api_and_tpe_search(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    x = smooth_images(24, 16, 16, 1)[..., 0]  # (N, H, W) uint8
    out = tmp_path / "tpe"
    opts = {"epochs": 1, "batch_size": 8, "width": 8, "verbose": False, "out": out}
    calls = count_calls(monkeypatch, aekit.training.workflow, "train")
    res = aekit.sweep(x, latent_dim=[2, 4, 8], depth="1,2", search="tpe", trials=2, **opts)
    assert len(calls) == 2 and len(set(calls)) == 2
    assert len(res) == 2 and res.columns[0] == "trial"
    assert res["val_mse"] == sorted(res["val_mse"])
    assert res.best == res[0] and res.best["val_mse"] == min(res["val_mse"])
    res = aekit.sweep(x, latent_dim=[2, 4, 8], depth="1,2", search="tpe", trials=3, **opts)  # one more
    assert len(calls) == 3 and len(set(calls)) == 3 and len(res) == 3


def test_on_epoch_stops_training_early(gray28, tmp_path):
    seen = []
    run = aekit.train(
        gray28,
        out=tmp_path / "r",
        epochs=3,
        batch_size=8,
        width=8,
        verbose=False,
        on_epoch=lambda e, row: seen.append(row) or True,
    )
    assert len(seen) == 1 and "val_mse" in seen[0]
    assert run.summary["epochs_run"] == 1 and "on_epoch" in run.summary["stopped"]


@pytest.mark.parametrize(
    "case",
    ["not-an-int", "bad-lr", "bad-model", "missing-data", "no-optuna", "not-a-sweep-dir", "no-latent"],
)
def test_bad_input_is_one_line_exit_2(case, gray28, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", str(gray28), "--latent-dim", "2,4", *FAST, "-o", str(out)]
    if case == "not-an-int":
        args[3] = "8,abc"
    elif case == "bad-lr":
        args += ["--lr", "1e-3,-1"]
    elif case == "bad-model":
        args += ["--model", "ae,gan"]
    elif case == "missing-data":
        args[1] = str(tmp_path / "nowhere")
    elif case == "no-optuna":
        monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
        args += ["--search", "tpe"]
    elif case == "not-a-sweep-dir":
        out.mkdir()
        (out / "mine.txt").write_text("keep me")
    elif case == "no-latent":
        args[2:4] = []
    try:
        code = main(args)
    except SystemExit as e:  # argparse errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aekit sweep: error:") and "\n" not in err and "Traceback" not in err
    if case == "no-optuna":
        assert "pip install 'aekit[sweep]'" in err
    if case == "not-a-sweep-dir":
        assert os.listdir(out) == ["mine.txt"]
    else:
        assert not out.exists()


def test_every_trial_failing_is_an_error(tmp_path, capsys):
    x = np.asarray(smooth_images(12, 8, 8, 1))
    np.save(tmp_path / "x.npy", x)
    args = ["sweep", str(tmp_path / "x.npy"), "--latent-dim", "2", "--depth", "9", *FAST, "-o", str(tmp_path / "s")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("aekit sweep: error: every trial failed") and "too deep" in err
    assert read_rows(tmp_path / "s")[0]["status"] == "failed"


def test_search_takes_latent_sizes_in_turn_and_prunes_within_a_size(tmp_path):
    pytest.importorskip("optuna")
    from aekit.sweeps.search import OptunaSearch

    space = {"model": ["ae"], "latent_dim": [4, 8], "depth": [None], "lr": [1e-3, 3e-3, 1e-2]}
    search = OptunaSearch("tpe", space, 6, 0, {}, tmp_path)
    done: dict = {}

    def run(curve: list[float]) -> tuple[int, list[bool]]:
        trial = search.ask(done)
        prune = search.on_epoch(trial)
        stops = [prune(epoch, {"val_mse": v}) for epoch, v in enumerate(curve, 1)]
        row = {"trial": trial.name, "status": "done", "val_mse": curve[-1], "ratio_to_pca": 1.0}
        search.tell(trial, row)
        done[trial.name] = row
        return trial.latent_dim, stops

    assert run([0.5, 0.4, 0.3]) == (4, [False] * 3)
    assert run([0.9, 0.9, 0.9]) == (8, [False] * 3)  # worse, but the first of its size
    assert run([0.5, 0.2, 0.1]) == (4, [False] * 3)
    assert run([0.9, 0.9]) == (8, [False] * 2)  # one earlier trial of its size is not enough
    assert run([0.1, 0.35]) == (4, [False, True])  # above the median (0.3) of size 4 at epoch 2
    assert run([0.9, 0.1]) == (8, [False, False])
    assert search.ask(done) is None  # every combination has run


def test_page_says_where_latent_size_stops_helping_and_where_pca_loses():
    from aekit.sweeps.overview import plateau, versus_pca

    def row(z: int, mse: float, pca: float) -> dict:
        name = f"ae-latent{z}-depth2-lr0.001"
        return dict(trial=name, status="done", model="ae", latent_dim=z, depth=2, lr=1e-3, val_mse=mse, pca_val_mse=pca)

    rows = [row(4, 0.10, 0.12), row(8, 0.05, 0.06), row(16, 0.047, 0.046), row(32, 0.046, 0.04)]
    assert "stops helping at 8" in plateau(rows)  # 16 and 32 gain less than 10% over 8
    assert "still helped" in plateau(rows[:2])
    text = versus_pca(rows)
    assert "latent 4, 8;" in text and "most at latent 4" in text  # 0.83x at 4; PCA wins at 16 and 32
