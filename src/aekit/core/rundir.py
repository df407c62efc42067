"""The run directory: where a training run writes everything, and how it is read back.

Files: config.yaml, model.safetensors + model.json, metrics.csv, summary.json, recon.png, loss.png.
Every file is written to a temporary name and renamed, so a crash never leaves a half file.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from aekit.core.errors import AekitError

METRIC_COLUMNS = ["epoch", "train_loss", "val_loss", "val_mse", "lr", "seconds", "images_per_s"]


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)`, fsync, then rename onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are meant to be shared
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_metrics(path: Path, rows: list[dict]) -> None:
    def write(p: Path) -> None:
        with open(p, "w", newline="") as f:
            extra = [k for k in rows[0] if k not in METRIC_COLUMNS] if rows else []  # e.g. a VAE's kl
            w = csv.DictWriter(f, fieldnames=[*METRIC_COLUMNS, *extra], extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    atomic_write(path, write)


def check_creatable(path: Path) -> None:
    """Fail when a file on the way to `path` stands where a folder must be created."""
    blocker = next((q for q in path.parents if q.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise AekitError(f"cannot create {path}: {blocker} is a file, not a folder")


def check_output_file(path: Path, example: str) -> None:
    """Fail before any work when the output file `path` is a folder or cannot be created;
    `example` is a file name to suggest inside the folder."""
    if path.is_dir():
        raise AekitError(f"output {path} is a folder; pass a file name such as {path / example}")
    check_creatable(path)


def check_out(out: str | Path | None) -> None:
    """Fail before any work when `out` cannot hold a new run."""
    if out is None:
        return
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise AekitError(f"output path {path} exists and is not a folder; pass another --out")
    if (path / "model.json").exists():
        raise AekitError(f"{path} already holds a trained run; pass another --out or delete it first")
    parent = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise AekitError(f"cannot write to {parent}; pass a writable --out")


LOCK_FILE = ".aekit.lock"

# Folders aekit writes its results into carry one of these files: readers never take what is in
# them for data (data/images.py `walk`), so a run folder inside the data it trained on is not read
# back as images by the next run. A run folder of an older aekit has no marker: model.json beside
# config.yaml says the same.
RUN_MARKER, SWEEP_MARKER, RECONSTRUCT_MARKER = ".aekit-run", ".aekit-sweep", ".aekit-reconstruct"
MAPS_MARKER = ".aekit-maps"
OUTPUT_MARKERS = {RUN_MARKER: "run", SWEEP_MARKER: "sweep", RECONSTRUCT_MARKER: "reconstruct", MAPS_MARKER: "maps"}


def aekit_output(folder: str | Path) -> str | None:
    """What kind of aekit output `folder` is ("run", "sweep", "reconstruct"), or None."""
    for marker, kind in OUTPUT_MARKERS.items():
        if os.path.lexists(os.path.join(folder, marker)):
            return kind
    both = all(os.path.isfile(os.path.join(folder, f)) for f in ("model.json", "config.yaml"))
    return "run" if both else None


def mark_output(folder: Path, marker: str) -> None:
    """Leave `marker` in a folder aekit writes (see OUTPUT_MARKERS)."""
    path = folder / marker
    if not path.exists():
        path.write_text(f"written by aekit: {OUTPUT_MARKERS[marker]} output, never read as data\n")


def make_run_dir(out: str | Path | None, base: str | Path = "runs") -> Path:
    """`out` as given, or a new `runs/<timestamp>` (see `link_latest`)."""
    if out is not None:
        check_out(out)
        path = Path(out)
        _mkdir(path)
        lock(path)
        check_out(out)  # a run that finished while this one waited for the lock
        mark_output(path, RUN_MARKER)
        return path
    base = Path(base)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, i = base / stamp, 1
    while path.exists():
        i += 1
        path = base / f"{stamp}-{i}"
    _mkdir(path)
    mark_output(path, RUN_MARKER)
    return path


_LOCKS: dict[Path, Any] = {}  # run folders this process writes, with their open lock files


def lock(path: Path) -> None:
    """Hold `path/.aekit.lock` (an advisory lock the OS drops when the process ends, however it
    ends) for as long as this process runs: a second run on the same --out is refused instead of
    writing into the same files. Where there is no fcntl (Windows), nothing is locked."""
    try:
        import fcntl
    except ImportError:
        return
    f = open(path / LOCK_FILE, "a")  # noqa: SIM115 (held open on purpose)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise AekitError(
            f"another aekit run is writing to {path} (it holds {path / LOCK_FILE}); wait for it or pass another --out"
        ) from None
    _LOCKS[path.resolve()] = f


def unlock(path: Path) -> None:
    f = _LOCKS.pop(path.resolve(), None)
    if f is not None:
        f.close()
        (path / LOCK_FILE).unlink(missing_ok=True)


def drop_inherited_locks() -> None:
    """In a forked child (a DataLoader worker): close the lock files inherited from the run's
    process, so that a run killed with -9 leaves its folder unlocked even while its children end."""
    for f in _LOCKS.values():
        f.close()
    _LOCKS.clear()


def link_latest(path: Path) -> None:
    """Point `<parent>/latest` at a finished run, replacing the link atomically."""
    replace_link(path.parent / "latest", path.name)


def replace_link(link: Path, target: str) -> bool:
    """Point the symlink `link` at `target` (relative to the link's folder), replacing it atomically;
    False where the filesystem has no symlinks (the caller prints the path instead)."""
    tmp = link.parent / f".{link.name}-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)
        return True
    except OSError:
        tmp.unlink(missing_ok=True)
        return False


def remove_if_empty(path: Path) -> None:
    """Remove a run folder that a failed start left empty (but for its marker)."""
    unlock(path)
    try:
        if {p.name for p in path.iterdir()} <= {RUN_MARKER}:
            (path / RUN_MARKER).unlink(missing_ok=True)
            path.rmdir()
    except OSError:
        pass


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".aekit-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise AekitError(f"cannot write to output folder {path}: {e.strerror}; pass a writable --out") from None


def resolve_run(run: str | Path) -> Path:
    """A run directory that holds a model, or a clear error."""
    path = Path(run)
    if not path.is_dir():
        raise AekitError(f"run folder not found: {path}; pass a folder written by `aekit train` (e.g. runs/latest)")
    for name in ("model.json", "model.safetensors"):
        if not (path / name).is_file():
            raise AekitError(f"{path} has no {name}; pass a folder written by `aekit train`")
    return path
