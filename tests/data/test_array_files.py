"""Array files (.npy / .npz) as training and encoding data, from the CLI."""

import csv
import json

import numpy as np
import pytest

from aekit.cli.main import main
from tests.conftest import FAST, smooth_images


@pytest.mark.parametrize(
    "layout,make",
    [
        ("NHW", lambda x: x[..., 0]),
        ("NHWC", lambda x: x),
        ("NCHW", lambda x: x.transpose(0, 3, 1, 2).astype(np.float32) / 255),
    ],
)
def test_train_and_encode_an_npy_file(tmp_path, layout, make):
    channels = 1 if layout == "NHW" else 3
    x = make(smooth_images(20, 12, 10, channels, seed=4))
    path = tmp_path / "data.npy"
    np.save(path, x)
    run = tmp_path / "run"
    assert main(["train", str(path), *FAST, "--out", str(run)]) == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["channels"] == channels and s["image_size"] == [12, 10] and s["n_images"] == 20
    out = tmp_path / "z.csv"
    assert main(["encode", str(run), str(path), "-o", str(out), "--quiet"]) == 0
    rows = list(csv.reader(open(out)))
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(20)]  # row numbers identify the items


def test_layout_flag_overrides_inference(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (16, 3, 8, 3), dtype=np.uint8)  # ambiguous
    np.save(tmp_path / "a.npy", x)
    assert main(["train", str(tmp_path / "a.npy"), *FAST, "--layout", "NCHW", "--out", str(tmp_path / "r")]) == 0
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["channels"] == 3 and s["image_size"] == [8, 3]
    out = tmp_path / "z.npy"
    assert main(["encode", str(tmp_path / "r"), str(tmp_path / "a.npy"), "--layout", "NCHW", "-o", str(out)]) == 0
    assert np.load(out).shape == (16, 4)


def test_npz_picks_the_images_array(tmp_path):
    np.savez(tmp_path / "d.npz", labels=np.arange(10), images=smooth_images(10, 8, 8, 1)[..., 0])
    assert main(["train", str(tmp_path / "d.npz"), *FAST, "--out", str(tmp_path / "r")]) == 0


@pytest.mark.parametrize(
    "content,needle",
    [
        (np.zeros(10, np.float32), "shape"),  # 1-D: neither images nor a table (2-D: see test_tables.py)
        (np.array([{"a": 1}] * 3, dtype=object), "unpickling"),
        (np.full((4, 6, 6), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_arrays_are_one_line_errors(tmp_path, capsys, content, needle):
    np.save(tmp_path / "bad.npy", content, allow_pickle=True)
    before = (tmp_path / "bad.npy").read_bytes()
    assert main(["train", str(tmp_path / "bad.npy"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and err.startswith("aekit train: error:")
    assert (tmp_path / "bad.npy").read_bytes() == before  # the user's data is never modified
