import numpy as np
import pytest
import torch

from aekit.core.errors import AekitError
from aekit.data.memory import from_array, from_dataset, infer_layout


@pytest.mark.parametrize(
    "shape,prefer,expected",
    [
        ((5, 8, 8), "NHWC", "NHW"),
        ((5, 8, 8, 3), "NHWC", "NHWC"),
        ((5, 3, 8, 8), "NHWC", "NCHW"),
        ((5, 1, 9, 9), "NHWC", "NCHW"),
        ((5, 9, 9, 4), "NCHW", "NHWC"),
        ((5, 3, 4, 3), "NCHW", "NCHW"),
    ],
)
def test_infer_layout(shape, prefer, expected):
    assert infer_layout(shape, prefer=prefer) == expected


def test_expected_channels_disambiguates():
    assert infer_layout((2, 3, 4, 1), prefer="NHWC", expected_channels=3) == "NCHW"


def test_from_array_layouts_agree():
    x = np.random.default_rng(0).integers(0, 255, (4, 6, 7, 3), dtype=np.uint8)
    a = from_array(x)
    b = from_array(x.transpose(0, 3, 1, 2).copy(), layout="NCHW")
    np.testing.assert_array_equal(a.array, b.array)
    assert a.scale == 255.0 and a.shape == (3, 6, 7)
    assert from_array(x[..., 0]).shape == (1, 6, 7)
    assert from_array(torch.rand(4, 2, 5, 5)).scale == 1.0


def test_nan_rejected():
    x = np.zeros((2, 4, 4), np.float32)
    x[0, 0, 0] = np.nan
    with pytest.raises(AekitError, match="NaN"):
        from_array(x)


class Pairs(torch.utils.data.Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.full((1, 6, 6), float(i)), i


class Dicts(Pairs):
    def __getitem__(self, i):
        return {"label": i, "image": torch.full((6, 6, 3), i, dtype=torch.uint8)}


def test_from_dataset_tuples_and_dicts():
    a = from_dataset(Pairs())
    assert a.array.shape == (5, 1, 6, 6) and a.array[3].max() == 3.0
    b = from_dataset(Dicts())
    assert b.array.shape == (5, 3, 6, 6) and b.scale == 255.0
