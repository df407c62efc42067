import numpy as np
import pytest
from PIL import Image

import aekit.data.images as images_mod
from aekit.core.errors import AekitError
from aekit.data.images import infer_size, read_images
from tests.conftest import jpeg_bytes, smooth_images, write_pngs


def test_messy_folder_reads_good_files_and_lists_bad_ones(messy_folder):
    data = read_images(messy_folder, show_progress=False)
    assert data.ids == sorted(data.ids)
    assert "sub/deeper/f.webp" in data.ids and "a.PNG" in data.ids and "b.JPG" in data.ids
    assert not any(".hidden" in i or "DS_Store" in i for i in data.ids)
    reasons = {s.path: s.reason for s in data.skipped}
    assert set(reasons) == {"empty.png", "truncated.jpg", "fake.png", "notes.txt"}
    assert "empty" in reasons["empty.png"]
    assert "not a recognised image" in reasons["fake.png"]
    assert "truncated" in reasons["truncated.jpg"] or "unreadable" in reasons["truncated.jpg"]
    assert "not an image file" in reasons["notes.txt"]
    assert len(data) == 12
    # colour images present -> 3 channels; a 16-bit file present -> stored as uint16
    assert data.shape[0] == 3
    assert data.array.dtype == np.uint16 and data.scale == 65535.0


def test_order_is_deterministic(messy_folder):
    a = read_images(messy_folder, show_progress=False)
    b = read_images(messy_folder, show_progress=False)
    assert a.ids == b.ids
    np.testing.assert_array_equal(a.array, b.array)


def test_all_gray_folder_gives_one_channel_uint8(gray28):
    data = read_images(gray28, show_progress=False)
    assert data.array.shape == (24, 1, 28, 28)
    assert data.array.dtype == np.uint8 and data.scale == 255.0


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_channels_override(rgb_folder, channels):
    data = read_images(rgb_folder, channels=channels, show_progress=False)
    assert data.array.shape == (20, channels, 20, 24)
    if channels == 4:  # no alpha in the files: opaque
        assert (data.array[:, 3] == 255).all()


def test_pixels_survive_exactly_at_native_size(tmp_path):
    imgs = smooth_images(3, 12, 9, 3)
    write_pngs(tmp_path, imgs)
    data = read_images(tmp_path, show_progress=False)
    np.testing.assert_array_equal(data.array, imgs.transpose(0, 3, 1, 2))


def test_mixed_sizes_resized_and_center_cropped(tmp_path):
    write_pngs(tmp_path, smooth_images(3, 32, 32, 3))
    Image.fromarray(smooth_images(1, 64, 100, 3)[0]).save(tmp_path / "wide.png")
    data = read_images(tmp_path, show_progress=False)
    assert data.array.shape == (4, 3, 32, 32)
    assert any("32x32" in n for n in data.notes)
    data = read_images(tmp_path, image_size=(15, 21), show_progress=False)
    assert data.array.shape == (4, 3, 15, 21)


def test_default_size_capped_for_large_images():
    (h, w), note = infer_size([(600, 800)] * 3 + [(10, 10)])
    assert (h, w) == (96, 128) and "scaled" in note


def test_mixed_sizes_say_how_the_size_was_chosen_and_the_flag_that_sets_it():
    (h, w), note = infer_size([(57, 73)] * 2 + [(40, 40)])
    assert (h, w) == (57, 73) and "the size of 2 of 3 images" in note
    assert "2 sizes" in note and "center-cropped" in note and "--image-size H W" in note
    assert "--image-size" not in infer_size([(20, 20)] * 3)[1]  # one size: nothing to choose


def test_exif_orientation_applied(tmp_path):
    im = Image.fromarray(smooth_images(1, 20, 40, 3)[0])  # 40 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    im.save(tmp_path / "rot.jpg", exif=exif)
    data = read_images(tmp_path, show_progress=False)
    assert data.array.shape[2:] == (40, 20)  # displayed as 20 wide, 40 high


def test_16bit_gray_keeps_precision(tmp_path):
    arr = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 200).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    data = read_images(tmp_path, show_progress=False)
    assert data.array.dtype == np.uint16
    np.testing.assert_array_equal(data.array[0, 0], arr)


def test_single_file_and_extra_extension(tmp_path):
    im = smooth_images(1, 10, 10, 3)[0]
    (tmp_path / "photo.jfif").write_bytes(jpeg_bytes(im))
    with pytest.raises(AekitError, match="--ext"):
        read_images(tmp_path, show_progress=False)
    data = read_images(tmp_path, extensions=[".jfif"], show_progress=False)
    assert len(data) == 1
    data = read_images(tmp_path / "photo.jfif", extensions=[".jfif"], show_progress=False)
    assert data.ids == ["photo.jfif"]


def test_errors_name_the_path(tmp_path):
    with pytest.raises(AekitError, match="not found"):
        read_images(tmp_path / "nope")
    with pytest.raises(AekitError, match="no image files"):
        read_images(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"")
    with pytest.raises(AekitError, match="no readable image"):
        read_images(tmp_path)


def test_process_pool_path_gives_the_same_result(messy_folder, monkeypatch):
    import aekit.data.images as images_mod

    threads = read_images(messy_folder, show_progress=False)
    monkeypatch.setattr(images_mod, "PROCESS_MIN_ITEMS", 1)
    processes = read_images(messy_folder, show_progress=False)
    np.testing.assert_array_equal(threads.array, processes.array)
    assert threads.ids == processes.ids
    assert [(s.path, s.reason) for s in threads.skipped] == [(s.path, s.reason) for s in processes.skipped]


def test_headers_the_sample_missed_decode_again_under_the_right_plan(tmp_path, monkeypatch):
    """The single pass decodes under a plan guessed from a sample of headers; a colour, larger,
    16-bit file outside the sample changes the plan and everything is decoded again under it."""
    import aekit.data.images as images_mod

    monkeypatch.setattr(images_mod, "SAMPLE", 4)  # sample files 0, 5, 10, 15 of 20
    real, plans = images_mod._allocate, []
    monkeypatch.setattr(images_mod, "_allocate", lambda a, f, plan: plans.append(plan) or real(a, f, plan))
    write_pngs(tmp_path, smooth_images(19, 20, 20, 1))
    Image.fromarray(smooth_images(1, 30, 30, 1)[0, ..., 0].astype(np.uint16) * 200).save(tmp_path / "img003b.png")
    data = read_images(tmp_path, show_progress=False)
    assert data.array.shape == (20, 1, 20, 20) and data.array.dtype == np.uint16  # gray, most common size
    assert [p.high for p in plans] == [False, True]  # guessed 8-bit, decoded again as 16-bit
    given = read_images(tmp_path, show_progress=False, channels=1, image_size=(20, 20), high=True)  # no guessing
    np.testing.assert_array_equal(data.array, given.array)
    assert data.ids == given.ids
    write_pngs(tmp_path, smooth_images(1, 20, 20, 3), prefix="img003a")  # colour outside the sample
    plans.clear()
    data = read_images(tmp_path, show_progress=False)
    assert [p.channels for p in plans] == [1, 3]
    assert data.shape[0] == 3 and len(data) == 21
    np.testing.assert_array_equal(data.array, read_images(tmp_path, show_progress=False, channels=3).array)


def _png_zoo(folder):
    """PNGs of every kind the libspng path takes or must leave to Pillow."""
    rgba = smooth_images(3, 16, 16, 4, seed=1)
    Image.fromarray(rgba[0, ..., 0]).save(folder / "gray.png")
    Image.fromarray(rgba[1, ..., :3]).save(folder / "rgb.png")
    Image.fromarray(rgba[2]).save(folder / "rgba.png")
    Image.fromarray(rgba[0, ..., :2], mode="LA").save(folder / "la.png")
    Image.fromarray(rgba[1, ..., :3]).save(folder / "rgb_trns.png", transparency=(0, 0, 0))
    Image.fromarray(rgba[1, ..., :3]).quantize(16).save(folder / "palette.png")
    Image.fromarray(rgba[2, ..., :3]).resize((20, 12)).save(folder / "other_size.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated
    Image.fromarray(rgba[2, ..., :3]).save(folder / "rotated.png", exif=exif)
    (folder / "truncated.png").write_bytes((folder / "rgb.png").read_bytes()[:60])


@pytest.mark.skipif(images_mod.pyspng is None, reason="pyspng not installed")
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
@pytest.mark.parametrize("high", [None, True])
def test_libspng_path_gives_the_pixels_pillow_gives(tmp_path, monkeypatch, channels, high):
    _png_zoo(tmp_path)
    fast = read_images(tmp_path, show_progress=False, channels=channels, high=high)
    monkeypatch.setattr(images_mod, "pyspng", None)
    slow = read_images(tmp_path, show_progress=False, channels=channels, high=high)
    assert fast.ids == slow.ids and len(fast) == 8
    np.testing.assert_array_equal(fast.array, slow.array)
    assert fast.notes == slow.notes
    assert [(s.path, s.reason) for s in fast.skipped] == [(s.path, s.reason) for s in slow.skipped]


def test_libspng_path_takes_plain_pngs_only(tmp_path):
    _png_zoo(tmp_path)
    plan = images_mod._Plan(3, (16, 16), False)
    taken = {p.name for p in sorted(tmp_path.iterdir()) if images_mod._fast_png(p, plan) is not None}
    assert taken == ({"gray.png", "rgb.png", "rgba.png"} if images_mod.pyspng else set())


@pytest.mark.parametrize("processes", [False, True])
def test_reads_from_two_threads_at_once_do_not_mix(tmp_path, monkeypatch, processes):
    from concurrent.futures import ThreadPoolExecutor

    if processes:
        monkeypatch.setattr(images_mod, "PROCESS_MIN_ITEMS", 1)
    write_pngs(tmp_path / "a", smooth_images(40, 12, 12, 3, seed=1))
    write_pngs(tmp_path / "b", smooth_images(30, 20, 16, 1, seed=2))
    alone = [read_images(tmp_path / d, show_progress=False).array for d in "ab"]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda d: read_images(tmp_path / d, show_progress=False).array, "abab"))
    for i, arr in enumerate(together):
        np.testing.assert_array_equal(arr, alone[i % 2])
