"""The rows of a sweep: SWEEP_DIR/results.csv (one row per trial, best first) and `SweepResults`,
what `aekit.sweep` returns."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aekit.core.errors import AekitError
from aekit.core.rundir import atomic_write

RESULTS = "results.csv"
COLUMNS = [
    *("trial", "status", "model", "latent_dim", "depth", "lr", "val_mse", "val_psnr", "pca_val_mse", "ratio_to_pca"),
    *("vs_pca", "parameters", "seconds", "best_epoch", "epochs_run", "error"),
]
DONE, FAILED, PRUNED = "done", "failed", "pruned"


@dataclass
class SweepResults:
    """The trials of a sweep, best first (failed trials last): a small table.

    `res["val_mse"]` is a column (a list), `res[0]` a row (a dict), `res.best` the best finished
    trial's row, `res.to_pandas()` a DataFrame (pandas needed)."""

    path: Path
    rows: list[dict]
    interrupted: bool = False
    columns: list[str] = field(default_factory=lambda: list(COLUMNS))

    @property
    def best(self) -> dict | None:
        return best_row(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows)

    def __getitem__(self, key: str | int):
        if isinstance(key, str):
            if key not in self.columns:
                raise KeyError(f"no column {key!r}; columns: {', '.join(self.columns)}")
            return [r.get(key) for r in self.rows]
        return self.rows[key]

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns)

    def __repr__(self) -> str:
        best = self.best
        top = f", best {best['trial']} (val MSE {best['val_mse']:.6g})" if best else ""
        return f"SweepResults({self.path}, {len(self.rows)} trials{top})"


def sort_rows(rows: list[dict]) -> list[dict]:
    """Finished trials by validation MSE, then pruned ones, then failed ones."""
    order = {DONE: 0, PRUNED: 1, FAILED: 2}

    def key(r: dict):
        mse = r.get("val_mse")
        return (order.get(r["status"], 3), mse if mse is not None else math.inf, r["trial"])

    return sorted(rows, key=key)


def best_row(rows: list[dict]) -> dict | None:
    done = [r for r in rows if r["status"] == DONE and r.get("val_mse") is not None]
    return min(done, key=lambda r: r["val_mse"]) if done else None


def write_results(path: Path, rows: list[dict]) -> None:
    def write(p: Path) -> None:
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            w.writeheader()
            for r in sort_rows(rows):
                w.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})

    atomic_write(path, write)


INTS = ("latent_dim", "depth", "parameters", "best_epoch", "epochs_run")
FLOATS = ("lr", "val_mse", "val_psnr", "pca_val_mse", "ratio_to_pca", "seconds")


def read_results(path: Path) -> dict[str, dict]:
    """The rows of an earlier results.csv by trial name (empty when there is none)."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise AekitError(f"cannot read {path} ({e}); delete it to run the sweep's trials again") from None
    out = {}
    for r in rows:
        row: dict[str, Any] = {k: (r.get(k) or None) for k in COLUMNS}
        try:
            for k in INTS:
                row[k] = None if row[k] is None else int(row[k])
            for k in FLOATS:
                row[k] = None if row[k] is None else float(row[k])
        except ValueError:
            raise AekitError(f"{path} has a malformed row for {row['trial']}; delete that row or the file") from None
        if row["trial"] and row["status"] in (DONE, FAILED, PRUNED):
            out[row["trial"]] = row
    return out


def result_row(trial, run_dir: Path, summary: dict, status: str = DONE) -> dict:
    """A results.csv row from a finished run's summary (and its config.yaml, for the depth used)."""
    depth = trial.depth
    try:
        depth = yaml.safe_load((run_dir / "config.yaml").read_text()).get("depth", depth)
    except (OSError, yaml.YAMLError, AttributeError):
        pass
    mse, pca = summary.get("val_mse"), summary.get("pca_val_mse")
    return {
        "trial": trial.name,
        "status": status,
        **trial.options(),
        "depth": depth,
        "val_mse": mse,
        "val_psnr": summary.get("val_psnr"),
        "pca_val_mse": pca,
        "ratio_to_pca": round(mse / pca, 4) if mse is not None and pca else None,
        "vs_pca": summary.get("vs_pca"),
        "parameters": summary.get("parameters"),
        "seconds": summary.get("seconds"),
        "best_epoch": summary.get("best_epoch"),
        "epochs_run": summary.get("epochs_run"),
        "error": None,
    }


def failed_row(trial, reason: str) -> dict:
    return {"trial": trial.name, "status": FAILED, **trial.options(), "error": reason}
