"""One end-to-end test per command, plus the bad-input table: one line, exit code 2, no traceback."""

import csv
import json

import numpy as np
import pytest

from aekit.cli.main import main
from aekit.inference.encode import training_precision
from tests.conftest import FAST, unchanged


def test_train_messy_folder_reports_skipped(messy_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(messy_folder),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--latent-dim",
                "4",
                "--width",
                "8",
                "--image-size",
                "16",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "skipped 4 file(s)" in err and "truncated.jpg" in err and "notes.txt" in err
    # stderr is not a terminal here: each epoch is one line (over 80 columns), never wrapped
    epoch = [line for line in err.splitlines() if line.startswith("epoch   1  loss")]
    assert len(epoch) == 1 and len(epoch[0]) > 80 and epoch[0].rstrip().endswith("img/s"), err
    assert "3000 steps" not in err and "e+0" not in err  # counts are integers
    s = json.loads((out / "summary.json").read_text())
    assert {d["path"] for d in s["skipped"]} == {"empty.png", "truncated.jpg", "fake.png", "notes.txt"}
    assert s["n_images"] == 12 and s["image_size"] == [16, 16]


def test_train_with_config_file_and_flag_override(gray28, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 2\nlatent_dim: 6\narch: basic\n")
    out = tmp_path / "run"
    assert main(["train", str(gray28), "--config", str(cfg), "--latent-dim", "5", "--out", str(out), "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["epochs_run"] == 2 and s["latent_dim"] == 5 and s["arch"] == "basic"


@pytest.mark.parametrize("ext", [".npy", ".csv", ".parquet"])
def test_encode_writes_one_row_per_file(rgb_run, tmp_path, ext):
    rgb_folder, run = rgb_run
    target = tmp_path / f"emb{ext}"
    assert main(["encode", str(run), str(rgb_folder), "-o", str(target), "--quiet"]) == 0
    if ext == ".npy":
        z = np.load(target)
        paths = (tmp_path / "emb.paths.txt").read_text().split()
    elif ext == ".csv":
        rows = list(csv.reader(open(target)))
        assert rows[0] == ["path", "z0", "z1", "z2", "z3"]
        paths, z = [r[0] for r in rows[1:]], np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    else:
        import pyarrow.parquet as pq

        t = pq.read_table(target)
        paths, z = t.column("path").to_pylist(), np.stack([t.column(f"z{i}").to_numpy() for i in range(4)], 1)
    assert z.shape == (20, 4) and paths[0] == "a/img000.png" and paths[-1] == "b/img009.png"
    import aekit
    from aekit.data import read_images

    imgs = read_images(rgb_folder, show_progress=False).array
    # by default codes are computed in the training's precision (config.yaml: measured on CPUs with bf16)
    model = aekit.load(run, precision=training_precision(run))
    np.testing.assert_allclose(z, model.encode(imgs, layout="NCHW"), rtol=1e-4, atol=1e-5)


def test_encode_precision_auto_is_close_to_fp32_and_fp32_is_exact(rgb_run, tmp_path):
    import aekit
    from aekit.data import read_images

    rgb_folder, run = rgb_run
    for precision in ("auto", "fp32"):
        out = tmp_path / f"{precision}.npy"
        assert main(["encode", str(run), str(rgb_folder), "-o", str(out), "--precision", precision, "--quiet"]) == 0
    exact = aekit.load(run).encode(read_images(rgb_folder, show_progress=False).array, layout="NCHW")
    np.testing.assert_array_equal(np.load(tmp_path / "fp32.npy"), exact)
    auto = np.load(tmp_path / "auto.npy")
    assert np.linalg.norm(auto - exact) <= 0.02 * np.linalg.norm(exact)


def test_models_lists_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "conv" in out and "basic" in out


def test_demo_trains_on_embedded_sample(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1", "--width", "8"]) == 0
    captured = capsys.readouterr()
    assert str(out) in captured.out and "demo done" in captured.err
    s = json.loads((out / "summary.json").read_text())
    assert s["n_images"] == 2000 and s["channels"] == 1 and s["image_size"] == [28, 28]
    assert (out / "recon.png").is_file() and "x PCA's" in captured.err


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "aekit" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--latent-dim" in capsys.readouterr().out


def bad_inputs(tmp_path, rgb_folder, run):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"")
    (broken / "b.jpg").write_text("nope")
    afile = tmp_path / "afile"
    afile.write_text("x")
    badcfg = tmp_path / "bad.yaml"
    badcfg.write_text("epochz: 3\n")
    g = str(rgb_folder)
    run = str(run)
    folder_csv = tmp_path / "d.csv"
    folder_csv.mkdir()
    return {
        "missing path": (["train", str(tmp_path / "nope")], "not found"),
        "empty folder": (["train", str(empty)], "no image files"),
        "only broken files": (["train", str(broken)], "no readable image"),
        "negative lr": (["train", g, "--lr", "-1"], "lr"),
        "latent 0": (["train", g, "--latent-dim", "0"], "latent_dim"),
        "unknown arch": (["train", g, "--arch", "nope"], "unknown arch 'nope'; registered: auto, basic, conv, mlp"),
        "channels 2": (["train", g, "--channels", "2"], "channels"),
        "image size 0": (["train", g, "--image-size", "0"], "image_size"),
        "unknown flag": (["train", g, "--bogus"], "unrecognized"),
        "mistyped flag": (
            ["train", g, "--latent-dims", "16"],
            "unrecognized arguments: --latent-dims 16; did you mean --latent-dim?",
        ),  # fmt: skip
        "mistyped command": (["trian", g], "invalid choice: 'trian'"),
        "mistyped command, suggested": (["trian", g], "); did you mean train?"),
        "mistyped choice": (["train", g, "--model", "vea"], "did you mean vae?"),
        "config unknown key": (["train", g, "--config", str(badcfg)], "unknown option"),
        "config missing": (["train", g, "--config", str(tmp_path / "no.yaml")], "config file not found"),
        "out is a file": (["train", g, "--out", str(afile)], "not a folder"),
        "encode bad run": (["encode", g, g, "-o", str(tmp_path / "z.csv")], "model.json"),
        "encode bad ext": (["encode", g, g, "-o", str(tmp_path / "z.txt")], ".npy"),
        "encode into a file's child": (["encode", run, g, "-o", str(afile / "z.csv")], "is a file"),
        "encode onto a folder": (["encode", run, g, "-o", str(folder_csv)], "is a folder"),
        "encode batch 0": (["encode", run, g, "-o", str(tmp_path / "z.csv"), "--batch-size", "0"], "batch size"),
        "encode unknown device": (["encode", run, g, "-o", str(tmp_path / "z.csv"), "--device", "tpu"], "device"),
        "huge image size": (["train", g, "--image-size", "100000"], "limit"),
        "depth too deep": (["train", g, "--depth", "10"], "too deep"),
        "out holds a run": (["train", g, "--out", run], "already holds"),
        "unknown precision": (["train", g, "--precision", "fp8"], "invalid choice"),
        "unwritable out": (["train", g, "--out", "/sys/aekit-test-run"], "cannot write"),
        "score bad ext": (["score", run, g, "-o", str(tmp_path / "s.txt")], ".csv or .parquet"),
        "reconstruct onto a file": (["reconstruct", run, g, "-o", str(afile)], "is a file"),
        "export bad ext": (["export", g, "-o", str(tmp_path / "m.txt")], ".onnx"),
    }


CASES = [
    "missing path",
    "empty folder",
    "only broken files",
    "negative lr",
    "latent 0",
    "unknown arch",
    "channels 2",
    "image size 0",
    "unknown flag",
    "mistyped flag",
    "mistyped command",
    "mistyped command, suggested",
    "mistyped choice",
    "config unknown key",
    "config missing",
    "out is a file",
    "encode bad run",
    "encode bad ext",
    "encode into a file's child",
    "encode onto a folder",
    "encode batch 0",
    "encode unknown device",
    "huge image size",
    "depth too deep",
    "out holds a run",
    "unknown precision",
    "score bad ext",
    "reconstruct onto a file",
    "export bad ext",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2(case, tmp_path, rgb_run, capsys):
    rgb_folder, run = rgb_run
    argv, needle = bad_inputs(tmp_path, rgb_folder, run)[case]
    with unchanged(rgb_folder, run):  # the data and the session's run are never written
        try:
            code = main(argv)
        except SystemExit as e:  # argparse errors
            code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and needle in err and "error" in err


def test_second_run_reuses_the_cache_and_no_cache_writes_none(rgb_folder, tmp_path, capsys):
    cache = tmp_path / "cache"
    args = ["train", str(rgb_folder), *FAST[:-1], "--cache-dir", str(cache)]
    assert main([*args, "--out", str(tmp_path / "r1")]) == 0
    assert "cached in" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "r2")]) == 0
    assert "reused from the cache" in capsys.readouterr().err
    assert (
        main(
            [
                "encode",
                str(tmp_path / "r1"),
                str(rgb_folder),
                "-o",
                str(tmp_path / "z.csv"),
                "--cache-dir",
                str(cache),
                "--quiet",
            ]
        )
        == 0
    )
    entries = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(entries) == 1  # encode, with the model's explicit options, reused the training entry
    other = tmp_path / "nocache"
    assert (
        main(["train", str(rgb_folder), *FAST, "--no-cache", "--cache-dir", str(other), "--out", str(tmp_path / "r3")])
        == 0
    )
    assert not other.exists()


def test_evaluate_compares_with_pca_on_any_data(rgb_run, tmp_path, capsys):
    rgb_folder, run = rgb_run
    summary = json.loads((run / "summary.json").read_text())
    for key in ("val_mse", "val_psnr", "val_ssim", "pca_val_mse", "pca_val_psnr", "pca_val_ssim", "vs_pca"):
        assert key in summary
    assert len(summary["metrics"]["autoencoder"]["per_channel"]["ssim"]) == 3
    out = tmp_path / "m.json"
    assert main(["evaluate", str(run), str(rgb_folder / "a"), "-o", str(out)]) == 0
    printed = capsys.readouterr().err
    assert "PCA, 4 components" in printed and "channel 2" in printed
    res = json.loads(out.read_text())
    assert res["n_items"] == 10 and res["vs_pca"] in ("better", "equal", "worse")
    assert 0 < res["autoencoder"]["mse"] < 1 and -1 <= res["pca"]["ssim"] <= 1
    # the same numbers from the model itself, computed independently
    import aekit
    from aekit.data import read_images

    imgs = read_images(rgb_folder / "a", show_progress=False).array
    recon = aekit.load(run).reconstruct(imgs.astype(np.float32), layout="NCHW")
    mse = float(np.mean((np.clip(recon / 255, 0, 1) - imgs / 255) ** 2))
    assert res["autoencoder"]["mse"] == pytest.approx(mse, rel=1e-4)


def test_python_dash_m_and_console_script_entry_points():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "aekit", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("aekit ")
    bad = subprocess.run([sys.executable, "-m", "aekit", "train", "/no/such/folder"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not found" in bad.stderr


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, aekit.cli.main; aekit.cli.main.build_parser(); sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0  # `aekit --help` starts fast
