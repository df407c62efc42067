import numpy as np
import pytest
from PIL import Image

from aekit.data.images import infer_size, read_images
from aekit.errors import AekitError
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
