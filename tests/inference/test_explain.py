"""Why an item is flagged: error maps of images (aekit score --maps), the columns that make a table
row odd (top_features), and Autoencoder.explain behind both."""

from __future__ import annotations

import csv

import numpy as np
from PIL import Image

import aekit
from aekit.cli.main import main
from tests.conftest import smooth_images, unchanged, write_pngs


def test_error_maps_are_brightest_where_a_defect_was_pasted(tmp_path, capsys):
    train = write_pngs(tmp_path / "train", smooth_images(120, 24, 24, 1, seed=0))
    run = aekit.train(tmp_path / "train", max_steps=300, latent_dim=8, out=tmp_path / "run").path
    clean = smooth_images(6, 24, 24, 1, seed=1)
    stained = clean.copy()
    stained[:, 14:20, 4:10] = 255  # a bright 6x6 stain, away from the centre
    write_pngs(tmp_path / "new" / "good", clean)
    write_pngs(tmp_path / "new" / "bad", stained)
    errors = aekit.load(run).explain(stained[..., 0])  # (N, H, W)
    stain = np.zeros((24, 24), bool)
    stain[14:20, 4:10] = True
    assert errors[:, stain].mean() > 10 * errors[:, ~stain].mean()
    assert all(stain[np.unravel_index(e.argmax(), e.shape)] for e in errors)  # brightest inside the stain
    out, maps = tmp_path / "s.csv", tmp_path / "maps"
    with unchanged(tmp_path / "new", *train):
        argv = ["score", str(run), str(tmp_path / "new"), "-o", str(out), "--maps", str(maps), "--maps-limit", "4"]
        assert main(argv) == 0
    rows = list(csv.DictReader(open(out)))
    flagged = [r["path"] for r in rows if r["is_anomaly"] == "true"]
    assert flagged and all(p.startswith("bad/") for p in flagged[:4])  # the stained ones score highest
    written = sorted(p.relative_to(maps).as_posix() for p in maps.rglob("*.png"))
    assert written == sorted(flagged[:4]) and "error maps of 4 flagged item(s)" in capsys.readouterr().err
    picture = Image.open(maps / flagged[0])
    assert picture.width > 2 * picture.height  # input | reconstruction | error, side by side
    assert main(["score", str(run), str(tmp_path / "new"), "-o", str(out), "--maps", str(tmp_path / "new" / "m")]) == 2
    assert "inside the input folder" in capsys.readouterr().err


def test_top_features_name_the_column_that_was_changed(tmp_path):
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(2, 6))
    rows = (rng.normal(size=(400, 2)) @ mix + 0.05 * rng.normal(size=(400, 6))).astype(np.float32)
    names = ["temp", "pressure", "flow", "speed", "load", "power"]
    header = ",".join(names)
    (tmp_path / "t.csv").write_text(header + "\n" + "\n".join(",".join(f"{v:.5f}" for v in r) for r in rows) + "\n")
    run = aekit.train(tmp_path / "t.csv", max_steps=400, out=tmp_path / "run").path
    test = rows[:20].copy()
    test[:10, 2] += 8 * rows[:, 2].std()  # flow far off in the first ten rows
    (tmp_path / "new.csv").write_text(header + "\n" + "\n".join(",".join(f"{v:.5f}" for v in r) for r in test) + "\n")
    res = aekit.score(run, tmp_path / "new.csv")
    assert [t.split(";")[0] for t in res.top_features[:10]] == ["flow"] * 10
    assert all(len(t.split(";")) <= 3 for t in res.top_features)
    aekit.score(run, tmp_path / "new.csv", tmp_path / "s.csv")
    table = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert list(table[0]) == ["row", "score", "is_anomaly", "rank", "top_features"]
    assert {r["top_features"].split(";")[0] for r in table[:10]} == {"flow"}  # worst first: the changed rows
    shares = aekit.load(run).explain(test)
    assert shares.shape == (20, 6) and np.allclose(shares.sum(1), 1.0)
