"""Rasters read with rasterio: tiles and patches, bands, nodata, statistics, cache, bad input."""

import json
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from aekit.cli.main import main
from aekit.core.errors import AekitError
from aekit.core.plots import preview_channels, to_display
from aekit.data import load_data
from aekit.data.normalize import channel_stats
from aekit.data.rasters import MAX_NODATA, RasterOptions, fill_patch, read_rasters, use_rasterio
from aekit.models.base import AEOutput, mse_terms
from tests.conftest import FAST, unchanged
from tests.rasters import smooth_bands, tile_folder, write_raster


def test_13_band_uint16_tiles_with_nodata_train_end_to_end(tmp_path):
    tiles = tile_folder(tmp_path / "tiles", n=12, c=13, size=32, nodata=0)
    run = tmp_path / "run"
    t0 = time.perf_counter()
    assert main(["train", str(tiles), *FAST, "--out", str(run)]) == 0
    seconds = time.perf_counter() - t0
    s = json.loads((run / "summary.json").read_text())
    meta = json.loads((run / "model.json").read_text())
    assert s["channels"] == 13 and s["image_size"] == [32, 32] and s["n_images"] == 12
    assert meta["input"]["dtype"] == "uint16"
    assert meta["raster"]["bands"] == list(range(1, 14)) and meta["raster"]["file_nodata"] == 0
    assert meta["raster"]["crs"] == "EPSG:32633"
    norm = meta["normalization"]
    assert norm["scale"] == 1.0  # raw units, never /255 or /65535
    assert all(m > 500 for m in norm["mean"])  # nodata zeros would pull the means below the data's floor
    assert np.isfinite(s["val_mse"]) and (run / "recon.png").is_file()
    print(f"13-band tiles, train end to end: {seconds:.2f} s")


def test_band_statistics_ignore_nodata(tmp_path):
    rng = np.random.default_rng(3)
    arr = rng.integers(100, 200, (2, 16, 16)).astype(np.int16)
    arr[1] += 1000
    holes = rng.random((16, 16)) < 0.3
    arr[:, holes] = -9999
    write_raster(tmp_path / "a.tif", arr, nodata=-9999)
    data = read_rasters(tmp_path / "a.tif", RasterOptions(), show_progress=False)
    assert data.array.dtype == np.int16 and data.scale == 1.0
    assert np.array_equal(data.mask[0, 0], ~holes)
    mean, std = channel_stats(data.array, data.scale, mask=data.mask)
    valid = arr[:, ~holes].astype(np.float64)
    assert np.allclose(mean, valid.mean(axis=1)) and np.allclose(std, valid.std(axis=1))


def test_masked_loss_ignores_nodata_pixels():
    g = torch.Generator().manual_seed(0)
    recon, target = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    mask = torch.rand(4, 1, 8, 8, generator=g) > 0.4
    out = AEOutput(recon, torch.zeros(4, 2))
    loss = mse_terms(out, target, mask)["loss"]
    changed = torch.where(mask, target, torch.full_like(target, 1e6))  # new values at nodata pixels only
    assert torch.equal(loss, mse_terms(out, changed, mask)["loss"])
    assert torch.allclose(loss, ((recon - target)[mask.expand_as(target)] ** 2).mean())
    assert mse_terms(out, changed)["loss"] > 1e6  # unmasked, they would dominate


def test_training_step_ignores_nodata_targets():
    """compute.train_step with a mask: the same loss and the same update whatever the nodata pixels hold."""
    from aekit.core.compute import compute_settings
    from aekit.models import create_model
    from aekit.training.step import train_step

    g = torch.Generator().manual_seed(1)
    xn = torch.randn(4, 3, 16, 16, generator=g)
    mask = torch.rand(4, 1, 16, 16, generator=g) > 0.3
    other = torch.where(mask, xn, torch.randn(4, 3, 16, 16, generator=g) * 100)
    results = []
    for target in (xn, other):
        torch.manual_seed(0)
        model = create_model("conv", in_shape=(3, 16, 16), latent_dim=4, width=8)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        terms = train_step(model, opt, xn, compute_settings(torch.device("cpu"), "fp32"), target=target, mask=mask)
        results.append((terms["loss"], [p.detach().clone() for p in model.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_nodata_values_do_not_reach_the_model(tmp_path):
    """NaN holes and -9999 holes read to the same items: what fills nodata depends on valid pixels only."""
    arr = smooth_bands(3, 24, 24, seed=1, dtype=np.float32)
    holes = np.zeros((24, 24), bool)
    holes[5:9, 3:15] = True
    a, b = arr.copy(), arr.copy()
    a[:, holes] = np.nan
    b[:, holes] = -9999.0
    write_raster(tmp_path / "nan" / "x.tif", a)
    write_raster(tmp_path / "value" / "x.tif", b, nodata=-9999.0)
    da = read_rasters(tmp_path / "nan", RasterOptions(), show_progress=False)
    db = read_rasters(tmp_path / "value", RasterOptions(), show_progress=False)
    assert np.array_equal(da.mask, db.mask) and np.array_equal(da.mask[0, 0], ~holes)
    assert np.array_equal(da.array, db.array) and np.isfinite(da.array).all()
    lo, hi = arr.min(), arr.max()
    assert (da.array[0][:, holes] >= lo).all() and (da.array[0][:, holes] <= hi).all()  # filled from neighbours


def test_fill_patch_leaves_valid_pixels_and_spreads_inwards():
    values = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    valid = np.ones((6, 6), bool)
    valid[:, :3] = False
    out = fill_patch(values, valid)
    assert np.array_equal(out[:, valid], values[:, valid])
    assert np.allclose(out[:, :, 2], values[:, :, 3])  # the first nodata column copies its valid neighbour
    assert np.array_equal(fill_patch(values, np.zeros((6, 6), bool), np.array([7.0, 9.0]))[:, 0, 0], [7.0, 9.0])


def test_bands_selection(tmp_path):
    arr = np.stack([np.full((20, 20), 100 * (b + 1), np.uint16) for b in range(6)])
    arr += smooth_bands(1, 20, 20, seed=2).astype(np.uint16)
    write_raster(tmp_path / "r" / "a.tif", arr)
    write_raster(tmp_path / "r" / "b.tif", arr[:, ::-1].copy())
    data = load_data(tmp_path / "r", raster=RasterOptions(bands=[4, 3, 2]), cache_dir=None, show_progress=False)
    assert data.shape == (3, 20, 20) and data.raster["bands"] == [4, 3, 2]
    assert np.array_equal(data.array[0], arr[[3, 2, 1]])
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "r"), "--bands", "4,3,2", *FAST, "--out", str(run)]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["raster"]["bands"] == [4, 3, 2] and meta["input"]["channels"] == 3
    assert main(["train", str(tmp_path / "r"), "--bands", "2", "7", *FAST, "--out", str(tmp_path / "x")]) == 2


def test_patches_random_for_training_grid_for_inference_read_through_windows(tmp_path, monkeypatch):
    import aekit.data.rasters as rasters

    write_raster(tmp_path / "big.tif", smooth_bands(4, 70, 90, seed=5))
    windows = []
    real_open = rasters.open_raster

    class Recorder:
        def __init__(self, src):
            self.src = src

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.src.close()

        def __getattr__(self, name):
            return getattr(self.src, name)

        def read(self, *args, window=None, **kw):
            windows.append(None if window is None else (int(window.height), int(window.width)))
            return self.src.read(*args, window=window, **kw)

    monkeypatch.setattr(rasters, "open_raster", lambda p: Recorder(real_open(p)))
    train = read_rasters(tmp_path / "big.tif", RasterOptions(patch_size=32, seed=1), show_progress=False)
    grid = read_rasters(tmp_path / "big.tif", RasterOptions(patch_size=32), grid=True, show_progress=False)
    assert windows and set(windows) == {(32, 32)}  # every read is one patch-sized window
    assert len(grid) == 3 * 3  # rows 0, 32, 38; columns 0, 32, 58 (the last flush with the edge)
    assert grid.ids[:3] == ["big.tif[0:32,0:32]", "big.tif[0:32,32:64]", "big.tif[0:32,58:90]"]
    assert len(train) == len(grid) and train.ids != grid.ids  # as many patches, at random positions
    again = read_rasters(tmp_path / "big.tif", RasterOptions(patch_size=32, seed=1), show_progress=False)
    assert again.ids == train.ids  # seeded


def test_mostly_nodata_patches_are_skipped(tmp_path):
    arr = smooth_bands(2, 32, 64, seed=6)
    arr[:, :, 32 + 8 :] = 0  # the right patch is 75% nodata
    write_raster(tmp_path / "a.tif", arr, nodata=0)
    data = read_rasters(tmp_path / "a.tif", RasterOptions(patch_size=32), grid=True, show_progress=False)
    assert MAX_NODATA == 0.5
    assert data.ids == ["a.tif[0:32,0:32]"]
    assert any("more than 50% nodata" in n for n in data.notes)


def test_plain_tiffs_without_georeferencing(tmp_path):
    arr = smooth_bands(5, 24, 24, seed=7)
    write_raster(tmp_path / "plain" / "five.tif", arr, georef=False)
    assert use_rasterio(tmp_path / "plain", RasterOptions())  # 5 bands: Pillow cannot
    data = load_data(tmp_path / "plain", cache_dir=None, show_progress=False)
    assert data.shape == (5, 24, 24) and data.raster["crs"] is None
    assert np.array_equal(data.array[0], arr)
    rgb = tmp_path / "photo"
    rgb.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(rgb / "p.tif")
    assert not use_rasterio(rgb, RasterOptions())  # an 8-bit RGB TIFF stays an image
    assert use_rasterio(rgb, RasterOptions(bands=[1]))  # unless a raster option asks otherwise


def test_raster_cache_keeps_native_type_and_is_keyed_by_options(tmp_path):
    tile_folder(tmp_path / "t", n=3, c=4, size=16, nodata=0)
    cache = tmp_path / "cache"
    first = load_data(tmp_path / "t", raster=RasterOptions(), cache_dir=cache, show_progress=False)
    entries = [p for p in cache.iterdir() if p.is_dir()]
    assert len(entries) == 1
    stored = np.load(entries[0] / "data.npy", mmap_mode="r")
    assert stored.dtype == np.uint16 and stored.shape == (3, 4, 16, 16)
    again = load_data(tmp_path / "t", raster=RasterOptions(), cache_dir=cache, show_progress=False)
    assert any("reused from the cache" in n for n in again.notes)
    assert np.array_equal(again.array, first.array) and np.array_equal(again.mask, first.mask)
    load_data(tmp_path / "t", raster=RasterOptions(bands=[1, 2]), cache_dir=cache, show_progress=False)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2


def test_a_corrupt_raster_cache_entry_is_detected_and_rebuilt(tmp_path, capsys):
    from tests.data.test_cache import flip_byte

    tile_folder(tmp_path / "t", n=3, c=4, size=16, nodata=0)
    cache = tmp_path / "cache"
    first = load_data(tmp_path / "t", raster=RasterOptions(), cache_dir=cache, show_progress=False)
    (entry,) = [p for p in cache.iterdir() if p.is_dir()]
    assert (entry / "mask.npy").is_file()
    flip_byte(entry / "mask.npy", 100)
    capsys.readouterr()
    with unchanged(tmp_path / "t"):
        again = load_data(tmp_path / "t", raster=RasterOptions(), cache_dir=cache, show_progress=False)
    err = capsys.readouterr().err
    assert "is corrupt: mask.npy does not match its checksum" in err and "rebuilding it" in err
    assert not any("reused" in n for n in again.notes)
    assert np.array_equal(again.array, first.array) and np.array_equal(again.mask, first.mask)


@pytest.mark.parametrize(
    "case,needles",
    [
        ("bands", ["b.tif", "4 bands", "--bands"]),
        ("dtype", ["b.tif", "float32", "gdal_translate"]),
        ("crs", ["b.tif", "EPSG:4326", "gdalwarp"]),
    ],
)
def test_bad_rasters_give_one_clear_line(tmp_path, capsys, case, needles):
    folder = tmp_path / "mixed"
    write_raster(folder / "a.tif", smooth_bands(3, 16, 16))
    other = {
        "bands": dict(arr=smooth_bands(4, 16, 16)),
        "dtype": dict(arr=smooth_bands(3, 16, 16, dtype=np.float32)),
        "crs": dict(arr=smooth_bands(3, 16, 16), crs="EPSG:4326"),
    }[case]
    write_raster(folder / "b.tif", other.pop("arr"), **other)
    with unchanged(folder):
        assert main(["train", str(folder), *FAST, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_missing_rasterio_says_how_to_install(tmp_path, monkeypatch):
    write_raster(tmp_path / "a.tif", smooth_bands(3, 8, 8))
    monkeypatch.setitem(sys.modules, "rasterio", None)  # import rasterio now raises ImportError
    with pytest.raises(AekitError, match=r"pip install 'aekit\[geo\]'"):
        use_rasterio(tmp_path / "a.tif", RasterOptions(bands=[1]))


def test_raster_flags_parse_and_validate():
    from aekit.cli.main import build_parser
    from aekit.config.train import make_config

    args = build_parser().parse_args(["train", "x", "--bands", "4,3,2", "--rgb-bands", "4", "3", "2", "--nodata", "0"])
    assert args.bands == [4, 3, 2] and args.rgb_bands == [4, 3, 2] and args.nodata == 0.0
    assert make_config(bands="8,4,3", patch_size=64, stride=32).bands == [8, 4, 3]
    for bad in (dict(bands=[0]), dict(bands=[2, 2]), dict(rgb_bands=[1, 2]), dict(bands=[1, 2], rgb_bands=[3, 2, 1])):
        with pytest.raises(AekitError):
            make_config(**bad)


def test_previews_show_chosen_bands_stretched_and_gray_as_gray():
    assert preview_channels([4, 3, 2], [8, 4, 3, 2], 4) == [1, 2, 3]
    assert preview_channels(None, None, 13) is None
    with pytest.raises(AekitError, match="band 9"):
        preview_channels([9, 3, 2], None, 4)
    rng = np.random.default_rng(0)
    x = rng.uniform(1000, 1100, (2, 5, 8, 8)).astype(np.float32)  # raw units, far outside [0, 1]
    from aekit.core.plots import pick_channels, stretch_limits

    limits = stretch_limits(pick_channels(x, [4, 0, 1]))
    shown = to_display(x, [4, 0, 1], limits)
    assert shown.shape == (2, 8, 8, 3)
    assert 0.02 < (shown == 0).mean() < 0.06 and 0.02 < (shown == 255).mean() < 0.06  # 2-98% clipped
    assert np.corrcoef(shown[..., 0].ravel(), x[:, 4].ravel())[0, 1] > 0.9  # red is band 5
    gray = to_display(rng.uniform(0, 1, (1, 1, 4, 4)))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_a_stray_raster_does_not_turn_a_photo_folder_into_rasters(tmp_path, gray28):
    write_raster(gray28 / "extra.tif", smooth_bands(6, 28, 28))  # 6 bands: a raster on its own
    (gray28 / "disk.img").write_bytes(b"not really")
    assert not use_rasterio(gray28, RasterOptions())
    assert use_rasterio(gray28 / "extra.tif", RasterOptions())
