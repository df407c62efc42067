"""`aekit reconstruct`: files mirroring the input tree, side-by-side pictures, a safe output folder."""

import hashlib

import numpy as np
import pytest
from PIL import Image

import aekit
from aekit.cli.main import main


def digest(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def run(rgb_run):
    """A model trained on the same images as rgb_folder, shared by the session."""
    return rgb_run[1]


def test_reconstructions_mirror_the_tree_and_match_the_model(run, rgb_folder, tmp_path):
    before = digest(rgb_folder)
    out = tmp_path / "recon"
    assert main(["reconstruct", str(run), str(rgb_folder), "-o", str(out), "--compare", "--quiet"]) == 0
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png") if "compare" not in p.parts)
    assert pngs == sorted(f"{d}/img{i:03d}.png" for d in "ab" for i in range(10))
    model = aekit.load(run)
    original = np.asarray(Image.open(rgb_folder / "b" / "img003.png"))
    written = np.asarray(Image.open(out / "b" / "img003.png"))
    assert written.shape == original.shape and written.dtype == np.uint8
    np.testing.assert_array_equal(written, model.reconstruct(original[None])[0])
    side = Image.open(out / "compare" / "b" / "img003.png")
    assert side.size == (2 * 24 + 2, 20)
    np.testing.assert_array_equal(np.asarray(side)[:, :24], original)
    assert digest(rgb_folder) == before  # the input is never touched


def test_output_folder_rules(run, rgb_folder, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("the user's file")
    assert main(["reconstruct", str(run), str(rgb_folder), "-o", str(foreign), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    inside = rgb_folder / "recon"
    assert main(["reconstruct", str(run), str(rgb_folder), "-o", str(inside), "--quiet"]) == 2
    assert "inside the input folder" in capsys.readouterr().err and not inside.exists()
    ours = tmp_path / "ours"
    assert main(["reconstruct", str(run), str(rgb_folder), "-o", str(ours), "--quiet"]) == 0
    assert main(["reconstruct", str(run), str(rgb_folder), "-o", str(ours), "--quiet"]) == 0  # again: fine


def test_sixteen_bit_gray_stays_sixteen_bit(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "g16"
    folder.mkdir()
    for i in range(12):
        Image.fromarray((rng.random((12, 12)) * 65535).astype(np.uint16)).save(folder / f"{i}.png")
    aekit.train(folder, epochs=1, latent_dim=4, width=8, verbose=False, out=tmp_path / "run")
    aekit.reconstruct(tmp_path / "run", folder, tmp_path / "out", verbose=False)
    im = Image.open(tmp_path / "out" / "3.png")
    assert im.mode.startswith("I") and np.asarray(im).max() > 255


def test_arrays_give_one_npy(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (30, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    aekit.train(x, epochs=1, latent_dim=4, width=8, verbose=False, out=tmp_path / "run")
    assert (
        main(["reconstruct", str(tmp_path / "run"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "o"), "--quiet"]) == 0
    )
    recon = np.load(tmp_path / "o" / "reconstructions.npy")
    assert recon.shape == (30, 1, 16, 16) and recon.dtype == np.uint8
    np.testing.assert_array_equal(recon[:, 0], aekit.load(tmp_path / "run").reconstruct(x))
