"""aekit.Autoencoder on devices other than the CPU, checked on the CPU: no autocast context in fp32
(torch < 2.5 refuses it on MPS), resizing around what MPS lacks, outputs gathered on the host, and
pickles that load on a machine without the GPU they were made on. tests/standins.py has the stand-ins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.standins import MPS, fake_mps, tiny_autoencoder  # noqa: F401 (fake_mps: a fixture)


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


def with_scores(model, images: np.ndarray):
    """`model` given the latent statistics and ensemble references that training would have written,
    computed from `images` on the CPU."""
    from aekit.data.kind import DataKind
    from aekit.measures import ensemble
    from aekit.measures.latent_score import latent_statistics

    x_all, idx, cpu = torch.from_numpy(images[:, None]), torch.arange(len(images)), torch.device("cpu")
    stats = latent_statistics(model.model, model.normalizer, x_all, idx, cpu, 8, DataKind())
    model.meta.update(latent_score=stats, ensemble={"scales": dict.fromkeys(ensemble.parts_of(DataKind()), 1.0)})
    model.references = ensemble.references(model.model, model.normalizer, x_all, idx, cpu, 8, stats, 0)
    return model


METRICS = ("mse", "mae", "ssim", "mse+latent", "ensemble")


@pytest.mark.usefixtures("fake_mps")
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
def test_inference_on_the_mps_standin_gives_the_cpus_results(dtype):
    """tests/standins.py: tensors moved to "mps" refuse float64, uint16 and .numpy() as MPS does;
    every verb and score of a model on "mps" must give what the CPU gives."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (24, 16, 16), dtype=np.uint8)
    images = (rng.integers(0, 256, (5, 16, 16)) * (257 if dtype == np.uint16 else 1)).astype(dtype)
    cpu, mps = with_scores(tiny_autoencoder(), train), with_scores(tiny_autoencoder(device="auto"), train)
    assert mps.device == MPS and cpu.device.type == "cpu"
    for verb in ("encode", "reconstruct", "explain"):
        np.testing.assert_allclose(
            getattr(mps, verb)(images), getattr(cpu, verb)(images), rtol=1e-5, atol=1e-7, err_msg=verb
        )
    for metric in METRICS:
        np.testing.assert_allclose(
            mps.score(images, metric=metric), cpu.score(images, metric=metric), rtol=1e-5, atol=1e-7
        )
    z = cpu.encode(images)
    np.testing.assert_allclose(mps.decode(z), cpu.decode(z), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(mps.decode(torch.from_numpy(z).double()), cpu.decode(z), rtol=1e-5, atol=1e-7)


@pytest.mark.usefixtures("fake_mps")
def test_resizing_on_mps_goes_through_the_cpu_and_back():
    """MPS has no antialiased bilinear resizing (the stand-in refuses it as torch on a Mac does)."""
    from aekit.inference.model import fit_size

    x = torch.rand(2, 3, 40, 30)
    on_mps = x.to("mps")
    with pytest.raises(NotImplementedError, match="not currently implemented for the MPS device"):
        torch.nn.functional.interpolate(on_mps, size=(20, 15), mode="bilinear", antialias=True)
    got = fit_size(on_mps, (16, 16))
    assert got.device == MPS and got.shape == (2, 3, 16, 16)
    torch.testing.assert_close(got.cpu(), fit_size(x, (16, 16)), rtol=0, atol=0)


@pytest.mark.usefixtures("fake_mps")
def test_images_of_another_size_are_fitted_on_mps():
    images = np.random.default_rng(0).integers(0, 256, (3, 24, 20, 3), dtype=np.uint8)  # RGB, not 16x16
    cpu, mps = tiny_autoencoder(), tiny_autoencoder(device="mps")
    np.testing.assert_allclose(mps.encode(images), cpu.encode(images), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(mps.reconstruct(images), cpu.reconstruct(images), atol=1)  # uint8, rounded


def devices_pickled(obj) -> set[str]:
    """The device types of the tensors a pickle of `obj` holds."""
    import io
    import pickle

    seen = set()

    class Recorder(pickle.Pickler):
        def reducer_override(self, o):
            if isinstance(o, torch.Tensor):
                seen.add(o.device.type)
            return NotImplemented

    Recorder(io.BytesIO()).dump(obj)
    return seen


def test_a_pickled_model_holds_cpu_tensors_and_goes_back_to_its_device(monkeypatch):
    import pickle

    from tests.standins import FakeMPS

    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16), dtype=np.uint8)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    with FakeMPS():
        model = with_scores(tiny_autoencoder(device="mps"), images)
        assert model.normalizer.mean.device == MPS  # the stand-in's buffers are "on MPS"
        assert devices_pickled(model) == {"cpu"}
        data = pickle.dumps(model)
        back = pickle.loads(data)  # MPS is here: back on it
        assert back.device == MPS and back.normalizer.mean.device == MPS
        want = model.score(images, metric="ensemble")
        np.testing.assert_allclose(back.score(images, metric="ensemble"), want, rtol=1e-6)
        assert model.normalizer.mean.device == MPS  # pickling left the original where it was
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    here = pickle.loads(data)  # no MPS: on the CPU
    assert here.device.type == "cpu" and here.compute.channels_last and here.normalizer.mean.device.type == "cpu"
    np.testing.assert_allclose(here.score(images, metric="ensemble"), want, rtol=1e-5, atol=1e-7)


@pytest.mark.usefixtures("fake_mps")
def test_batched_results_are_gathered_on_the_host_not_the_device():
    """Only one batch lives on the device: the (N, ...) output is allocated on the CPU."""
    images = np.random.default_rng(0).integers(0, 256, (7, 16, 16), dtype=np.uint8)
    outs = []
    for model in (tiny_autoencoder(), tiny_autoencoder(device="mps")):
        arr, layout = model._as_array(images, None)
        seen = []

        def encode(b, model=model, seen=seen):
            seen.append(b.device)
            return model.model.encode(model.normalizer.normalize(b))

        out = model._batched(encode, arr, layout, model._unit_factor(arr), 3)
        assert type(out) is torch.Tensor and out.device.type == "cpu" and out.shape == (7, 4)
        assert seen == [model.device] * 3  # batches of 3, 3 and 1 on the model's device
        outs.append(out)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-7)


def test_a_model_pickled_by_an_earlier_aekit_still_loads():
    """Before __getstate__ a pickle held the object's attributes as they were (compute included)."""
    import pickle

    model = tiny_autoencoder()
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    old = object.__new__(type(model))
    old.__setstate__(pickle.loads(pickle.dumps(dict(model.__dict__))))
    np.testing.assert_array_equal(old.encode(images), model.encode(images))
