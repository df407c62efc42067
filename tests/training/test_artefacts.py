"""recon.png at the end of training: each shown item's name and error are written on the picture."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

import aekit.training.artefacts
from aekit.cli.main import main
from tests.conftest import FAST
from tests.rasters import tile_folder


@pytest.fixture
def grids(monkeypatch) -> list[dict]:
    """The keyword arguments of every recon_grid call of the training (which still draws)."""
    calls: list[dict] = []
    real = aekit.training.artefacts.recon_grid

    def recording(*args, **kw):
        calls.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(aekit.training.artefacts, "recon_grid", recording)
    return calls


def validation_scores(run) -> dict[str, float]:
    with open(run / "validation_scores.csv", newline="") as f:
        return {r["id"]: float(r["score"]) for r in csv.DictReader(f)}


def check_labels(calls: list[dict], run) -> None:
    (kw,) = calls
    text = kw["text"]
    scores = validation_scores(run)
    assert text.value_name == "MSE" and len(text.names) == len(text.values) == min(8, len(scores))
    assert set(text.names) <= set(scores)  # validation items, by their ids
    for name, value in zip(text.names, text.values):
        assert value == pytest.approx(scores[name], rel=1e-4)  # the error the threshold is set from


def test_recon_png_names_each_item_and_its_error(rgb_folder, tmp_path, grids):
    run = tmp_path / "run"
    assert main(["train", str(rgb_folder), *FAST, "--val-fraction", "0.2", "--out", str(run)]) == 0
    check_labels(grids, run)
    assert all(n.startswith(("a/", "b/")) for n in grids[0]["text"].names)
    picture = Image.open(run / "recon.png")
    assert picture.width > 4 * 64 + 60  # four items and the row names at the left


def test_recon_png_of_13_bands_with_nodata_measures_valid_pixels(tmp_path, grids):
    tiles = tile_folder(tmp_path / "tiles", n=12, c=13, size=32, nodata=0)
    run = tmp_path / "run"
    assert main(["train", str(tiles), *FAST, "--val-fraction", "0.25", "--out", str(run)]) == 0
    check_labels(grids, run)  # the same numbers as validation_scores.csv: nodata pixels left out
    assert grids[0]["mask"] is not None and grids[0]["stretch"]
    a = np.asarray(Image.open(run / "recon.png").convert("RGB"))
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 50  # stretched colours, not a flat picture
