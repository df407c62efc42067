"""aekit.train / aekit.load end to end on tiny data."""

import csv
import json
import warnings

import numpy as np
import pytest
import torch
import yaml

import aekit
import aekit.core.errors
from tests.conftest import smooth_images

FAST = {"epochs": 2, "batch_size": 8, "latent_dim": 8, "width": 8, "verbose": False}


def test_gray28_round_trips_at_28x28(gray28, tmp_path):
    run = aekit.train(gray28, out=tmp_path / "run", **FAST)
    model = aekit.load(run.path)
    assert model.input_shape == (1, 28, 28)
    x = smooth_images(5, 28, 28, 1)[..., 0]  # (N, H, W) uint8
    r = model.reconstruct(x)
    assert r.shape == (5, 28, 28) and r.dtype == np.uint8
    assert model.encode(x).shape == (5, 8)
    assert model.decode(model.encode(x)).shape == (5, 1, 28, 28)
    # layouts and containers: NHWC numpy, NCHW tensor, float in pixel units, another size
    assert model.reconstruct(x[..., None]).shape == (5, 28, 28, 1)
    t = torch.from_numpy(x[:, None].copy())
    rt = model.reconstruct(t)
    assert isinstance(rt, torch.Tensor) and rt.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(rt.numpy()[:, 0], r)
    rf = model.reconstruct(x.astype(np.float32))
    assert rf.dtype == np.float32 and np.abs(rf - r).max() <= 1.0
    assert model.reconstruct(smooth_images(2, 40, 50, 1)[..., 0]).shape == (2, 28, 28)
    assert model.encode(smooth_images(2, 28, 28, 3)).shape == (2, 8)  # RGB in, gray model


def test_run_folder_contents(rgb_folder, tmp_path):
    run = aekit.train(rgb_folder, out=tmp_path / "run", **FAST)
    files = {p.name for p in run.path.iterdir()}
    assert {
        "config.yaml",
        "model.safetensors",
        "model.json",
        "metrics.csv",
        "recon.png",
        "loss.png",
        "summary.json",
    } <= files
    s = json.loads((run.path / "summary.json").read_text())
    assert s["n_train"] == 18 and s["n_val"] == 2 and s["skipped"] == []
    assert 0 < s["val_mse"] < 1 and s["val_psnr"] == pytest.approx(10 * np.log10(1 / s["val_mse"]))
    assert s["vs_pca"] in ("better", "equal", "worse") and s["pca_val_mse"] > 0
    with open(run.path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert {"epoch", "train_loss", "val_loss", "lr", "seconds", "images_per_s"} <= set(rows[0])
    assert all(float(r["images_per_s"]) > 0 for r in rows)
    cfg = yaml.safe_load((run.path / "config.yaml").read_text())
    assert cfg["channels"] == 3 and cfg["image_size"] == [20, 24] and cfg["epochs"] == 2
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["input"] == {"channels": 3, "height": 20, "width": 24, "dtype": "uint8", "layout": "NCHW"}
    assert meta["normalization"]["scale"] == 255.0 and len(meta["normalization"]["mean"]) == 3


def test_training_reduces_loss_and_is_seeded(tmp_path):
    x = smooth_images(64, 16, 16, 1, seed=5)
    opts = {**FAST, "epochs": 4, "arch": "basic", "lr": 3e-3, "precision": "fp32"}  # auto is measured: may differ
    a = aekit.train(x, out=tmp_path / "a", **opts)
    b = aekit.train(x, out=tmp_path / "b", **opts)
    rows = list(csv.DictReader(open(a.path / "metrics.csv")))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert a.summary["val_mse"] == b.summary["val_mse"]


def test_dataset_input_and_max_time(tmp_path):
    class Ds(torch.utils.data.Dataset):
        def __init__(self):
            self.x = torch.rand(12, 2, 10, 10)

        def __len__(self):
            return 12

        def __getitem__(self, i):
            return self.x[i], 0

    run = aekit.train(Ds(), out=tmp_path / "run", **{**FAST, "epochs": 1000, "max_time": 1.0})
    assert run.summary["stopped"].startswith("time budget")
    assert run.summary["epochs_run"] < 1000 and run.summary["channels"] == 2
    model = aekit.load(run.path)
    assert model.reconstruct(torch.rand(3, 2, 10, 10)).shape == (3, 2, 10, 10)


def test_single_image_still_trains_and_summary_is_strict_json(tmp_path):
    run = aekit.train(smooth_images(1, 8, 8, 3), out=tmp_path / "run", **FAST)
    assert run.summary["n_val"] == 0 and "too few items" in run.summary["val_on"]
    json.loads((run.path / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))


def test_float_inputs_in_unit_range_warn_at_the_callers_line(gray28, tmp_path):
    model = aekit.load(aekit.train(gray28, out=tmp_path / "run", **{**FAST, "epochs": 1}).path)
    x = smooth_images(2, 28, 28, 1)[..., 0]
    with pytest.warns(UserWarning, match="multiply by 255") as record:
        model.encode(x / 255.0)
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.encode(np.zeros((1, 28, 28), np.float32))  # all zero: nothing to warn about
    with pytest.raises(aekit.core.errors.AekitError, match="no images"):
        model.encode(np.zeros((0, 28, 28), np.uint8))


def test_default_out_creates_latest_link(rgb_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = aekit.train(rgb_folder, **{**FAST, "epochs": 1})
    latest = tmp_path / "runs" / "latest"
    assert latest.is_symlink() and latest.resolve() == run.path.resolve()
    assert aekit.load(latest).input_shape == (3, 20, 24)


@pytest.mark.parametrize("shape", [(40, 12, 12, 1), (30, 10, 14, 3)])
def test_default_model_never_ends_worse_than_pca(tmp_path, shape):
    """The conv model starts at PCA and keeps its start unless training improves on it."""
    n, h, w, c = shape
    x = smooth_images(n, h, w, c, seed=9)
    run = aekit.train(x, out=tmp_path / "run", **{**FAST, "epochs": 3, "lr": 0.05})  # a harsh LR on purpose
    s = run.summary
    assert s["vs_pca"] in ("better", "equal")
    assert s["val_mse"] <= s["pca_val_mse"] * 1.005
    recon = aekit.load(run.path).reconstruct(x)
    assert recon.std() > 0  # no collapse to a constant output


def test_width_scales_with_many_channels(tmp_path):
    x = np.random.default_rng(0).random((12, 13, 8, 8)).astype(np.float32)  # 13 bands, N,C,H,W
    opts = {k: v for k, v in FAST.items() if k != "width"}
    run = aekit.train(torch.from_numpy(x), out=tmp_path / "run", **opts)
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["model_kwargs"]["width"] == 26 and meta["input"]["channels"] == 13
    assert yaml.safe_load((run.path / "config.yaml").read_text())["width"] == 26


def test_failed_start_leaves_no_run_folder_and_keeps_latest(rgb_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = aekit.train(rgb_folder, **{**FAST, "epochs": 1})
    with pytest.raises(aekit.core.errors.AekitError, match="too deep"):
        aekit.train(rgb_folder, **{**FAST, "depth": 12})
    assert [p.name for p in (tmp_path / "runs").iterdir() if p.name != "latest"] == [good.path.name]
    assert (tmp_path / "runs" / "latest").resolve() == good.path.resolve()


def test_batch_size_does_not_change_results(gray28, tmp_path):
    model = aekit.load(aekit.train(gray28, out=tmp_path / "run", **{**FAST, "epochs": 1}).path)
    x = smooth_images(7, 28, 28, 1)[..., 0]
    np.testing.assert_allclose(model.encode(x, batch_size=3), model.encode(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.reconstruct(x, batch_size=2), model.reconstruct(x))
    z = model.encode(x)
    np.testing.assert_allclose(model.decode(z, batch_size=4), model.decode(z), rtol=1e-5, atol=1e-4)


def test_api_verbs_stay_functions_when_every_module_is_imported():
    import importlib
    import inspect
    import pkgutil

    for info in pkgutil.walk_packages(aekit.__path__, "aekit."):
        if info.name != "aekit.__main__":
            importlib.import_module(info.name)  # a submodule named like a verb would shadow it
    for name in (
        "train",
        "load",
        "encode",
        "score",
        "reconstruct",
        "evaluate",
        "sample",
        "interpolate",
        "report",
        "export",
        "sweep",
    ):
        assert inspect.isfunction(getattr(aekit, name)), name


def test_the_public_api_is_named_and_listed(rgb_run, tmp_path, capsys):
    """aekit.load returns an aekit.Autoencoder; dir(aekit) and __all__ list every public name and
    each resolves; library functions print nothing unless asked."""
    listed = set(dir(aekit))
    assert {"train", "load", "score", "encode", "export", "Autoencoder", "AutoencoderDetector", "Scores"} <= listed
    assert set(aekit.__all__) <= listed and all(getattr(aekit, name) is not None for name in aekit.__all__)
    folder, run = rgb_run
    model = aekit.load(run)
    assert isinstance(model, aekit.Autoencoder)
    res = aekit.score(run, folder)
    assert isinstance(res, aekit.Scores) and len(res.scores) == len(res.ids) > 0
    ids, z = aekit.encode(run, folder, tmp_path / "z.csv")
    assert len(ids) == len(z) == len(res.ids)
    aekit.score(run, folder, tmp_path / "quiet.csv")
    assert capsys.readouterr() == ("", "")  # quiet by default
    aekit.score(run, folder, tmp_path / "told.csv", verbose=True)
    assert "scored" in capsys.readouterr().err  # and says what it does when asked
