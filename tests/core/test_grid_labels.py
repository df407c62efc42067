"""Words on the reconstruction pictures: row names, item names, values, flags, title; tiles unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from aekit.core.grid_labels import ALERT, ELLIPSIS, ROWS, GridText, font, labelled_grid, short_name, text_width
from aekit.core.plots import recon_grid


@pytest.fixture
def drawn(monkeypatch) -> list[str]:
    """The strings written on pictures while the test runs."""
    words: list[str] = []
    original = ImageDraw.ImageDraw.text

    def text(self, xy, string, *args, **kw):
        words.append(string)
        return original(self, xy, string, *args, **kw)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", text)
    return words


def flat_tiles(colours: list[tuple[int, int, int]], h: int = 8, w: int = 8) -> np.ndarray:
    return np.array([np.full((h, w, 3), c, np.uint8) for c in colours])


def red_columns(picture: Image.Image) -> np.ndarray:
    """x positions of the picture's red (ALERT) pixels."""
    a = np.asarray(picture.convert("RGB")).astype(int)
    return np.nonzero(np.abs(a - ALERT).sum(axis=2) < 60)[1]


def test_every_word_is_drawn(drawn):
    text = GridText(
        names=["cats/a.png", "dogs/b.png"], values=[0.5, 0.0123], value_name="score", flags=[True, False], title="T"
    )
    labelled_grid(flat_tiles([(10, 10, 10), (20, 20, 20)]), flat_tiles([(30, 30, 30), (40, 40, 40)]), text)
    assert sorted(drawn) == sorted(
        ["T", *ROWS, "a.png", "b.png", "0.5", "0.0123", "score", "above", "below", "threshold"]
    )


def test_without_text_the_rows_are_still_named(drawn):
    picture = labelled_grid(flat_tiles([(10, 10, 10)]), flat_tiles([(30, 30, 30)]))
    assert sorted(drawn) == sorted(ROWS)
    assert not len(red_columns(picture))


def test_the_flagged_item_is_red(drawn):
    top, bottom = flat_tiles([(90, 90, 90)] * 3), flat_tiles([(60, 60, 60)] * 3)
    values = [0.3, 0.2, 0.1]
    first = red_columns(labelled_grid(top, bottom, GridText(values=values, flags=[True, False, False])))
    last = red_columns(labelled_grid(top, bottom, GridText(values=values, flags=[False, False, True])))
    assert len(first) and len(last) and first.max() < last.min()  # the red words moved to the last column
    assert drawn.count("above") == 2 and drawn.count("below") == 4


def test_tiles_keep_their_pixels():
    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]
    top, bottom = flat_tiles(colours, 8, 12), flat_tiles([(1, 2, 3), (4, 5, 6), (7, 8, 9)], 8, 12)
    text = GridText(names=["x", "y", "z"], values=[1.0, 2.0, 3.0], title="the three worst")
    a = np.asarray(labelled_grid(top, bottom, text, min_side=64))
    for c in [*colours, (1, 2, 3), (7, 8, 9)]:
        assert (a == c).all(axis=2).sum() == 64 * 96  # zoomed 8x: one whole tile of that colour, nothing else


def test_names_are_file_names_cut_to_fit():
    fnt = font(12)
    assert short_name("cats/img001.png", 200, fnt) == "img001.png"
    assert short_name("shard-0001.tar/sample_17", 200, fnt) == "sample_17"
    assert short_name("42", 200, fnt) == "42"
    long = "a_very_long_file_name_from_some_camera_0001234.jpg"
    cut = short_name(long, 70, fnt)
    assert ELLIPSIS in cut and text_width(fnt, cut) <= 70
    head, tail = cut.split(ELLIPSIS)
    assert long.startswith(head) and long.endswith(tail) and len(tail) > len(head)  # the number and extension stay


def test_counts_must_match_the_items():
    tiles = flat_tiles([(0, 0, 0), (9, 9, 9)])
    with pytest.raises(ValueError, match="names"):
        labelled_grid(tiles, tiles, GridText(names=["one"]))
    with pytest.raises(ValueError, match="MSE"):
        labelled_grid(tiles, tiles, GridText(values=[1.0, 2.0, 3.0]))


@pytest.mark.parametrize(
    ("bands", "rgb", "stretch"), [(1, None, False), (3, None, False), (4, [2, 1, 0], True), (13, [3, 2, 1], True)]
)
def test_recon_grid_labels_any_band_count(tmp_path, drawn, bands, rgb, stretch):
    rng = np.random.default_rng(bands)
    x = rng.uniform(0.1, 0.2, (3, bands, 16, 16)).astype(np.float32)  # a narrow range: the stretch spreads it
    mask = np.ones((3, 1, 16, 16), bool)
    mask[:, :, :4, :4] = False
    names = [f"scene/t{i}.tif" for i in range(3)]
    path = tmp_path / "recon.png"
    recon_grid(x, x * 0.9, path, rgb=rgb, stretch=stretch, mask=mask, text=GridText(names=names, values=[1, 2, 3]))
    assert {"t0.tif", "t2.tif", "MSE", "1", "3", *ROWS} <= set(drawn)
    a = np.asarray(Image.open(path).convert("RGB"))
    assert a.shape[0] > 2 * 64 + 2 * 12 and a.shape[1] > 3 * 64 + 60  # the tiles, the text lines, the row names
    assert (a == 0).all(axis=2).sum() >= 2 * 3 * 16 * 16  # nodata corners in black, in both rows
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 50  # the stretch shows the data, not one flat colour
