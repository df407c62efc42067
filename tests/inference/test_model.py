"""aekit.Autoencoder on devices other than the CPU, checked on the CPU: no autocast context in fp32
(torch < 2.5 refuses it on MPS), resizing around what MPS lacks, outputs gathered on the host, and
pickles that load on a machine without the GPU they were made on. tests/standins.py has the stand-ins."""

from __future__ import annotations

import numpy as np
import torch

from tests.standins import tiny_autoencoder


def test_fp32_inference_never_enters_autocast(monkeypatch):
    model = tiny_autoencoder()
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16), dtype=np.uint8)
    expected = model.encode(images), model.score(images), model.reconstruct(images), model.explain(images)

    def refuse(*a, **k):
        raise RuntimeError("unsupported autocast device_type 'mps'")  # torch < 2.5 on a Mac, even disabled

    monkeypatch.setattr(torch, "autocast", refuse)
    got = model.encode(images), model.score(images), model.reconstruct(images), model.explain(images)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    assert model.decode(got[0]).shape == (5, 1, 16, 16)


def test_fp32_raster_patches_never_enter_autocast(monkeypatch):
    from aekit.inference.raster_outputs import _predict

    model = tiny_autoencoder(channels=2)
    patches = np.random.default_rng(0).uniform(0, 255, (3, 2, 16, 16)).astype(np.float32)
    expected = _predict(model, patches, "error", 2)
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("unsupported")))
    np.testing.assert_array_equal(_predict(model, patches, "error", 2), expected)
    assert _predict(model, patches, "reconstruction", 2).shape == (3, 2, 16, 16)
