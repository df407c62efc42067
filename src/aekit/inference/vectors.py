"""Write one row per item (its identifier and a vector) as .npy, .csv or .parquet."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from aekit.core.errors import AekitError
from aekit.core.rundir import atomic_write, check_output_file

FORMATS = (".npy", ".csv", ".parquet")


def check_output(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise AekitError(f"output {p} must end in {', '.join(FORMATS)}")
    check_output_file(p, "embeddings.csv")
    if p.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise AekitError("writing .parquet needs pyarrow: pip install 'aekit[parquet]', or use .csv/.npy") from None
    return p


def write_vectors(
    path: str | Path, ids: list[str], vectors: np.ndarray, prefix: str = "z", id_name: str = "path"
) -> list[Path]:
    """Write `vectors` (N, D) with their ids; .npy gets the ids in a sidecar `<name>.paths.txt`.

    Returns the files written."""
    p = check_output(path)
    ext = p.suffix.lower()
    cols = [f"{prefix}{i}" for i in range(vectors.shape[1])]
    if ext == ".npy":

        def save(t: Path) -> None:
            with open(t, "wb") as f:  # a handle: np.save would add ".npy" to the temporary name
                np.save(f, vectors.astype(np.float32))

        atomic_write(p, save)
        side = p.with_suffix(".paths.txt")
        atomic_write(side, lambda t: t.write_text("".join(f"{i}\n" for i in ids)))
        return [p, side]
    if ext == ".csv":

        def write(t: Path) -> None:
            with open(t, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow([id_name, *cols])
                for ident, row in zip(ids, vectors.tolist()):
                    w.writerow([ident, *(f"{v:.7g}" for v in row)])

        atomic_write(p, write)
        return [p]
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({id_name: ids, **{c: vectors[:, i].astype(np.float32) for i, c in enumerate(cols)}})
    atomic_write(p, lambda t: pq.write_table(table, t))
    return [p]
