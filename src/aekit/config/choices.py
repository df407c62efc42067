"""The values an option can take, defined once: the config, the command options, the CLI's
`choices` and the library's own checks all read them from here."""

from __future__ import annotations

MODELS = ("ae", "vae", "dae")
ARCHS = ("auto", "conv", "basic", "mlp")  # built in; --arch takes any registered model (models/registry.py)
RECON_LOSSES = ("mse", "bce")
NOISES = ("gaussian", "masking", "saltpepper")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUGMENTS = ("flip", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")  # plus cuda:N
LAYOUTS = ("NHW", "NHWC", "NCHW")  # array files
# per-item anomaly scores; ssim is 1 - SSIM; mse+latent: measures/latent_score.py; ensemble (the
# default): measures/ensemble.py
METRICS = ("mse", "mae", "ssim", "mse+latent", "ensemble")
TABLE_METRICS = ("mse", "mae", "mse+latent", "ensemble")  # SSIM means nothing for a table row
ENSEMBLE_PARTS = ("mse", "ssim", "local", "code_knn", "input_knn", "code_distance", "spread")  # the ensemble's parts
EXPORT_FORMATS = {"onnx": (".onnx",), "torchscript": (".pt", ".ts")}  # format: file extensions
EXPORT_PARTS = ("full", "encoder", "decoder")
SEARCHES = ("grid", "random", "tpe")  # sweeps
LOGGERS = ("tensorboard", "mlflow")  # --log: experiment logging, file-based (training/loggers.py)
