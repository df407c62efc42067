"""`aekit reconstruct`: what the model makes of each item, written as files a person can open.

A folder of images gives a folder of reconstructions mirroring its tree: `a/b.jpg` -> `DIR/a/b.png`
(PNG is lossless: a JPEG would add its own artefacts to the model's). 8-bit data -> 8-bit PNG (gray,
RGB or RGBA), 16-bit gray -> 16-bit PNG, float gray -> 32-bit float TIFF, anything else (more
channels, 16-bit colour) -> `.npy` of shape (C, H, W). Images come out at the model's size.
`--compare` also writes `DIR/compare/<same path>.png`: the original (as the model saw it, resized
and cropped) left of its reconstruction. Array data gives `DIR/reconstructions.npy` (N, C, H, W).
A table gives `DIR/reconstructions.csv`: its identifier, then the model's columns in their own units.

The output folder must be new, empty or one this command wrote before (it leaves a marker file):
the user's files are never overwritten, and it may not lie inside the input folder.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from aekit.config.commands import ReconstructOptions
from aekit.core.errors import AekitError
from aekit.core.rundir import RECONSTRUCT_MARKER, atomic_write, check_creatable

MARKER = RECONSTRUCT_MARKER  # also keeps the folder from being read as data (core/rundir.py)


def check_out_dir(out: str | Path, data: Any) -> Path:
    """A folder we may write into: new, empty or ours, and not inside the data folder."""
    d = Path(out)
    if d.exists() and not d.is_dir():
        raise AekitError(f"output {d} is a file; pass a folder name, e.g. {d.with_suffix('')}_recon")
    if d.is_dir() and any(d.iterdir()) and not (d / MARKER).exists():
        raise AekitError(
            f"output folder {d} is not empty and was not written by aekit reconstruct; choose a new folder"
        )
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        src, dst = Path(data).resolve(), d.resolve()
        if dst == src or src in dst.parents:
            raise AekitError(f"output folder {d} is inside the input folder {data}; choose a folder outside it")
    check_creatable(d)
    return d


def image_file(chw: np.ndarray) -> tuple[str, Any]:
    """(suffix, writer(path)) for one (C, H, W) reconstruction in the data's dtype."""
    c = chw.shape[0]
    if chw.dtype == np.uint8 and c in (1, 3, 4):
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[c]
        im = Image.fromarray(chw[0] if c == 1 else chw.transpose(1, 2, 0), mode=mode)
        return ".png", lambda p: im.save(p, format="PNG")
    if chw.dtype == np.uint16 and c == 1:
        im = Image.fromarray(chw[0])  # I;16
        return ".png", lambda p: im.save(p, format="PNG")
    if chw.dtype == np.float32 and c == 1:
        im = Image.fromarray(chw[0], mode="F")
        return ".tiff", lambda p: im.save(p, format="TIFF")

    def save_npy(p: Path) -> None:
        with open(p, "wb") as f:
            np.save(f, chw)

    return ".npy", save_npy


def target_path(ident: str, suffix: str, used: set[str]) -> str:
    """`a/b.jpg` -> `a/b.png`; if two inputs map to one name (a.jpg, a.png), keep the old suffix."""
    rel = PurePosixPath(ident)
    name = str(rel.with_suffix(suffix))
    if name in used:
        name = str(rel) + suffix
    used.add(name)
    return name


def side_by_side(original: np.ndarray, recon: np.ndarray, scale: float) -> Image.Image:
    """(C, H, W) original | reconstruction, as an 8-bit RGB picture with a white gap."""
    from aekit.core.plots import to_display

    a, b = to_display(np.stack([original, recon]).astype(np.float32) / scale)
    gap = np.full((a.shape[0], 2, 3), 255, np.uint8)
    return Image.fromarray(np.concatenate([a, gap, b], axis=1))


def write_table(path: Path, items: Any, recon: np.ndarray) -> None:
    """One row per table row: its identifier, then the reconstructed columns (N, F)."""
    import csv

    def write(t: Path) -> None:
        with open(t, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([items.id_name or "row", *items.columns])
            for ident, row in zip(items.ids, recon.tolist()):
                w.writerow([ident, *(f"{v:.7g}" for v in row)])

    atomic_write(path, write)


def reconstruct_to_dir(o: ReconstructOptions) -> dict:
    """Reconstruct every item of `o.data` with the model in `o.run` into the folder `o.output`;
    returns a summary. A raster model given rasters writes whole GeoTIFFs, stitched from patches on
    a grid of `o.stride` (default: half the patch; see raster_outputs.py)."""
    from aekit.core.progress import console
    from aekit.inference.encode import model_data
    from aekit.inference.guard import check_data, say_skipped
    from aekit.inference.model import check_batch_size, load
    from aekit.inference.raster_outputs import is_raster_path, raster_outputs

    data, batch = o.data, o.batch_size
    out = check_out_dir(o.output, data)
    check_batch_size(batch)
    model = load(o.run, device=o.device, precision=o.precision)
    if "raster" in model.meta and is_raster_path(data):
        _mark(out)
        res = raster_outputs(
            model, data, out, kind="reconstruction", stride=o.stride, batch_size=batch, verbose=o.verbose
        )
        n = len(res["rasters"])
        return {"out": str(out), "n_items": n, "files": n, "skipped": len(res["skipped"]), "rasters": res["rasters"]}
    items = model_data(model, data, o)
    check_data(model, items, o.verbose)
    say_skipped(items.skipped, o.verbose)
    if model.columns is not None and o.compare:
        raise AekitError("--compare writes pictures of images; a table's reconstruction is reconstructions.csv")
    _mark(out)
    files_input = isinstance(data, (str, Path)) and Path(data).suffix.lower() not in (".npy", ".npz")
    n = len(items)
    if model.columns is not None:
        write_table(out / "reconstructions.csv", items, model.reconstruct(items.array, batch_size=batch))
        written = [out / "reconstructions.csv"]
    elif not files_input:
        written = [_write_array(out / "reconstructions.npy", model, items, batch)]
    else:
        written = _write_images(out, model, items, batch, o.compare, o.verbose)
    summary = {"out": str(out), "n_items": n, "files": len(written), "skipped": len(items.skipped)}
    if o.verbose:
        more = f", side-by-side pictures in {out / 'compare'}" if o.compare and files_input else ""
        if o.compare and not files_input:
            more = " (--compare applies to image files, not arrays)"
        console.print(f"reconstructed {n} item(s) into {out}{more}; skipped {len(items.skipped)}")
    return summary


def _mark(out: Path) -> None:
    """Create the output folder with the marker that lets this command write into it again."""
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by aekit reconstruct; it may overwrite files in this folder\n")


def _write_array(path: Path, model: Any, items: Any, batch_size: int) -> Path:
    """Array data: every reconstruction in one (N, C, H, W) `.npy` at `path`."""
    recon = np.concatenate(
        [
            model.reconstruct(np.asarray(items.array[i : i + batch_size]), layout="NCHW", batch_size=batch_size)
            for i in range(0, len(items), batch_size)
        ]
    )

    def save(t: Path) -> None:
        with open(t, "wb") as f:
            np.save(f, recon)

    atomic_write(path, save)
    return path


def _write_images(out: Path, model: Any, items: Any, batch_size: int, compare: bool, verbose: bool) -> list[Path]:
    """Image files: one file per item mirroring the input tree, and with `compare` a side-by-side
    picture under `out/compare`; returns the reconstructions' paths."""
    from aekit.core.progress import track

    used: set[str] = set()
    written: list[Path] = []
    batches = range(0, len(items), batch_size)
    for i in track(batches, len(batches), "reconstructing", enabled=verbose, min_total=8):
        x = np.asarray(items.array[i : i + batch_size])
        recon = model.reconstruct(x, layout="NCHW", batch_size=batch_size)
        for j, chw in enumerate(recon):
            suffix, writer = image_file(chw)
            rel = target_path(items.ids[i + j], suffix, used)
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, writer)
            written.append(path)
            if compare:
                cmp_path = out / "compare" / PurePosixPath(rel).with_suffix(".png")
                cmp_path.parent.mkdir(parents=True, exist_ok=True)
                pic = side_by_side(x[j], chw, model.scale)
                atomic_write(cmp_path, lambda p, pic=pic: pic.save(p, format="PNG"))
    return written
