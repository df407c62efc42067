"""Data unlike the training data is said, never silent: score, encode, reconstruct and evaluate
print lines starting "warning:" naming what differs (channels, size, values, the share above the
threshold), and list the files they skipped."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

import aekit
from aekit.cli.main import main
from tests.conftest import smooth_images, write_pngs


@pytest.fixture(scope="module")
def gray_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    write_pngs(root / "train", smooth_images(100, 28, 28, 1, seed=0))
    run = aekit.train(root / "train", max_steps=60, latent_dim=8, out=root / "run").path
    return root, run


def test_colour_photos_of_another_size_scored_with_a_gray_model_are_warned_about(gray_run, tmp_path, capsys):
    root, run = gray_run
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(30):
        Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)).save(photos / f"{i:02d}.png")
    (photos / "broken.png").write_bytes(b"not a png")
    assert main(["score", str(run), str(photos), "-o", str(tmp_path / "s.csv")]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert any("other channels than the model's 1 (gray)" in w for w in warned), err
    assert any("30 of 30 images are not 28x28 (e.g. 60x80)" in w for w in warned), err
    assert any("the values differ from the training data's" in w for w in warned), err
    assert any("score above the threshold, which about 1% of items like the training data would" in w for w in warned)
    assert "skipped 1 file(s):" in err and "broken.png" in err  # listed on screen, as training does
    summary = json.loads((tmp_path / "s_summary.json").read_text())
    assert len(summary["warnings"]) == len(warned) == 4
    for argv in (["encode", str(run), str(photos), "-o", str(tmp_path / "z.csv")],
                 ["reconstruct", str(run), str(photos), "-o", str(tmp_path / "r")],
                 ["evaluate", str(run), str(photos)]):  # fmt: skip
        assert main(argv) == 0
        assert "warning: 30 of 30 images have other channels" in capsys.readouterr().err, argv[0]
    with warnings.catch_warnings(record=True) as caught:  # Python: quiet, but Python warnings
        warnings.simplefilter("always")
        aekit.score(run, photos)
    assert any("other channels" in str(w.message) for w in caught)
    assert capsys.readouterr().err == ""


def test_data_like_the_training_data_gets_no_warning(gray_run, tmp_path, capsys):
    root, run = gray_run
    write_pngs(tmp_path / "more", smooth_images(30, 28, 28, 1, seed=5))
    assert main(["score", str(run), str(tmp_path / "more"), "-o", str(tmp_path / "s.csv")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert json.loads((tmp_path / "s_summary.json").read_text())["warnings"] == []
    arrays = smooth_images(10, 20, 20, 3, seed=6)  # an array: its own shape is the evidence
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        aekit.encode(run, arrays)
    said = " ".join(str(w.message) for w in caught)
    assert "3 channel(s) and the model takes 1" in said and "20x20 and the model takes 28x28" in said
