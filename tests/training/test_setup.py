"""The seeded train/validation split."""

import pytest

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
