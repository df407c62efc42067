"""The passes over validation items on a device other than the CPU: on the MPS stand-in
(tests/standins.py), whose tensors refuse float64 as MPS does, the training-side statistics and the
final pass give what the CPU gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aekit.data.kind import DataKind
from aekit.data.normalize import Normalizer
from aekit.measures import ensemble
from aekit.measures.latent_score import latent_statistics
from aekit.measures.validation import final_pass, validation_loss
from aekit.models import create_model
from aekit.models.pca import fit_pca
from tests.standins import MPS, fake_mps  # noqa: F401 (fake_mps: a fixture)


def everything(device: torch.device) -> tuple:
    """The statistics, references, validation loss and final pass of a small untrained model on `device`."""
    torch.manual_seed(0)
    model = create_model("conv", in_shape=(1, 16, 16), latent_dim=4, depth=2, width=8).to(device)
    normalizer = Normalizer(255.0, [0.5], [0.25]).to(device)
    x_all = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (20, 1, 16, 16), dtype=np.uint8))
    idx, kind = torch.arange(20), DataKind()
    pca = fit_pca(Normalizer(255.0, [0.5], [0.25]).normalize(x_all), 4)
    stats = latent_statistics(model, normalizer, x_all, idx, device, 8, kind)
    refs = ensemble.references(model, normalizer, x_all, idx, device, 8, stats, 0)
    loss = validation_loss(model, normalizer, x_all, idx, device, 8, kind)
    final = final_pass(model, normalizer, pca, x_all, idx, device, 8, kind, latent_stats=stats, refs=refs)
    return stats, refs, loss, final


@pytest.mark.usefixtures("fake_mps")
def test_statistics_and_the_final_pass_run_on_the_mps_standin():
    stats, refs, loss, final = everything(MPS)
    want_stats, want_refs, want_loss, want_final = everything(torch.device("cpu"))
    assert stats["mse_scale"] == pytest.approx(want_stats["mse_scale"], rel=1e-6)
    np.testing.assert_allclose(stats["precision"], want_stats["precision"], rtol=1e-5)
    torch.testing.assert_close(refs["codes"], want_refs["codes"])
    assert loss == pytest.approx(want_loss, rel=1e-6)
    for side in ("autoencoder", "pca"):
        for k in ("mse", "psnr", "ssim"):
            assert final.comparison[side][k] == pytest.approx(want_final.comparison[side][k], rel=1e-5), (side, k)
    assert set(final.errors) == set(want_final.errors) == set(DataKind().metrics)
    for metric, errors in final.errors.items():
        np.testing.assert_allclose(errors, want_final.errors[metric], rtol=1e-5, err_msg=metric)
    for key in ("centers", "scales"):
        assert final.ensemble_calibration[key] == pytest.approx(want_final.ensemble_calibration[key], rel=1e-5)
