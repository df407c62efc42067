"""Experiment logging, `--log tensorboard|mlflow`: file-based, no server.

- tensorboard: event files in RUN/tensorboard (or LOG_DIR/<run name>), read by
  `tensorboard --logdir runs` (torch.utils.tensorboard; extra `tensorboard`);
- mlflow: MLflow's local file store RUN/mlruns (or LOG_DIR), experiment "aekit", one MLflow run per
  aekit run, named after its folder (MlflowClient, no global active run; extra `mlflow`).

What is logged, on rank 0 only: the resolved config as hyperparameters once; per epoch the numbers of
metrics.csv (train_loss, val_loss, val_mse, lr, images_per_s, seconds and the model's other terms),
with the epoch as the step; for images, the reconstruction grid of recon.png up to 20 times during
training ("reconstructions", the model of that epoch); at the end the best epoch's grid
("reconstructions_best", recon.png), the final validation metrics (final/val_mse, ...) and, in
MLflow, recon.png and loss.png as artifacts.

A logger is `log_scalars(step, values)`, `log_image(name, array, step)`, `log_params(params)`,
`close()`; `RunLogger` drives one from the training loop (fit.py).
"""

from __future__ import annotations

import importlib.util
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from aekit.config.train import TrainConfig
from aekit.core.errors import AekitError

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # --log value: the module it needs
IMAGES_DURING_TRAINING = 20  # at most this many reconstruction grids before the final one
FINAL_METRICS = ("val_mse", "val_psnr", "val_ssim", "pca_val_mse", "val_loss", "best_epoch", "epochs_run", "seconds")


def check_logger(cfg: TrainConfig) -> None:
    """A one-line error naming the extra to install when --log's package is missing (before any
    data is read); nothing is imported here."""
    if cfg.log is None:
        return
    if importlib.util.find_spec(PACKAGES[cfg.log]) is None:
        raise AekitError(f'--log {cfg.log} needs the {cfg.log} package: pip install "aekit[{cfg.log}]"')


def hparams(cfg: TrainConfig) -> dict[str, Any]:
    """The config as flat hyperparameters: numbers, text and booleans (lists and None as text)."""
    out: dict[str, Any] = {}
    for key, value in cfg.to_dict().items():
        if key in ("log", "log_dir", "cache_dir"):
            continue
        out[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


class TensorBoardLogger:
    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # tensorboard is installed but broken (e.g. protobuf)
            raise AekitError(
                f'--log tensorboard cannot import tensorboard ({e}): pip install "aekit[tensorboard]"'
            ) from None
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.where = log_dir

    def log_params(self, params: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        exp, start, end = hparams(params, {"val_mse": 0.0, "val_loss": 0.0})  # metrics: scalar tags logged below
        for summary in (exp, start, end):
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("config", "```\n" + yaml.safe_dump(params, sort_keys=False) + "```")

    def log_scalars(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()  # a crash loses nothing logged so far

    def log_image(self, name: str, image: np.ndarray, step: int) -> None:
        self.writer.add_image(name, image, step, dataformats="HWC")
        self.writer.flush()

    def log_file(self, path: Path) -> None:
        return None  # the event files hold everything; recon.png is logged as an image

    def close(self) -> None:
        self.writer.close()


class MlflowLogger:
    def __init__(self, store: Path, run_name: str, run_dir: Path, resumed: bool):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            raise AekitError(f'--log mlflow cannot import mlflow ({e}): pip install "aekit[mlflow]"') from None
        # MLflow 3 keeps its file store in maintenance mode and refuses it unless asked for
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        store.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=store.resolve().as_uri())
        exp = self.client.get_experiment_by_name("aekit")
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment("aekit")
        tag = str(run_dir.resolve())
        found = self.client.search_runs([exp_id], f"tags.`aekit.run_dir` = '{tag}'") if resumed else []
        run = found[0] if found else self.client.create_run(exp_id, run_name=run_name, tags={"aekit.run_dir": tag})
        self.run_id = run.info.run_id
        self.where = store

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        have = set(self.client.get_run(self.run_id).data.params)  # a resumed run keeps its params
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in have]
        for i in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[i : i + 100])

    def log_scalars(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(1000 * time.time())
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_image(self, name: str, image: np.ndarray, step: int) -> None:
        self.client.log_image(self.run_id, image, key=name, step=step)

    def log_file(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class RunLogger:
    """What the training loop calls: `epoch(row, setup)` after each epoch, `end(summary, run_dir)`
    after the run's results are written."""

    def __init__(self, logger, setup, stride: int):
        self.logger, self.s, self.stride = logger, setup, stride
        self.last_epoch = 0

    def epoch(self, row: dict, data) -> None:
        values = {k: v for k, v in row.items() if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v)}
        self.logger.log_scalars(row["epoch"], values)
        self.last_epoch = row["epoch"]
        if not self.s.kind.table and row["epoch"] % self.stride == 0:  # tables: a matplotlib plot, at the end only
            self.logger.log_image("reconstructions", self._grid(data), row["epoch"])

    def _grid(self, data) -> np.ndarray:
        from PIL import Image

        from aekit.training.artefacts import recon_picture

        device = [self.s.device] if self.s.device.type == "cuda" else []
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), torch.random.fork_rng(devices=device):
            path = Path(tmp) / "recon.png"  # logging never moves the training's random numbers
            recon_picture(self.s, data, path)
            return np.asarray(Image.open(path).convert("RGB"))

    def end(self, summary: dict, run_dir: Path) -> None:
        from PIL import Image

        final = {k: summary[k] for k in FINAL_METRICS if isinstance(summary.get(k), (int, float))}
        self.logger.log_scalars(self.last_epoch, {f"final/{k}": v for k, v in final.items()})
        if (run_dir / "recon.png").is_file():  # the best epoch's model, as recon.png shows it
            best = np.asarray(Image.open(run_dir / "recon.png").convert("RGB"))
            self.logger.log_image("reconstructions_best", best, int(summary.get("best_epoch", self.last_epoch)))
        for name in ("recon.png", "loss.png"):
            if (run_dir / name).is_file():
                self.logger.log_file(run_dir / name)
        self.logger.close()


def open_logger(setup, run_dir: Path, resumed: bool) -> RunLogger | None:
    """The run's logger (cfg.log) on rank 0; None without --log or on other ranks."""
    cfg = setup.cfg
    if cfg.log is None or not setup.ctx.main:
        return None
    check_logger(cfg)
    name = run_dir.resolve().name
    if cfg.log == "tensorboard":
        logger = TensorBoardLogger(Path(cfg.log_dir) / name if cfg.log_dir else run_dir / "tensorboard")
        if not resumed:  # a resumed run's hyperparameters are in its first event file
            logger.log_params(hparams(cfg))
    else:
        logger = MlflowLogger(Path(cfg.log_dir) if cfg.log_dir else run_dir / "mlruns", name, run_dir, resumed)
        logger.log_params(hparams(cfg))
    return RunLogger(logger, setup, stride=max(1, math.ceil(cfg.epochs / IMAGES_DURING_TRAINING)))
