"""--log tensorboard|mlflow: scalars per epoch, reconstruction grids and the config, read back from
the files each backend writes (no server)."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest

import aekit
from aekit.cli.main import main

SCALARS = {"train_loss", "val_loss", "val_mse", "lr", "images_per_s"}
EPOCHS = 3


def blobs(n: int = 40, side: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    x = [np.exp(-((yy - rng.uniform(1, side - 1)) ** 2 + (xx - rng.uniform(1, side - 1)) ** 2) / 6) for _ in range(n)]
    return (np.stack(x) * 255).astype(np.uint8)


def val_losses(run) -> list[str]:
    with open(run / "metrics.csv") as f:
        return [row["val_loss"] for row in csv.DictReader(f)]


def test_tensorboard_event_files_hold_scalars_images_and_config(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    np.save(tmp_path / "x.npy", blobs())
    fast = ["--epochs", str(EPOCHS), "--batch-size", "8", "--latent-dim", "4", "--width", "8", "--precision", "fp32"]
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "x.npy"), *fast, "--log", "tensorboard", "--quiet", "--out", str(run)]) == 0

    ea = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    ea.Reload()
    tags = ea.Tags()
    assert SCALARS <= set(tags["scalars"]) and "final/val_mse" in tags["scalars"]
    for tag in SCALARS:
        assert [e.step for e in ea.Scalars(tag)] == list(range(1, EPOCHS + 1)), tag
    assert [f"{e.value:.6g}" for e in ea.Scalars("val_loss")] == [f"{float(v):.6g}" for v in val_losses(run)]
    grids = ea.Images("reconstructions")
    assert [e.step for e in grids] == list(range(1, EPOCHS + 1)) and grids[0].width > 0
    assert len(ea.Images("reconstructions_best")) == 1  # recon.png of the best epoch
    assert "config/text_summary" in tags["tensors"]  # the config as text, and for the HParams tab:
    assert "_hparams_/session_start_info" in ea.PluginTagToContent("hparams")

    # logging changes nothing in training: the same run without --log has the same losses
    again = tmp_path / "again"
    assert main(["train", str(tmp_path / "x.npy"), *fast, "--quiet", "--out", str(again)]) == 0
    assert val_losses(again) == val_losses(run) and not (again / "tensorboard").exists()


def test_mlflow_local_store_holds_params_metrics_and_images(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    rng = np.random.default_rng(0)
    table = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 8))  # a table: final grid only (a plot)
    store = tmp_path / "store"
    run = aekit.train(table, epochs=EPOCHS, log="mlflow", log_dir=store, out=tmp_path / "run", verbose=False)
    assert not (run.path / "mlruns").exists()  # --log-dir: the store is there, not in the run

    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    exp = client.get_experiment_by_name("aekit")
    (found,) = client.search_runs([exp.experiment_id])
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    assert found.data.params["latent_dim"] == "2" and found.data.params["arch"] == "mlp"  # the resolved config
    for key in SCALARS:
        assert [m.step for m in client.get_metric_history(found.info.run_id, key)] == list(range(1, EPOCHS + 1))
    assert found.data.metrics["final/val_mse"] == pytest.approx(run.summary["val_mse"])
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"recon.png", "loss.png", "images"} <= artifacts
    images = [a.path for a in client.list_artifacts(found.info.run_id, "images")]
    assert any("reconstructions_best" in p and p.endswith(".png") for p in images)


@pytest.mark.parametrize("backend", ["tensorboard", "mlflow"])
def test_a_missing_backend_is_one_line_before_training(tmp_path, capsys, monkeypatch, backend):
    monkeypatch.setitem(sys.modules, backend, None)  # as if not installed: find_spec finds nothing
    np.save(tmp_path / "x.npy", blobs(8))
    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "x.npy"), "--log", backend, "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f'pip install "aekit[{backend}]"' in err, err
    assert not out.exists()  # nothing trained, nothing left behind
