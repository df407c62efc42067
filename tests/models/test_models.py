import pytest
import torch

from aekit.models import create_model, list_models
from aekit.models.conv import auto_depth
from aekit.models.pca import fit_pca

SHAPES = [(1, 28, 28), (3, 32, 32), (4, 17, 23), (13, 9, 40), (3, 129, 65), (1, 1, 1), (2, 7, 7)]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("shape", SHAPES)
def test_every_model_reconstructs_the_input_shape(name, shape):
    model = create_model(name, in_shape=shape, latent_dim=8)
    x = torch.randn(2, *shape)
    out = model(x)
    assert out.recon.shape == x.shape
    assert out.z.shape == (2, 8)
    assert model.decode(model.encode(x)).shape == x.shape
    out.recon.sum().backward()  # gradients flow end to end


@pytest.mark.parametrize("name", list_models())
def test_depth_option(name):
    model = create_model(name, in_shape=(3, 40, 30), latent_dim=4, depth=2)
    assert len(model.sizes) == 3 and model(torch.randn(1, 3, 40, 30)).recon.shape == (1, 3, 40, 30)


def test_auto_depth_scales_with_resolution():
    assert auto_depth(28, 28) == 2 and auto_depth(32, 32) == 3 and auto_depth(64, 64) == 4
    assert auto_depth(4, 4) == 1


def test_conv_starts_exactly_at_pca():
    torch.manual_seed(0)
    x = torch.randn(64, 1, 8, 8) @ torch.randn(8, 8)  # correlated data
    pca = fit_pca(x, 5)
    model = create_model("conv", in_shape=(1, 8, 8), latent_dim=5)
    model.init_from_pca(pca.mean, pca.components)
    with torch.no_grad():
        torch.testing.assert_close(model(x).recon, pca.reconstruct(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model.encode(x), pca.encode(x), atol=1e-4, rtol=1e-4)


def test_pca_matches_exact_svd():
    torch.manual_seed(0)
    x = torch.randn(300, 50) @ torch.randn(50, 50)
    pca = fit_pca(x, 10)
    err = ((pca.reconstruct(x) - x) ** 2).mean()
    u, s, vh = torch.linalg.svd(x - x.mean(0), full_matrices=False)
    assert abs(float(err) - float((s[10:] ** 2).sum() / x.numel())) < 1e-3


def test_max_depth():
    from aekit.models.conv import max_depth, stage_sizes

    assert max_depth(1, 1) == 1 and max_depth(2, 2) == 1 and max_depth(28, 28) == 5 and max_depth(32, 9) == 5
    for side in (2, 3, 17, 28, 32, 33):
        d = max_depth(side, side)
        assert stage_sizes(side, side, d)[-2][0] > 1  # every stage still has something to halve
        assert stage_sizes(side, side, d + 1)[-2][0] == 1
