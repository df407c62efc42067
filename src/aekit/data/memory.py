"""In-memory data: numpy arrays, tensors and the user's own `torch.utils.data.Dataset`.

Images: (N, H, W), (N, H, W, C) and (N, C, H, W); 2-D arrays (N, F) are tables (tables.py).
The channel axis is the one of size 1, 3 or 4 (or `expected_channels` when given); when both
could be, torch tensors are read as N,C,H,W and numpy arrays as N,H,W,C. Integer data keeps its
units (full scale 255 for uint8, 65535 for uint16); float data is used as it is (full scale 1.0).
"""

from __future__ import annotations

import math
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aekit.config.choices import LAYOUTS
from aekit.core.errors import AekitError
from aekit.data.base import LoadedData, check_magnitude
from aekit.data.tables import from_table_array


def infer_layout(shape: tuple[int, ...], *, prefer: str = "NHWC", expected_channels: int | None = None) -> str:
    """Which of LAYOUTS an array of `shape` is in."""
    if len(shape) == 3:
        return "NHW"
    if len(shape) != 4:
        raise AekitError(f"expected images shaped N,H,W or N,H,W,C or N,C,H,W; got shape {tuple(shape)}")
    c_first, c_last = shape[1], shape[3]
    if expected_channels is not None and (c_first == expected_channels) != (c_last == expected_channels):
        return "NCHW" if c_first == expected_channels else "NHWC"
    first_ok, last_ok = c_first <= 4, c_last <= 4
    if first_ok and not last_ok:
        return "NCHW"
    if last_ok and not first_ok:
        return "NHWC"
    return prefer


def to_nchw(x: np.ndarray, layout: str) -> np.ndarray:
    if layout == "NHW":
        return x[:, None]
    if layout == "NHWC":
        return x.transpose(0, 3, 1, 2)
    return x


def from_nchw(x: np.ndarray, layout: str) -> np.ndarray:
    if layout == "NHW":
        return x[:, 0]
    if layout == "NHWC":
        return x.transpose(0, 2, 3, 1)
    return x


def scale_of(dtype: np.dtype) -> float:
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise AekitError(f"unsupported data type {dtype}; use uint8, uint16 or float arrays")


def from_array(
    x: Any, *, layout: str | None = None, source: str = "array", columns: Any = None, id_column: str | None = None
) -> LoadedData:
    """Wrap an array or tensor of images as LoadedData (no copy when already N,C,H,W); a 2-D
    array (N rows, F columns) is a table (see tables.py)."""
    prefer = "NCHW" if isinstance(x, torch.Tensor) else "NHWC"
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim == 2:
        if len(arr) == 0:
            raise AekitError(f"{source} holds no rows")
        return from_table_array(arr, source=source, columns=columns, id_column=id_column)
    if arr.size == 0:  # before any copy ((0, 2**20, 2**20, 2**20) is too big to) or id ((2**40, 0, 3) items)
        raise AekitError(
            f"{source} holds no items"
            if len(arr) == 0
            else f"{source} holds no values (shape {arr.shape}); pass items of at least one value each"
        )
    if arr.dtype == np.float64 or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if arr.dtype.kind in "iub" and arr.dtype not in (np.uint8, np.uint16):
        raise AekitError(f"{source}: integer type {arr.dtype} is not supported; convert to uint8, uint16 or float32")
    scale = scale_of(arr.dtype)
    layout = layout or infer_layout(arr.shape, prefer=prefer)
    if layout not in LAYOUTS:
        raise AekitError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    arr = np.ascontiguousarray(to_nchw(arr, layout))
    if arr.dtype == np.float32 and not np.isfinite(arr).all():
        raise AekitError(f"{source} contains NaN or Inf values; replace or drop them before training")
    check_magnitude(arr, source)
    return LoadedData(array=arr, ids=[str(i) for i in range(len(arr))], scale=scale, source=source, n_found=len(arr))


ARRAY_SUFFIXES = (".npy", ".npz")
NPZ_KEYS = ("images", "image", "x", "data", "arr_0")


def read_array_file(
    path: Path, *, layout: str | None = None, columns: Any = None, id_column: str | None = None
) -> LoadedData:
    """Images from a .npy file, or from a .npz file's only array (or its 'images'/'x'/'data' array);
    a 2-D array is a table of N rows and F columns.

    Never unpickles: object arrays are refused. Item identifiers are the row numbers."""
    if not path.is_file():
        raise AekitError(f"data file not found: {path}; pass an existing .npy/.npz file or an image folder")
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, mmap_mode="c", allow_pickle=False)  # copy-on-write: the file is never written
        else:
            with np.load(path, allow_pickle=False) as npz:
                keys = list(npz.keys())
                if not keys:
                    raise AekitError(f"{path} holds no array; save the images with numpy.savez(path, images=x)")
                key = keys[0] if len(keys) == 1 else next((k for k in NPZ_KEYS if k in keys), None)
                if key is None:
                    raise AekitError(
                        f"{path} holds several arrays ({', '.join(keys)}); name the images 'images' or save one array"
                    )
                check_npz_member(npz, key)
                arr = npz[key]
    except ValueError as e:
        if "pickle" not in str(e) and "Python objects" not in str(e):  # a truncated or foreign file
            raise AekitError(f"cannot read {path}: truncated or not a {path.suffix} file ({e})") from None
        raise AekitError(f"cannot read {path} without unpickling ({e}); save a plain numeric array") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OverflowError, SyntaxError, tokenize.TokenError) as e:
        # a .npz that is not a whole zip file; a header numpy cannot parse or map (a shape too large)
        raise AekitError(f"cannot read {path}: truncated or not a {path.suffix} file ({e})") from None
    except OSError as e:
        raise AekitError(f"cannot read {path}: {e}") from None
    except MemoryError:  # a .npz member is read into memory whole (a .npy is mapped)
        raise AekitError(f"{path} holds an array larger than this machine's memory; save it as .npy") from None
    if arr.ndim == 2:  # a table: N rows, F columns
        return from_array(arr, source=str(path.resolve()), columns=columns, id_column=id_column)
    data = from_array(arr, layout=layout, source=str(path.resolve()), columns=columns, id_column=id_column)
    data.notes.append(f"array {tuple(arr.shape)} {arr.dtype}, read as {layout or infer_layout(arr.shape)}")
    return data


def check_npz_member(npz: Any, key: str) -> None:
    """Raise ValueError when the .npy member `key` of `npz` (numpy's NpzFile) holds fewer bytes than
    its header claims: numpy allocates the array the header describes before it reads a byte, so a
    member of a few bytes could claim terabytes."""
    name = key if key in npz.zip.namelist() else f"{key}.npy"
    with npz.zip.open(name) as f:
        if f.read(6) != b"\x93NUMPY":
            return  # not a .npy: numpy returns its bytes
        f.seek(0)
        version = np.lib.format.read_magic(f)
        # 2.0 and 3.0 headers differ only in their text's encoding (latin-1, utf-8)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        claimed = math.prod(shape) * dtype.itemsize
        held = npz.zip.getinfo(name).file_size - f.tell()
    if claimed > held:
        raise ValueError(f"its array {name} claims {claimed} bytes of data but holds {held}")


def _first_tensor(item: Any) -> Any:
    if isinstance(item, dict):
        for key in ("image", "images", "x", "input", "data"):
            if key in item:
                return item[key]
        item = list(item.values())
    if isinstance(item, (tuple, list)):
        return item[0]
    return item


def from_dataset(
    dataset: torch.utils.data.Dataset, *, layout: str | None = None, columns: Any = None, id_column: str | None = None
) -> LoadedData:
    """Materialise a map-style Dataset of tensors, tuples (first element) or dicts ('image'/'x' key);
    items of one dimension (F values) make a table."""
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise AekitError("the Dataset must define __len__ (a map-style dataset)") from None
    if n == 0:
        raise AekitError("the Dataset is empty")
    items = [np.asarray(_first_tensor(dataset[i])) for i in range(n)]
    shapes = {a.shape for a in items}
    if len(shapes) > 1:
        raise AekitError(f"the Dataset yields items of different shapes {sorted(shapes)[:3]}; resize them to one size")
    stacked = np.stack(items)
    if layout is None and stacked.ndim == 4:  # items from a torch Dataset are C,H,W by convention
        layout = infer_layout(stacked.shape, prefer="NCHW")
    return from_array(stacked, layout=layout, source=type(dataset).__name__, columns=columns, id_column=id_column)
