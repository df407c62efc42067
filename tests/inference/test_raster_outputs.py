"""GeoTIFF out: a large raster tiled, reconstructed and stitched back; error maps; the CLI."""

import csv
import json

import numpy as np
import pytest
import rasterio

import aekit
from aekit.cli.main import main
from aekit.core.errors import AekitError
from aekit.data import load_data
from aekit.data.rasters import RasterOptions
from aekit.inference.raster_outputs import blend_window, error_map_raster, reconstruct_raster
from tests.rasters import smooth_bands, write_raster

H, W, P = 160, 200, 32


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 4-band uint16 160x200 raster with a nodata corner, and a model trained on its patches."""
    root = tmp_path_factory.mktemp("scene")
    arr = smooth_bands(4, H, W, seed=11)
    arr[:, 120:, :40] = 0
    path = write_raster(root / "big.tif", arr, nodata=0)
    aekit.train(
        path,
        patch_size=P,
        epochs=1,
        latent_dim=8,
        width=8,
        batch_size=16,
        out=root / "run",
        verbose=False,
        cache_dir=None,
    )
    return {"root": root, "path": path, "arr": arr, "run": root / "run", "model": aekit.load(root / "run")}


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile


def test_blend_window_adds_up_to_one_at_half_overlap():
    w = blend_window(8, 8)
    assert (w > 0).all()
    shifted = w[:, :4] + w[:, 4:]  # the right half of one patch under the left half of the next
    assert np.allclose(shifted[4], shifted[4, 0])


def test_large_raster_tiled_and_stitched_back(scene, tmp_path):
    out = tmp_path / "recon.tif"
    reconstruct_raster(scene["model"], scene["path"], out)
    recon, profile = _read(out)
    src, src_profile = _read(scene["path"])
    for key in ("crs", "transform", "width", "height", "count", "dtype", "nodata"):
        assert profile[key] == src_profile[key], key
    arr = scene["arr"]
    nodata = (arr == 0).all(0)
    assert (recon[:, nodata] == 0).all()  # nodata stays nodata
    assert (recon[:, ~nodata] > 0).all()

    # the stitched raster is as good as the model is on its own patches
    grid = load_data(scene["path"], raster=RasterOptions(patch_size=P), grid=True, cache_dir=None)
    per_patch = scene["model"].reconstruct(grid.array, layout="NCHW").astype(np.float64)
    mask = np.ones((len(grid), 1, P, P), bool) if grid.mask is None else grid.mask
    patch_mse = (((per_patch - grid.array) ** 2) * mask).sum() / (mask.sum() * 4)
    err = ((recon.astype(np.float64) - arr) ** 2).mean(0)
    stitched_mse = err[~nodata].mean()
    assert stitched_mse < 1.2 * patch_mse

    # no seams: pixels along the patch borders are reconstructed about as well as the others
    def border_ratio(e):
        border = np.zeros((H, W), bool)
        border[:, [c for b in range(P, W, P) for c in (b - 1, b)]] = True
        border[[r for b in range(P, H, P) for r in (b - 1, b)]] = True
        return e[border & ~nodata].mean() / e[~border & ~nodata].mean()

    assert border_ratio(err) < 1.3
    reconstruct_raster(scene["model"], scene["path"], tmp_path / "no_overlap.tif", stride=P)
    hard = ((_read(tmp_path / "no_overlap.tif")[0].astype(np.float64) - arr) ** 2).mean(0)
    assert border_ratio(hard) > border_ratio(err)  # abutting patches without blending show their edges


def test_error_map(scene, tmp_path):
    out = tmp_path / "err.tif"
    res = error_map_raster(scene["model"], scene["path"], out, stride=P)
    err, profile = _read(out)
    _, src_profile = _read(scene["path"])
    assert profile["count"] == 1 and profile["dtype"] == "float32" and np.isnan(profile["nodata"])
    assert profile["crs"] == src_profile["crs"] and profile["transform"] == src_profile["transform"]
    nodata = (scene["arr"] == 0).all(0)
    assert np.isnan(err[0][nodata]).all() and np.isfinite(err[0][~nodata]).all()
    assert res["valid_pixels"] == (~nodata).sum()
    # with stride = patch, the top-left patch's pixels come from that patch alone
    m = scene["model"]
    x = scene["arr"][None, :, :P, :P].astype(np.float32)
    std = np.asarray(m.meta["normalization"]["std"]).reshape(1, -1, 1, 1) * m.scale
    y = m.reconstruct(x, layout="NCHW")
    expected = (((y - x) / std) ** 2).mean(1)[0]
    assert np.allclose(err[0][:P, :P], expected, rtol=1e-3, atol=1e-7)


def test_raster_smaller_than_a_patch_and_mismatched_inputs(scene, tmp_path):
    """A raster smaller than a patch still comes back whole; another type or band count is refused."""
    small = smooth_bands(4, 20, 25, seed=12).astype(np.uint16)
    src = write_raster(tmp_path / "small.tif", small, nodata=0)
    reconstruct_raster(scene["model"], src, tmp_path / "small_recon.tif")
    recon, profile = _read(tmp_path / "small_recon.tif")
    assert recon.shape == (4, 20, 25) and profile["dtype"] == "uint16"
    wrong = write_raster(tmp_path / "float.tif", small.astype(np.float32))
    with pytest.raises(AekitError, match="float32 values but the model was trained on uint16"):
        reconstruct_raster(scene["model"], wrong, tmp_path / "x.tif")
    three = write_raster(tmp_path / "three.tif", small[:3].copy())
    with pytest.raises(AekitError, match="has 3 bands"):
        reconstruct_raster(scene["model"], three, tmp_path / "x.tif")


def test_float_raster_nan_stays_nan(tmp_path):
    tiles = tmp_path / "tiles"
    for i in range(8):
        a = smooth_bands(2, 16, 16, seed=i, dtype=np.float32, base=-20, gain=40)  # e.g. temperatures
        a[:, :3, :3] = np.nan
        write_raster(tiles / f"t{i}.tif", a)
    aekit.train(tiles, epochs=1, latent_dim=4, width=8, out=tmp_path / "run", verbose=False)
    recon, profile = _read(reconstruct_raster(tmp_path / "run", tiles / "t0.tif", tmp_path / "r.tif")["output"])
    assert profile["dtype"] == "float32" and np.isnan(profile["nodata"])
    assert np.isnan(recon[:, :3, :3]).all() and np.isfinite(recon[:, 3:, 3:]).all()
    assert recon[:, 3:, 3:].min() < 0  # own units: no clamp to [0, 1] or [0, 255]


def test_cli_reconstruct_and_score_write_geotiffs(scene, tmp_path, capsys):
    run, path = str(scene["run"]), str(scene["path"])
    out = tmp_path / "recon"
    assert main(["reconstruct", run, path, "-o", str(out), "--quiet"]) == 0
    recon, profile = _read(out / "big.tif")
    assert recon.shape == (4, H, W) and profile["crs"].to_string() == "EPSG:32633"
    assert main(["score", run, path, "-o", str(tmp_path / "err.tif"), "--quiet"]) == 0
    err, profile = _read(tmp_path / "err.tif")
    assert err.shape == (1, H, W) and profile["dtype"] == "float32"
    # beside the error map, the tiles' scores and flags, worst first, with the threshold of the run
    tiles = list(csv.DictReader(open(tmp_path / "err_tiles.csv")))
    assert len(tiles) > 20 and tiles[0]["path"].startswith("big.tif[") and tiles[0]["rank"] == "1"
    assert {t["is_anomaly"] for t in tiles} <= {"true", "false"}
    summary = json.loads((tmp_path / "err_tiles_summary.json").read_text())
    assert summary["error_maps"]["rasters"][0]["output"] == str(tmp_path / "err.tif")
    assert summary["threshold"]["value"] == json.loads((scene["run"] / "model.json").read_text())["threshold"]["value"]
    assert aekit.score(scene["run"], path, tmp_path / "maps").ids[0].startswith("big.tif[")  # a folder of maps
    assert (tmp_path / "maps" / "big_error.tif").is_file() and (tmp_path / "maps" / "tiles.csv").is_file()
    # a table instead: one score per grid patch, nodata left out
    assert main(["score", run, path, "-o", str(tmp_path / "scores.csv"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "scores_summary.json").read_text())
    assert summary["n_items"] > 20
    rows = (tmp_path / "scores.csv").read_text().splitlines()
    assert rows[1].split(",")[0].startswith('"big.tif[')


def test_image_model_on_a_raster_says_what_to_do(tmp_path, gray28):
    aekit.train(gray28, epochs=1, latent_dim=4, width=8, out=tmp_path / "run", verbose=False)
    src = write_raster(tmp_path / "r.tif", smooth_bands(1, 28, 28))
    with pytest.raises(AekitError, match="trained on images, not rasters"):
        reconstruct_raster(tmp_path / "run", src, tmp_path / "x.tif")
