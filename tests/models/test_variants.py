"""Variational and denoising autoencoders: loss scaling, KL warm-up, active units, the commands."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import aekit
from aekit.cli.main import main
from aekit.data.kind import DataKind
from aekit.data.normalize import Normalizer
from aekit.measures.validation import final_pass
from aekit.models import create_model, loss_fn
from aekit.models.dae import DenoisingAutoencoder
from aekit.models.pca import PCA
from aekit.models.vae import VariationalAutoencoder
from tests.conftest import smooth_images


def vae(shape=(1, 16, 16), latent=4, **options):
    return create_model("conv", in_shape=shape, latent_dim=latent, variant="vae", variant_options=options)


def test_registry_builds_each_variant_and_they_keep_the_input_shape():
    for variant, cls in (("vae", VariationalAutoencoder), ("dae", DenoisingAutoencoder)):
        for arch in ("conv", "basic"):
            m = create_model(arch, in_shape=(3, 13, 9), latent_dim=5, variant=variant)
            assert isinstance(m, cls)
            x = torch.randn(2, 3, 13, 9)
            for mode in (m.train, m.eval):
                mode()
                out = m(x)
                assert out.recon.shape == x.shape and out.z.shape == (2, 5)
            assert m.encode(x).shape == (2, 5) and m.decode(torch.zeros(2, 5)).shape == x.shape


def test_vae_loss_is_summed_per_sample_and_averaged_over_the_batch():
    torch.manual_seed(0)
    m = vae(kl_warmup_epochs=0)
    m.train()
    x = torch.randn(6, 1, 16, 16)
    out = m(x)
    terms = loss_fn(m)(out, x)

    # per-sample sums: the recon term of 6 items equals the mean of each item's own term
    def one(i):
        part = type(out)(out.recon[i : i + 1], out.z[i : i + 1], {k: v[i : i + 1] for k, v in out.stats.items()})
        return loss_fn(m)(part, x[i : i + 1])

    singles = [one(i) for i in range(6)]
    assert float(terms["kl"]) == pytest.approx(np.mean([float(s["kl"]) for s in singles]), rel=1e-5)
    assert float(terms["loss"].detach()) == pytest.approx(float(terms["recon"] + terms["kl"]), rel=1e-5)
    assert float(terms["elbo"]) == pytest.approx(-float(terms["recon"] + terms["kl"]), rel=1e-5)
    # the recon term grows with the number of pixels, the KL term does not: 4x the pixels, same errors
    big = vae(shape=(1, 32, 32))
    err = torch.full((1, 1, 16, 16), 0.3)
    out_small = type(out)(err, torch.zeros(1, 4), {"kl": torch.ones(1, 4)})
    out_big = type(out)(torch.full((1, 1, 32, 32), 0.3), torch.zeros(1, 4), {"kl": torch.ones(1, 4)})
    small_terms = loss_fn(m)(out_small, torch.zeros(1, 1, 16, 16))
    big_terms = loss_fn(big)(out_big, torch.zeros(1, 1, 32, 32))
    assert float(big_terms["recon"]) == pytest.approx(4 * float(small_terms["recon"]), rel=1e-5)
    assert float(big_terms["kl"]) == float(small_terms["kl"]) == 4.0


def test_kl_warmup_and_free_bits():
    m = vae(beta=2.0, kl_warmup_epochs=4)
    assert [m.kl_weight(e) for e in (0, 1, 2, 4, 9, math.inf)] == [0.0, 0.5, 1.0, 2.0, 2.0, 2.0]
    out = type(m(torch.zeros(1, 1, 16, 16)))(
        torch.zeros(1, 1, 16, 16), torch.zeros(1, 4), {"kl": torch.full((1, 4), 0.1)}
    )
    x = torch.zeros(1, 1, 16, 16)
    at_start = loss_fn(m)(out, x, epoch=0.0)
    assert float(at_start["loss"]) == pytest.approx(float(at_start["recon"]))  # no KL pressure yet
    floored = vae(free_bits=0.5, kl_warmup_epochs=0)
    t = loss_fn(floored)(out, x)
    assert float(t["loss"] - t["recon"]) == pytest.approx(4 * 0.5)  # each dim's 0.1 nats floored at 0.5
    assert float(t["kl"]) == pytest.approx(0.4)  # the logged KL is the true one


def test_warmup_is_capped_at_half_the_epochs_and_recorded(tmp_path):
    x = smooth_images(40, 12, 12, 1)
    r = aekit.train(x, model="vae", epochs=4, latent_dim=3, verbose=False, out=tmp_path / "run")
    meta = json.loads((r.path / "model.json").read_text())
    assert meta["model_kwargs"]["variant"] == "vae"
    assert meta["model_kwargs"]["variant_options"]["kl_warmup_epochs"] == 2.0
    rows = list(csv.DictReader(open(r.path / "metrics.csv")))
    for col in ("train_recon", "train_kl", "train_elbo", "val_recon", "val_kl", "val_elbo"):
        assert col in rows[0] and math.isfinite(float(rows[-1][col]))
    assert len(r.summary["kl_per_dim"]) == 3 and 0 <= r.summary["active_units"] <= 3
    # the loaded model is the posterior mean: deterministic embeddings
    model = aekit.load(r.path)
    np.testing.assert_array_equal(model.encode(x[:5]), model.encode(x[:5]))


def test_active_units_count_dimensions_whose_code_varies():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            b = x.shape[0]
            z = torch.stack([torch.linspace(-1, 1, b), torch.full((b,), 3.0), 0.01 * torch.linspace(-1, 1, b)], 1)
            return aekit.models.AEOutput(x, z, {"kl": torch.ones(b, 3)})

    norm = Normalizer(1.0, [0.0], [1.0])
    x = torch.zeros(50, 1, 2, 2)
    pca = PCA(torch.zeros(4), torch.zeros(4, 3), torch.zeros(3))
    res = final_pass(Fixed(), norm, pca, x, torch.arange(50), torch.device("cpu"), 16, DataKind(bounded=False)).latent
    assert res["active_units"] == 1  # variances ~0.35, 0 and ~3.5e-5
    assert res["kl_per_dim"] == [1.0, 1.0, 1.0]


def test_denoising_noise_is_in_pixel_units_and_only_in_training():
    m = create_model("conv", in_shape=(1, 8, 8), latent_dim=4, variant="dae", variant_options={"noise": "gaussian:0.1"})
    m.use_normalizer(Normalizer(255.0, [0.5], [0.2]))
    torch.manual_seed(0)
    xn = torch.zeros(4000, 1, 8, 8)
    assert float((m.corrupt(xn) - xn).std()) == pytest.approx(0.1 / 0.2, rel=0.02)  # sigma 0.1 in pixels
    masking = DenoisingAutoencoder(m.backbone, "masking:0.25")
    masking.use_normalizer(Normalizer(255.0, [0.5], [0.2]))
    changed = (masking.corrupt(xn) != xn).float().mean()
    assert float(changed) == pytest.approx(0.25, abs=0.01)
    assert float(masking.corrupt(xn)[masking.corrupt(xn) != 0].unique()[0]) == pytest.approx(-2.5)  # black
    m.eval()
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(m(x).recon, m.backbone(x).recon)


def test_denoising_model_removes_noise(tmp_path):
    clean = smooth_images(300, 16, 16, 1, seed=4)
    r = aekit.train(clean[:260], model="dae", noise="gaussian:0.15", epochs=20, latent_dim=16, verbose=False,
                    out=tmp_path / "run")  # fmt: skip
    model = aekit.load(r.path)
    rng = np.random.default_rng(1)
    test = clean[260:].astype(np.float32)
    noisy = np.clip(test + rng.normal(0, 0.15 * 255, test.shape), 0, 255)
    denoised = model.reconstruct(noisy)
    assert np.mean((denoised - test) ** 2) < 0.5 * np.mean((noisy - test) ** 2)


@pytest.fixture
def vae_run(tmp_path):
    x = smooth_images(60, 12, 12, 1)
    aekit.train(x, model="vae", epochs=3, latent_dim=4, verbose=False, out=tmp_path / "vae")
    for i in (0, 1):
        Image.fromarray(x[i, ..., 0]).save(tmp_path / f"{i}.png")
    return tmp_path / "vae"


def test_sample_command(vae_run, tmp_path):
    out = tmp_path / "s.png"
    assert (
        main(["sample", str(vae_run), "-n", "6", "-o", str(out), "--out-dir", str(tmp_path / "each"), "--quiet"]) == 0
    )
    assert Image.open(out).size[0] > 3 * 12
    files = sorted((tmp_path / "each").glob("sample_*.png"))
    assert len(files) == 6 and np.asarray(Image.open(files[0])).shape == (12, 12)
    a = aekit.sample(vae_run, 6, seed=3, verbose=False)
    b = aekit.sample(vae_run, 6, seed=3, verbose=False)
    assert a.shape == (6, 1, 12, 12) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)  # seeded


def test_interpolate_command(vae_run, tmp_path):
    out = tmp_path / "path.png"
    argv = ["interpolate", str(vae_run), str(tmp_path / "0.png"), str(tmp_path / "1.png"), "-n", "5", "-o", str(out)]
    assert main([*argv, "--quiet"]) == 0
    assert Image.open(out).size[0] > 7 * 12  # A, 5 steps, B
    path = aekit.interpolate(vae_run, tmp_path / "0.png", tmp_path / "1.png", 5, verbose=False)
    model = aekit.load(vae_run)
    ends = model.decode(model.encode(np.stack([np.asarray(Image.open(tmp_path / f"{i}.png")) for i in (0, 1)])))
    np.testing.assert_allclose(path[[0, -1]], np.rint(np.clip(ends, 0, 255)), atol=1)


def test_sampling_a_plain_autoencoder_is_refused_in_one_line(tmp_path, capsys):
    aekit.train(smooth_images(20, 8, 8, 1), epochs=1, latent_dim=2, verbose=False, out=tmp_path / "ae")
    assert main(["sample", str(tmp_path / "ae"), "-o", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model vae" in err


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--model", "gan"], "invalid choice"),
        (["--noise", "gaussian:-1"], "invalid noise"),
        (["--noise", "blur:0.2"], "invalid noise"),
        (["--beta", "-1"], "beta"),
    ],
)
def test_bad_variant_options(flags, needle, gray28, capsys):
    try:
        code = main(["train", str(gray28), *flags])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err


@pytest.mark.parametrize("variant", ["vae", "dae"])
def test_a_table_trains_as_a_variational_or_denoising_autoencoder(variant, tmp_path):
    """--model vae|dae wraps the table's mlp (it crashed: the wrapper has no `width`)."""
    rows = np.random.default_rng(0).normal(size=(60, 6)).astype(np.float32)
    run = aekit.train(rows, model=variant, max_steps=20, out=tmp_path / "run", verbose=False)
    meta = aekit.load(run.path).meta
    assert meta["model_kwargs"]["variant"] == variant and meta["model_kwargs"]["width"] > 0
    assert aekit.load(run.path).score(rows[:5]).shape == (5,)
