"""Tables (.csv, .parquet, 2-D arrays) train the MLP autoencoder on standardised columns."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.cli.main import main
from aekit.core.errors import AekitError
from aekit.data import load_data, tables
from aekit.training.defaults import default_epochs
from aekit.training.setup import split_indices

N, F, RANK = 600, 12, 3
COLUMNS = [f"c{j}" for j in range(F)]
FAST = ["--epochs", "10", "--quiet"]


def low_rank_table(n: int = N, seed: int = 0) -> tuple[list[str], np.ndarray, list[str]]:
    """(ids, values (n, F), colours): rank-3 structure plus noise, columns on very different scales."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, RANK)) @ rng.normal(size=(RANK, F)) + 0.1 * rng.normal(size=(n, F))
    x = x * rng.uniform(0.5, 100, F) + rng.uniform(-50, 1000, F)
    ids = [f"row-{i:04d}" for i in rng.permutation(n)]  # not in sorted order: order must be kept
    colours = [("red", "green", "blue")[i % 3] for i in range(n)]
    return ids, x, colours


def write_csv(path: Path, ids, x, colours, header=None) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header or ["id", *COLUMNS, "colour"])
        for i, row in enumerate(x):
            w.writerow([ids[i], *(f"{v:.9g}" for v in row), colours[i]])
    return path


@pytest.fixture
def table():
    return low_rank_table()


@pytest.fixture(params=["pyarrow", "stdlib"])
def csv_reader(request, monkeypatch) -> str:
    """A CSV test runs twice: with pyarrow.csv, and with pyarrow hidden (the stdlib csv reader)."""
    if request.param == "pyarrow":
        pytest.importorskip("pyarrow.csv")
    else:
        for name in ("pyarrow", "pyarrow.csv"):
            monkeypatch.setitem(sys.modules, name, None)  # `import pyarrow` raises ImportError
    return request.param


@pytest.fixture
def table_csv(tmp_path, table, csv_reader) -> Path:
    return write_csv(tmp_path / "table.csv", *table)


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_csv_trains_the_mlp_and_encode_keeps_row_ids(tmp_path, table, table_csv):
    ids, x, _ = table
    run = tmp_path / "run"
    assert main(["train", str(table_csv), *FAST, "--out", str(run)]) == 0
    s = summary(run)
    assert s["arch"] == "mlp" and s["columns"] == COLUMNS and s["id_column"] == "id"
    assert s["latent_dim"] == 3 and s["channels"] == F and s["n_images"] == N  # latent: a quarter of 12 columns
    assert s["vs_pca"] in ("better", "equal") and s["val_mse"] <= s["pca_val_mse"] * 1.005
    assert s["val_mse"] < 0.05  # rank-3 structure: 3 components explain nearly everything
    assert s["val_ssim"] is None and s["val_psnr"] is None  # no fake image metrics for a table
    assert (run / "recon.png").stat().st_size > 0

    out = tmp_path / "emb.csv"
    assert main(["encode", str(run), str(table_csv), "-o", str(out), "--quiet"]) == 0
    rows = list(csv.reader(open(out)))
    assert rows[0] == ["id", "z0", "z1", "z2"]
    assert [r[0] for r in rows[1:]] == ids  # one row per table row, in the file's order
    z = aekit.load(run).encode(x)
    np.testing.assert_allclose(np.array([r[1:] for r in rows[1:]], float), z, rtol=1e-4, atol=1e-4)


def test_parquet_trains_and_encodes(tmp_path, table):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    ids, x, colours = table
    cols = {"id": ids, **{c: x[:, j] for j, c in enumerate(COLUMNS)}, "colour": colours}
    cols["c0"] = x[:, 0].round().astype(np.int64)  # integer columns are numbers too
    pq.write_table(pa.table(cols), tmp_path / "t.parquet")
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "t.parquet"), *FAST, "--out", str(run)]) == 0
    s = summary(run)
    assert s["columns"] == COLUMNS and s["vs_pca"] in ("better", "equal")
    assert main(["encode", str(run), str(tmp_path / "t.parquet"), "-o", str(tmp_path / "z.parquet"), "--quiet"]) == 0
    out = pq.read_table(tmp_path / "z.parquet")
    assert out.column("id").to_pylist() == ids and out.num_columns == 1 + 3


def test_2d_npy_trains_and_encodes_with_row_numbers(tmp_path, table):
    _, x, _ = table
    np.save(tmp_path / "x.npy", x)  # float64
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "x.npy"), *FAST, "--out", str(run)]) == 0
    s = summary(run)
    assert s["arch"] == "mlp" and s["columns"] == [str(j) for j in range(F)] and s["id_column"] is None
    assert s["vs_pca"] in ("better", "equal")
    out = tmp_path / "z.csv"
    assert main(["encode", str(run), str(tmp_path / "x.npy"), "-o", str(out), "--quiet"]) == 0
    rows = list(csv.reader(open(out)))
    assert rows[0][0] == "row" and [r[0] for r in rows[1:]] == [str(i) for i in range(N)]


@pytest.mark.parametrize("container", ["numpy", "tensor"])
def test_in_memory_arrays_and_inference_keep_the_container(tmp_path, table, container):
    _, x, _ = table
    data = torch.from_numpy(x.astype(np.float32)) if container == "tensor" else x
    run = aekit.train(data, out=tmp_path / "run", epochs=10, verbose=False)
    assert run.summary["arch"] == "mlp" and run.summary["vs_pca"] in ("better", "equal")
    model = aekit.load(run.path)
    assert model.columns == [str(j) for j in range(F)] and model.latent_dim == 3
    z = model.encode(data)
    r = model.reconstruct(data)
    assert isinstance(z, type(data)) and isinstance(r, type(data))
    assert tuple(z.shape) == (N, 3) and tuple(r.shape) == (N, F)
    assert r.dtype == data.dtype  # float64 numpy stays float64; float32 tensor stays float32
    assert tuple(model.decode(z).shape) == (N, F) and model.reconstruct(x[0]).shape == (F,)
    # reconstructions are in the data's own units: the error is small next to each column's spread
    err = ((np.asarray(r, np.float64) - x) ** 2).mean(0) / x.var(0)
    assert err.max() < 0.05
    with pytest.raises(AekitError, match="12 columns"):
        model.encode(x[:, :5])
    bad = x.copy()
    bad[7, 2] = np.inf
    with pytest.raises(AekitError, match="NaN or Inf"):
        model.encode(bad)


def test_columns_selects_in_order_and_statistics_come_from_training_rows(tmp_path, table, table_csv):
    _, x, _ = table
    run = tmp_path / "run"
    assert main(["train", str(table_csv), *FAST, "--columns", "c3,c1,c7", "--latent-dim", "2", "--out", str(run)]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["table"]["columns"] == ["c3", "c1", "c7"] and meta["input"]["channels"] == 3
    train_rows = split_indices(N, 0.1, 0)[0].numpy()
    picked = x[train_rows][:, [3, 1, 7]]
    np.testing.assert_allclose(meta["normalization"]["mean"], picked.mean(0), rtol=1e-5)
    np.testing.assert_allclose(meta["normalization"]["std"], picked.std(0), rtol=1e-4)
    assert aekit.load(run).encode(x[:, [3, 1, 7]]).shape == (N, 2)


def test_identifier_and_skipped_columns(tmp_path, table, csv_reader):
    ids, x, colours = table
    p = write_csv(tmp_path / "t.csv", ids, x, colours)
    data = load_data(p)
    assert data.array.shape == (N, F, 1, 1) and data.array.dtype == np.float32
    assert data.ids == ids and data.columns == COLUMNS and data.id_name == "id"
    assert any("colour (non-numeric)" in note for note in data.notes)  # skipped, with a note
    # a numeric id column is the identifier, never a feature
    numeric_ids = [str(i * 7) for i in range(N)]
    p = write_csv(tmp_path / "n.csv", numeric_ids, x, colours, header=["sample_id", *COLUMNS, "colour"])
    data = load_data(p)
    assert data.columns == COLUMNS and data.ids == numeric_ids and data.id_name == "sample_id"
    # no id-like column: the first text column with unique values, else row numbers
    p = write_csv(tmp_path / "u.csv", ids, x, colours, header=["name", *COLUMNS, "colour"])
    assert load_data(p).id_name == "name"
    p = write_csv(tmp_path / "r.csv", colours, x, colours, header=["kind", *COLUMNS, "colour"])
    data = load_data(p)
    assert data.id_name is None and data.ids[:3] == ["0", "1", "2"]
    # --id-column chooses, and that column is not a feature
    data = load_data(p, id_column="c0")
    assert data.id_name == "c0" and "c0" not in data.columns and data.ids[0] == f"{x[0, 0]:.9g}"


def test_semicolon_csv_with_an_unnamed_index_column(tmp_path, table, csv_reader):
    _, x, _ = table
    p = tmp_path / "pandas.csv"
    lines = [";" + ";".join(COLUMNS[:4])] + [f"{i};" + ";".join(f"{v:.6g}" for v in row[:4]) for i, row in enumerate(x)]
    p.write_text("\n".join(lines) + "\n")
    data = load_data(p)
    assert data.columns == COLUMNS[:4] and data.ids[:2] == ["0", "1"]


def test_csv_model_encodes_an_unnamed_array_of_the_same_columns(tmp_path, table, table_csv):
    _, x, _ = table
    run = tmp_path / "run"
    assert main(["train", str(table_csv), *FAST, "--out", str(run)]) == 0
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    assert main(["encode", str(run), str(tmp_path / "x.npy"), "-o", str(tmp_path / "z.npy"), "--quiet"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), aekit.load(run).encode(x), rtol=1e-4, atol=1e-4)
    assert main(["evaluate", str(run), str(table_csv), "-o", str(tmp_path / "m.json"), "--quiet"]) == 0
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["units"] == "standardised" and res["autoencoder"]["ssim"] is None
    assert len(res["autoencoder"]["per_channel"]["mse"]) == F


def test_score_and_reconstruct_keep_row_ids(tmp_path, table, table_csv):
    ids, x, colours = table
    run = tmp_path / "run"
    assert main(["train", str(table_csv), *FAST, "--out", str(run)]) == 0
    t = json.loads((run / "model.json").read_text())["threshold"]
    assert t["metric"] == "ensemble" and set(t["by_metric"]) == {"mse", "mae", "mse+latent"}  # tables: no SSIM
    assert "standardised units" in t["by_metric"]["mse"]["explanation"]
    with open(run / "validation_scores.csv") as f:
        assert next(csv.reader(f)) == ["id", "score", "mae", "mse_plus_latent", "ensemble"]
    odd = x[:40].copy()
    odd[17] = x[17] + 8 * x.std(0) * np.where(np.arange(F) % 2, 1, -1)  # breaks the columns' structure
    new = write_csv(tmp_path / "new.csv", ids[:40], odd, colours[:40])
    assert main(["score", str(run), str(new), "-o", str(tmp_path / "s.csv"), "--quiet"]) == 0
    with open(tmp_path / "s.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "score", "is_anomaly", "rank", "top_features"] and len(rows) == 40
    assert rows[0]["id"] == ids[17] and rows[0]["is_anomaly"] == "true"  # worst first, by its id
    assert sum(r["is_anomaly"] == "true" for r in rows) <= 3
    np.testing.assert_allclose(
        sorted(float(r["score"]) for r in rows), np.sort(aekit.load(run).score(odd)), rtol=1e-4, atol=1e-7
    )
    assert main(["score", str(run), str(new), "-o", str(tmp_path / "x.csv"), "--metric", "ssim", "--quiet"]) == 2

    assert main(["reconstruct", str(run), str(table_csv), "-o", str(tmp_path / "rec"), "--quiet"]) == 0
    with open(tmp_path / "rec" / "reconstructions.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", *COLUMNS] and [r[0] for r in rows[1:]] == ids
    recon = np.array([r[1:] for r in rows[1:]], float)  # in the table's own units
    assert (((recon - x) ** 2).mean(0) / x.var(0)).max() < 0.05


def test_table_defaults_train_long_enough():
    assert default_epochs(540, 64, tabular=True) == 334  # 9 steps an epoch: 3000 steps in all
    assert default_epochs(100_000, 64, tabular=True) == 30 and default_epochs(540, 64, tabular=False) == 30


def test_a_harsh_learning_rate_still_ends_no_worse_than_pca(tmp_path, table):
    """The MLP starts at PCA ("epoch 0") and keeps that start unless training improves on it."""
    _, x, _ = table
    run = aekit.train(x, out=tmp_path / "run", epochs=3, lr=0.5, verbose=False)
    s = run.summary
    assert s["vs_pca"] in ("better", "equal") and s["val_mse"] <= s["pca_val_mse"] * 1.005


def test_mlp_learns_what_pca_cannot(tmp_path):
    """Columns that are nonlinear functions of 2 factors: the MLP must beat PCA with 2 components."""
    rng = np.random.default_rng(1)
    z = rng.uniform(-1, 1, (800, 2))
    cols = [np.sin(3 * z[:, 0]), np.cos(3 * z[:, 0]), z[:, 1] ** 2, z[:, 0] * z[:, 1], np.tanh(2 * z[:, 1])]
    x = np.stack([*cols, z[:, 0], z[:, 1]], 1) + 0.02 * rng.normal(size=(800, 7))
    run = aekit.train(x, out=tmp_path / "run", latent_dim=2, epochs=30, batch_size=32, lr=3e-3, verbose=False)
    assert run.summary["vs_pca"] == "better" and run.summary["val_mse"] < 0.5 * run.summary["pca_val_mse"]


def _bad_inputs(tmp_path: Path, table) -> dict:
    ids, x, colours = table
    good = write_csv(tmp_path / "good.csv", ids, x, colours)
    nan = x.copy()
    nan[[3, 10, 11], 4] = np.nan
    with_nan = write_csv(tmp_path / "nan.csv", ids, nan, colours)
    blanks = tmp_path / "blank.csv"
    lines = good.read_text().splitlines()
    fields = lines[5].split(",")
    fields[1 + 9], fields[1 + 10] = "", "NA"  # c9 empty, c10 "NA": both missing, in one row
    lines[5] = ",".join(fields)
    blanks.write_text("\n".join(lines) + "\n")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n")
    words = tmp_path / "words.csv"
    words.write_text("name,kind\nx,y\nz,w\n")
    nan_npy = tmp_path / "nan.npy"
    np.save(nan_npy, nan)
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((4, 8, 8), np.uint8))
    g = str(good)
    return {
        "NaN in a column": (["train", str(with_nan)], ["nan.csv", "'c4' (3 rows)", "drop or fill"]),
        "empty cells": (["train", str(blanks)], ["blank.csv", "'c9' (1 row), 'c10' (1 row)", "1 of 600 rows"]),
        "NaN in a 2-D array": (["train", str(nan_npy)], ["nan.npy", "'4' (3 rows)", "drop or fill"]),
        "non-numeric selected": (["train", g, "--columns", "c1,colour"], ["'colour' is not numeric", "'red'"]),
        "unknown column": (["train", g, "--columns", "c1,nope"], ["no column 'nope'", "c11"]),
        "unknown id column": (["train", g, "--id-column", "key"], ["no column 'key'"]),
        "conv on a table": (["train", g, "--arch", "conv"], ["--arch conv is for images", "--arch mlp"]),
        "image size on a table": (["train", g, "--image-size", "8"], ["--image-size applies to images"]),
        "columns on images": (["train", str(images), "--columns", "a"], ["--columns applies to tables"]),
        "ragged rows": (["train", str(ragged)], ["line 3 has 1 field", "header has 2"]),
        "empty file": (["train", str(empty)], ["empty.csv is empty"]),
        "no rows": (["train", str(header_only)], ["holds no rows"]),
        "no numeric column": (["train", str(words)], ["no numeric column"]),
        "missing file": (["train", str(tmp_path / "none.csv")], ["not found"]),
    }


@pytest.mark.parametrize(
    "case",
    [
        "NaN in a column",
        "empty cells",
        "NaN in a 2-D array",
        "non-numeric selected",
        "unknown column",
        "unknown id column",
        "conv on a table",
        "image size on a table",
        "columns on images",
        "ragged rows",
        "empty file",
        "no rows",
        "no numeric column",
        "missing file",
    ],
)
def test_bad_tables_are_one_line_errors(tmp_path, capsys, table, case, csv_reader):
    argv, needles = _bad_inputs(tmp_path, table)[case]
    data = Path(argv[1])
    before = data.read_bytes() if data.is_file() else None
    assert main([*argv, "--quiet", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("aekit train: error:"), err
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "run").exists()  # nothing left behind
    if before is not None:
        assert data.read_bytes() == before  # the user's data is never modified


ODD_CSVS = {  # file: (text, whether pyarrow reads it; else the stdlib reader does, and says what is wrong)
    "bom.csv": ("\ufeffid,a,b\nx1,1,2\nx2,3,4\n", True),
    "spaces.csv": ("id, a ,b\n x1 , 1.5, 2\nx2,3 ,4\n", True),
    "missing.csv": ("a,b,c\n1,na,N/a\n2,NULL,none\n3,4,-NaN\n", True),
    "all_missing.csv": ("a,b\nNA,1\nNA,2\n", True),
    "bool_and_date.csv": ("a,b,c\ntrue,1,2024-01-01\nfalse,2,2024-01-02\n", True),
    "zero_padded_ids.csv": ("sample_id,a\n007,1\n014,2\n", True),
    "ints_as_ids.csv": ("k,a\n5,1.0\n1e-05,2\n", True),
    "inf.csv": ("a,b\ninf,1\n2,1e500\n", True),
    "quoted.csv": ('name,a\n"x\ny",1\n"z,w",2\n', True),
    "underscore.csv": ("a,b\n1_000,2\n3,4\n", True),
    "huge_ints.csv": ("a,b\n123456789012345678901234567890,9007199254740993\n1,2\n", True),
    "mixed.csv": ("a,b\n1,x\n2,3\n", True),
    "ragged.csv": ("a,b\n1,2\n3\n", False),
    "empty.csv": ("", False),
    "header_only.csv": ("a,b\n", False),
    "duplicates.csv": ("a,a\n1,2\n", False),
    "one_column.csv": ("a\n1\n  \n2\n", False),
}


@pytest.mark.parametrize("name", [*ODD_CSVS, "latin1.csv"])
def test_csv_readers_agree_on_odd_files(tmp_path, name):
    """pyarrow.csv and the stdlib reader give the same columns, values, identifiers and errors."""
    pytest.importorskip("pyarrow.csv")
    path = tmp_path / name
    if name == "latin1.csv":
        path.write_bytes(b"a,b\n1,\xe9\n")
        by_arrow = False
    else:
        text, by_arrow = ODD_CSVS[name]
        path.write_text(text, encoding="utf-8")
    assert (tables._read_csv_arrow(path) is not None) == by_arrow

    def read(reader):
        try:
            cols = reader(path)
            data = tables.table_data(cols, source=str(path), columns=None, id_column=None, prefer_id=None, name=name)
        except AekitError as e:
            return str(e)
        cells = [c.cells() for c in cols]
        return data.array.tobytes(), data.ids, data.columns, data.id_name, data.notes, cells

    assert read(tables.read_csv) == read(tables.read_csv_stdlib)
