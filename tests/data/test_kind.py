"""The data kind: units, metrics and what is measured, from a data container or a saved model."""

import numpy as np
import torch

from aekit.data.base import LoadedData
from aekit.data.kind import OWN_UNITS, PIXELS, STANDARDISED, DataKind
from aekit.data.normalize import Normalizer


def test_kinds_of_data():
    img = LoadedData(np.zeros((2, 3, 4, 4), np.uint8), ["a", "b"], 255.0)
    assert DataKind.of(img) == DataKind(table=False, bounded=True, masked=False, raster=False)
    assert DataKind.of(img).units == PIXELS
    assert DataKind.of(img).metrics == ("mse", "mae", "ssim", "mse+latent", "ensemble")
    floats = LoadedData(np.zeros((2, 1, 4, 4), np.float32), ["a", "b"], 1.0, mask=np.ones((2, 1, 4, 4), bool))
    assert DataKind.of(floats).units == OWN_UNITS and DataKind.of(floats).masked
    table = LoadedData(np.zeros((2, 5, 1, 1), np.float32), ["0", "1"], 1.0, columns=list("abcde"))
    kind = DataKind.of(table)
    assert kind.table and kind.units == STANDARDISED and kind.metrics == ("mse", "mae", "mse+latent", "ensemble")
    assert kind.item == "rows" and kind.default_metric == "ensemble" == DataKind.of(img).default_metric
    assert DataKind.of_model({"table": {"columns": ["a"]}, "normalization": {"scale": 1.0}}) == kind


def test_measured_units():
    norm = Normalizer(255.0, [0.5], [0.25])
    raw = torch.tensor([[[[0.0, 255.0]]]])
    recon = torch.tensor([[[[-4.0, 4.0]]]])  # far outside [0, 1] once back in pixel units
    r, t = DataKind(bounded=True).measured(norm, recon, raw)
    assert r.tolist() == [[[[0.0, 1.0]]]] and t.tolist() == [[[[0.0, 1.0]]]]  # clamped
    r, _ = DataKind(bounded=False).measured(norm, recon, raw)
    assert r.tolist() == [[[[-0.5, 1.5]]]]
    r, t = DataKind(table=True).measured(norm, recon, raw)
    assert r is recon and torch.allclose(t, norm.normalize(raw))  # standardised
