"""aekit: train an autoencoder on your own data, then use it.

import aekit
run = aekit.train("my_images", epochs=20)
model = aekit.load(run.path)        # an aekit.Autoencoder
z = model.encode(images)            # (N, latent_dim)
recon = model.reconstruct(images)   # same layout and dtype as `images`
aekit.report(run.path)              # RUN/report.html (training writes it too)
aekit.export(run.path)              # RUN/model.onnx: runs without aekit (ONNX or TorchScript)
res = aekit.sweep("my_images", latent_dim=[8, 16, 32], out="sweep")  # one run per size, best first
det = aekit.AutoencoderDetector(contamination=0.05).fit(X)  # scikit-learn/PyOD style: det.predict(X_new)
aekit.register_model("my_ae")(MyAE)   # your own nn.Module: aekit.train(..., arch="my_ae")

Library functions print nothing unless asked (`verbose=True`); the `aekit` command prints.
"""

from aekit.version import __version__

API = (  # aekit/api.py
    "Autoencoder",
    "Run",
    "Scores",
    "train",
    "load",
    "encode",
    "reconstruct",
    "score",
    "evaluate",
    "report",
    "export",
    "sample",
    "interpolate",
    "sweep",
    "register_model",
)
__all__ = ["__version__", *API, "AutoencoderDetector"]


def __getattr__(name: str):
    # torch is imported on first use, so `aekit --help` and decoding workers start fast
    if name in API:
        from aekit import api

        return getattr(api, name)
    if name == "AutoencoderDetector":  # the scikit-learn / PyOD style estimator (aekit/detector.py)
        from aekit.detector import AutoencoderDetector

        return AutoencoderDetector
    raise AttributeError(f"module 'aekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
