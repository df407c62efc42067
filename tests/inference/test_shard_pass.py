"""aekit encode and score over tar shards (inference/shard_pass.py): read on the fly, one batch at a time."""

import csv
import io
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from aekit.cli.main import main
from aekit.data.stream import write_shards
from aekit.inference.shard_pass import _highest
from tests.conftest import smooth_images, tree_digest, write_pngs

ARGS = ["--latent-dim", "4", "--width", "8", "--batch-size", "16", "--seed", "3", "--precision", "fp32", "--quiet"]


def rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture
def trained(tmp_path):
    """A run trained on a folder of 90 images, and the same images as 3 tar shards (40, 40, 10
    samples) with a corrupt member added to the second."""
    folder = tmp_path / "imgs"
    write_pngs(folder, smooth_images(90, 16, 16, 3, seed=4))
    shards = tmp_path / "shards"
    write_shards(folder, shards, per_shard=40)
    with tarfile.open(shards / "data-000001.tar", "a") as tar:
        info = tarfile.TarInfo("zzz.png")
        info.size = 9
        tar.addfile(info, io.BytesIO(b"not a png"))
    run = tmp_path / "run"
    assert main(["train", str(folder), *ARGS, "--epochs", "1", "--out", str(run)]) == 0
    return run, folder, shards


def test_encode_and_score_read_shards_like_the_folder_they_were_made_from(trained, tmp_path):
    run, folder, shards = trained
    out = {}
    for name, data in (("folder", folder), ("shards", shards)):  # batch 7: batches span shards
        for cmd in ("encode", "score"):
            path = tmp_path / f"{cmd}-{name}.csv"
            argv = [cmd, str(run), str(data), "-o", str(path), "--batch-size", "7", "--precision", "fp32", "--quiet"]
            assert main(argv) == 0
            out[cmd, name] = rows(path)
    z_folder, z_shards = out["encode", "folder"], out["encode", "shards"]
    assert z_shards[0][0] == "key" and len(z_shards) == len(z_folder) == 91  # the corrupt member left out
    assert [r[0] for r in z_shards[1:4]] == [
        "data-000000.tar/000000",
        "data-000000.tar/000001",
        "data-000000.tar/000002",
    ]
    codes = [np.array([r[1:] for r in z[1:]], float) for z in (z_shards, z_folder)]
    np.testing.assert_allclose(*codes, rtol=1e-4, atol=1e-5)  # row by row: the shards keep the sorted order
    key_of = {p.name: f"data-{i // 40:06d}.tar/{i:06d}" for i, p in enumerate(sorted(folder.glob("*.png")))}
    folder_scores = {key_of[r[0].rsplit("/", 1)[-1]]: float(r[1]) for r in out["score", "folder"][1:]}
    shard_scores = {r[0]: float(r[1]) for r in out["score", "shards"][1:]}
    assert shard_scores.keys() == folder_scores.keys()
    for key, value in shard_scores.items():
        assert value == pytest.approx(folder_scores[key], rel=1e-4)
    summary = json.loads((tmp_path / "score-shards_summary.json").read_text())
    assert summary["n_items"] == 90 and [s["path"] for s in summary["skipped"]] == ["data-000001.tar/zzz"]
    assert (tmp_path / "score-shards_worst.png").stat().st_size > 0
    assert summary["threshold"] == json.loads((tmp_path / "score-folder_summary.json").read_text())["threshold"]


def test_the_worst_items_kept_while_streaming_are_the_highest_scores(trained):
    import aekit
    from aekit.core import distributed
    from aekit.inference.shard_pass import shard_pass

    run, folder, shards = trained
    model = aekit.load(run)
    got = shard_pass(
        model,
        shards,
        lambda x: model.score(x, layout="NCHW"),
        batch_size=7,
        ctx=distributed.Context(),
        verbose=False,
        keep=5,
    )
    order = np.argsort(-got.values, kind="stable")[:5]
    np.testing.assert_array_equal(got.top_values, got.values[order])
    recomputed = model.score(got.top_x, layout="NCHW")
    np.testing.assert_allclose(recomputed, got.top_values, rtol=1e-5)  # the pixels belong to those scores


def test_highest_merges_pairs_and_leaves_out_empty_ones():
    x = np.arange(6)[:, None]
    v = np.array([0.1, 0.9, 0.5, 0.9, 0.2, 0.7])
    top_x, top_v = _highest([(None, None), (x[:2], v[:2]), (x[2:], v[2:]), (x[:0], v[:0])], 3)
    assert top_v.tolist() == [0.9, 0.9, 0.7] and top_x[:, 0].tolist() == [1, 3, 5]  # ties: the earlier first
    assert _highest([(None, None)], 3) == (None, None)


def test_shards_with_no_readable_sample_are_one_line_exit_2(trained, tmp_path, capsys):
    run, _, _ = trained
    (tmp_path / "bad").mkdir()
    with tarfile.open(tmp_path / "bad" / "bad.tar", "w") as tar:
        info = tarfile.TarInfo("a.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    before = tree_digest(tmp_path / "bad")
    capsys.readouterr()
    assert main(["encode", str(run), str(tmp_path / "bad" / "bad.tar"), "-o", str(tmp_path / "z.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no readable image sample" in err and "Traceback" not in err
    assert not (tmp_path / "z.csv").exists() and tree_digest(tmp_path / "bad") == before


def test_two_gloo_processes_encode_shards_into_one_output(trained, tmp_path):
    """Rank 0 reads shards 0 and 2, rank 1 shard 1: one file, every item once, the same codes."""
    run, _, shards = trained
    one = tmp_path / "one.csv"
    assert main(["encode", str(run), str(shards), "-o", str(one), "--precision", "fp32", "--quiet"]) == 0
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "aekit"]
    two = tmp_path / "two.csv"
    subprocess.run([*torchrun, "encode", str(run), str(shards), "-o", str(two), "--precision", "fp32", "--quiet"],
                   check=True)  # fmt: skip
    a = {r[0]: np.array(r[1:], float) for r in rows(one)[1:]}
    b = {r[0]: np.array(r[1:], float) for r in rows(two)[1:]}
    assert len(rows(two)) == 91 and a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5)


def test_commands_that_need_a_folder_say_so_for_shards(trained, tmp_path, capsys):
    run, _, shards = trained
    before = tree_digest(shards)
    capsys.readouterr()
    for cmd in (["reconstruct", str(run), str(shards), "-o", str(tmp_path / "r")], ["evaluate", str(run), str(shards)]):
        assert main([*cmd, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "holds tar shards" in err and "tar -xf" in err
    assert not (tmp_path / "r").exists() and tree_digest(shards) == before
