"""The MLP autoencoder (tables): shapes, sizes, and its PCA start."""

import pytest
import torch

from aekit.models import create_model
from aekit.models.mlp import auto_latent_dim, auto_mlp_width, hidden_sizes
from aekit.models.pca import fit_pca


def test_sizes_follow_columns_and_latent():
    assert auto_mlp_width(12, 3) == 24 and auto_mlp_width(1000, 8) == 256 and auto_mlp_width(3, 40) == 80
    assert hidden_sizes(24, 3, 2) == [24, 8] and hidden_sizes(256, 64, 1) == [256]
    assert [auto_latent_dim(f) for f in (1, 7, 12, 100, 1000)] == [2, 2, 3, 25, 64]
    model = create_model("mlp", in_shape=(12, 1, 1), latent_dim=3, depth=3, width=40)
    assert model.sizes[0] == 12 and model.sizes[1] == 40 and len(model.sizes) - 1 == 3
    assert all(a >= b >= 3 for a, b in zip(model.sizes[1:], model.sizes[2:]))  # shrinking towards the latent


@pytest.mark.parametrize("shape", [(12, 1, 1), (1, 1, 1), (3, 8, 8)])
def test_tables_and_flattened_images_round_trip(shape):
    model = create_model("mlp", in_shape=shape, latent_dim=4)
    x = torch.randn(5, *shape)
    out = model(x)
    assert out.recon.shape == x.shape and out.z.shape == (5, 4)
    out.recon.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_mlp_starts_exactly_at_pca_then_learns_the_residual():
    torch.manual_seed(0)
    x = (torch.randn(256, 3) @ torch.randn(3, 10) + 0.1 * torch.randn(256, 10))[:, :, None, None]  # (N, F, 1, 1)
    pca = fit_pca(x, 3)
    model = create_model("mlp", in_shape=(10, 1, 1), latent_dim=3)
    model.init_from_pca(pca.mean, pca.components)
    with torch.no_grad():
        torch.testing.assert_close(model(x).recon, pca.reconstruct(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model.encode(x), pca.encode(x), atol=1e-4, rtol=1e-4)
    loss = torch.nn.functional.mse_loss(model(x).recon, x)
    loss.backward()
    assert model.head.weight.grad.abs().sum() > 0  # the silent MLP path gets gradients at once
