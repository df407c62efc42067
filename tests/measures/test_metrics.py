import math

import numpy as np
import pytest
import torch

from aekit.measures.metrics import Metrics, ssim_per_channel, verdict


def test_ssim_is_one_for_identical_and_drops_with_noise():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(ssim_per_channel(x, x), torch.ones(2, 3), atol=1e-5)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    s = ssim_per_channel(x, noisy)
    assert (s < 0.9).all() and (s > 0).all()


def test_ssim_matches_scikit_image():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.random((40, 36)).astype(np.float64)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    ref = skimage_metrics.structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    ours = ssim_per_channel(torch.tensor(a)[None, None], torch.tensor(b)[None, None]).item()
    assert ours == pytest.approx(ref, abs=2e-3)


def test_small_images_use_a_smaller_window():
    x = torch.rand(1, 1, 5, 7)
    assert ssim_per_channel(x, x).item() == pytest.approx(1.0, abs=1e-5)


def test_metrics_accumulate_per_channel():
    m = Metrics()
    target = torch.zeros(4, 2, 8, 8)
    recon = target.clone()
    recon[:, 1] = 0.1  # only channel 1 is off
    m.update(recon[:2], target[:2])
    m.update(recon[2:], target[2:])
    r = m.result()
    assert r["per_channel"]["mse"] == pytest.approx([0.0, 0.01])
    assert r["mse"] == pytest.approx(0.005) and r["per_channel"]["psnr"][0] is None
    assert r["psnr"] == pytest.approx(10 * np.log10(1 / 0.005))


def test_verdict():
    assert verdict(0.9, 1.0) == "better" and verdict(1.001, 1.0) == "equal" and verdict(1.2, 1.0) == "worse"


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 255.0), (np.uint16, 65535.0)])
def test_channel_stats_of_integer_images_match_float_sums(dtype, scale):
    from aekit.data.normalize import channel_stats

    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    x = np.stack([rng.integers(0, top // 3, (50, 6, 7)), rng.integers(top // 2, top, (50, 6, 7))], 1).astype(dtype)
    idx = rng.permutation(50)[:37]
    mean, std = channel_stats(x, scale, idx, chunk=8)  # histogram path, several chunks
    ref = x[idx].astype(np.float64) / scale
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=1e-10)
    const = np.full((4, 1, 3, 3), 7, dtype)
    assert channel_stats(const, scale)[1] == [1e-3]  # a constant channel gets the floor, not 0


def test_psnr_of_data_in_their_own_units_uses_their_range():
    """uint16 bands or float data kept in their units: PSNR over each channel's range, not over 1
    (which gave -40 dB for errors of a few hundred)."""
    from aekit.measures.metrics import Metrics

    target = torch.linspace(0, 30000, 2 * 2 * 8 * 8).reshape(2, 2, 8, 8)
    target[:, 1] /= 10  # channel 1 spans 3000
    recon = target + 100.0
    own = Metrics(own_units=True)
    own.update(recon, target)
    r = own.result()
    ranges = [float(target[:, c].max() - target[:, c].min()) for c in range(2)]
    assert r["per_channel"]["psnr"] == pytest.approx([10 * math.log10(x**2 / 1e4) for x in ranges])
    assert r["psnr"] == pytest.approx(10 * math.log10(max(ranges) ** 2 / 1e4)) and r["psnr"] > 0


def test_a_run_in_the_datas_own_units_says_so_and_has_a_positive_psnr(tmp_path, capsys):
    import aekit

    x = (np.random.default_rng(0).random((60, 2, 12, 12)) * 5000 + 10000).astype(np.float32)
    run = aekit.train(x, max_steps=30, latent_dim=4, out=tmp_path / "run", verbose=True)
    err = capsys.readouterr().err
    assert "(the data's own units)" in err and "(pixels)" not in err
    s = run.summary
    assert s["mse_units"] == s["metric_units"] == "the data's own units" and s["val_psnr"] > 0
