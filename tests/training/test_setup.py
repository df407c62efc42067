"""The seeded train/validation split."""

import pytest
import torch

from aekit.training.setup import split_indices


@pytest.mark.parametrize("n,fraction,n_val", [(100, 0.1, 10), (10, 0.25, 2), (3, 0.1, 1), (2, 0.9, 1), (50, 0.0, 0)])
def test_split_sizes_and_disjoint_sorted_halves(n, fraction, n_val):
    train, val = split_indices(n, fraction, seed=0)
    assert len(val) == n_val and len(train) == n - n_val
    assert sorted(set(train.tolist()) | set(val.tolist())) == list(range(n))
    assert not set(train.tolist()) & set(val.tolist())
    assert train.tolist() == sorted(train.tolist()) and val.tolist() == sorted(val.tolist())


def test_one_item_is_all_training():
    train, val = split_indices(1, 0.5, seed=0)
    assert train.tolist() == [0] and val.tolist() == []


def test_split_is_seeded():
    a, b, c = (split_indices(200, 0.2, s)[1].tolist() for s in (3, 3, 4))
    assert a == b and a != c


class Wrapped(torch.nn.Module):
    """A stand-in for DistributedDataParallel / torch.compile's module: records what it wraps."""

    def __init__(self, kind: str, inner: torch.nn.Module, **kw):
        super().__init__()
        self.kind, self.inner, self.kw = kind, inner, kw


def stand_ins(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda m, **kw: Wrapped("compile", m, **kw))
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda m, **kw: Wrapped("ddp", m, **kw))


def test_under_ddp_the_ddp_module_is_compiled_not_the_model(monkeypatch):
    from aekit.core.compute import compute_settings
    from aekit.core.distributed import Context
    from aekit.training.setup import training_module

    stand_ins(monkeypatch)
    model = torch.nn.Linear(3, 2)
    cpu = torch.device("cpu")
    module = training_module(model, compute_settings(cpu, "fp32", compile=True), Context(0, 2))
    assert (module.kind, module.inner.kind, module.inner.inner) == ("compile", "ddp", model)
    assert module.inner.kw == {"device_ids": None}
    module = training_module(model, compute_settings(cpu, "fp32", compile=False), Context(0, 2))
    assert (module.kind, module.inner) == ("ddp", model)  # without --compile: as before
    module = training_module(model, compute_settings(cpu, "fp32", compile=True), Context())
    assert (module.kind, module.inner) == ("compile", model)  # one process: the model compiled
    assert training_module(model, compute_settings(cpu, "fp32"), Context()) is model


def test_setup_builds_its_training_module_ddp_first(monkeypatch, tmp_path):
    """prepare() itself, as rank 0 of two (no process group: the collectives it would need are not reached)."""
    import numpy as np

    from aekit.config.train import make_config
    from aekit.core import distributed
    from aekit.data.memory import from_array
    from aekit.training.setup import prepare

    stand_ins(monkeypatch)
    monkeypatch.setattr(distributed, "context", lambda: distributed.Context(0, 2))
    data = from_array(np.random.default_rng(0).integers(0, 256, (20, 16, 16), dtype=np.uint8))
    cfg = make_config(batch_size=4, latent_dim=4, width=8, precision="fp32", compile=True, device="cpu")
    s = prepare(data, cfg, tmp_path)
    assert (s.train_model.kind, s.train_model.inner.kind, s.train_model.inner.inner) == ("compile", "ddp", s.model)
