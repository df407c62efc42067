"""`aekit sweep`: one normal training run per combination of latent size, depth, learning rate and
model, compared in SWEEP_DIR/results.csv, sweep.png and sweep.html, with SWEEP_DIR/best linking
the best trial.

Each trial is `aekit.api.train(data, out=SWEEP_DIR/trials/<name>, ...)`; the data are decoded once
into the cache, which every trial then reads (same preprocessing, same cache key). results.csv is
rewritten atomically after every trial, so a sweep stopped at any moment resumes when the same
command runs again: finished trials (matched on their parameters, which name them) are kept, a
trial that did not finish is deleted and run again. A trial that cannot run (e.g. a depth too deep
for the image size) is recorded as failed with its reason, and the sweep goes on.

`--search grid` (the default) runs every combination; `random` and `tpe` (Optuna) draw `--trials`
of them, the latent sizes in turn, and prune trials that trail others of their size (OptunaSearch).
(The module is not called sweep.py so that `aekit.sweep` stays the function.)
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import __version__
from .config import MODELS, load_yaml, make_config
from .errors import AekitError
from .progress import console
from .rundir import atomic_write, replace_link, write_json

SEARCHES = ("grid", "random", "tpe")
SWEPT = ("model", "latent_dim", "depth", "lr")  # the options a sweep varies; the rest are fixed
COLUMNS = [
    *("trial", "status", "model", "latent_dim", "depth", "lr", "val_mse", "val_psnr", "pca_val_mse", "ratio_to_pca"),
    *("vs_pca", "parameters", "seconds", "best_epoch", "epochs_run", "error"),
]
DONE, FAILED, PRUNED = "done", "failed", "pruned"
RESULTS, STATE, TRIALS_DIR = "results.csv", "sweep.json", "trials"
DEFAULT_TRIALS = 10  # --search random|tpe without --trials
OPTUNA_HINT = "pip install 'aekit[sweep]'"


@dataclass(frozen=True)
class Trial:
    """One combination of the swept options; its name is its folder and its key in results.csv."""

    model: str
    latent_dim: int
    depth: int | None  # None: the depth the data gets by default
    lr: float

    @property
    def name(self) -> str:
        return f"{self.model}-latent{self.latent_dim}-depth{self.depth or 'auto'}-lr{self.lr:g}"

    def options(self) -> dict[str, Any]:
        return {"model": self.model, "latent_dim": self.latent_dim, "depth": self.depth, "lr": self.lr}


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


# -- the space --------------------------------------------------------------------------------
def parse_values(name: str, value: Any) -> list:
    """A swept option's values from a list, one value or a comma-separated string ('8,16,32')."""
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        text = item.strip() if isinstance(item, str) else item
        try:
            if name == "model":
                if text not in MODELS:
                    raise ValueError
                v: Any = text
            elif name in ("latent_dim", "depth"):
                if isinstance(text, bool) or (isinstance(text, float) and not text.is_integer()):
                    raise ValueError
                v = int(text)
                if v <= 0:
                    raise ValueError
            else:
                v = float(text)
                if not (math.isfinite(v) and v > 0):
                    raise ValueError
        except (TypeError, ValueError):
            kinds = {
                "model": f"one of {', '.join(MODELS)}",
                "latent_dim": "positive integers",
                "depth": "positive integers",
                "lr": "positive numbers",
            }
            flag = "--" + name.replace("_", "-")
            raise AekitError(
                f"{flag}: {item!r} is not valid; give {kinds[name]}, comma-separated (e.g. {flag} {EXAMPLES[name]})"
            ) from None
        if v not in out:
            out.append(v)
    if not out:
        raise AekitError(f"--{name.replace('_', '-')} needs at least one value (e.g. {EXAMPLES[name]})")
    return out


EXAMPLES = {"model": "ae,vae", "latent_dim": "8,16,32,64", "depth": "2,3,4", "lr": "1e-3,3e-4"}


def grid(space: dict[str, list]) -> list[Trial]:
    """Every combination, smallest latent size first within each (model, depth, lr)."""
    combos = itertools.product(space["model"], space["depth"], space["lr"], space["latent_dim"])
    return [Trial(model=m, latent_dim=z, depth=d, lr=lr) for m, d, lr, z in combos]


# -- searches: which trial next ------------------------------------------------------------------
class GridSearch:
    """Every combination in order (the first `limit`)."""

    def __init__(self, trials: list[Trial], limit: int | None) -> None:
        self.todo = trials[:limit] if limit else trials

    def ask(self, done: dict[str, dict]) -> Trial | None:
        return next((t for t in self.todo if t.name not in done), None)

    def on_epoch(self, trial: Trial) -> Callable[[int, dict], bool] | None:
        return None

    def tell(self, trial: Trial, row: dict) -> None:
        pass


class OptunaSearch:
    """Random or TPE sampling (Optuna) of the other options for each latent size in turn.

    Validation MSE falls with the latent size whatever else is chosen, so a search on it alone
    would only try the largest size; instead the latent sizes take turns, so that the curve is
    mapped, and Optuna learns from each trial's validation MSE relative to PCA's at the same size.
    A trial whose validation MSE after an epoch (from the second on) is above the median of earlier
    trials of its latent size at that epoch is pruned. Finished trials of an earlier run of the
    sweep are told to the study first, so a resumed sweep goes on where it stopped."""

    def __init__(self, method: str, space: dict[str, list], n: int, seed: int, done: dict, trials_dir: Path) -> None:
        _require_optuna(method)
        import optuna
        from optuna.distributions import CategoricalDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.dists = {k: CategoricalDistribution(v) for k, v in space.items()}
        sampler = optuna.samplers.TPESampler(seed=seed) if method == "tpe" else optuna.samplers.RandomSampler(seed)
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self.combos = grid(space)
        self.n = min(n, len(self.combos))
        self.sizes = space["latent_dim"]
        self.asks, self.turn, self.current = 0, 0, None
        for trial in self.combos:
            if trial.name in done:
                self.study.add_trial(self._frozen(trial, done[trial.name], trials_dir / trial.name))

    def _frozen(self, trial: Trial, row: dict, run_dir: Path):
        from optuna.trial import TrialState, create_trial

        curve = _val_curve(run_dir)
        if row["status"] == DONE:
            return create_trial(
                params=trial.options(), distributions=self.dists, value=_objective(row), intermediate_values=curve
            )
        state = TrialState.PRUNED if row["status"] == PRUNED else TrialState.FAIL
        return create_trial(params=trial.options(), distributions=self.dists, state=state, intermediate_values=curve)

    def ask(self, done: dict[str, dict]) -> Trial | None:
        while sum(t.name in done for t in self.combos) < self.n and self.asks < 50 * self.n:
            z = self.sizes[self.turn % len(self.sizes)]
            if all(t.name in done for t in self.combos if t.latent_dim == z):
                self.turn += 1
                continue
            self.asks += 1
            self.study.enqueue_trial({"latent_dim": z})  # this size's turn; the sampler picks the rest
            t = self.study.ask(self.dists)
            trial = Trial(**t.params)
            if trial.name not in done:
                self.current, self.turn = t, self.turn + 1
                return trial
            self._tell(t, done[trial.name])  # drawn again: its result is known, nothing to train
        return None

    def on_epoch(self, trial: Trial) -> Callable[[int, dict], bool]:
        t, state = self.current, self.optuna.trial.TrialState

        def prune(epoch: int, row: dict) -> bool:
            value = row["val_mse"]
            if not math.isfinite(value):
                return False
            t.report(value, epoch)
            earlier = [
                o.intermediate_values[epoch]
                for o in self.study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED))
                if o.params.get("latent_dim") == trial.latent_dim and epoch in o.intermediate_values
            ]
            return epoch >= 2 and len(earlier) >= 2 and value > statistics.median(earlier)

        return prune

    def tell(self, trial: Trial, row: dict) -> None:
        self._tell(self.current, row)

    def _tell(self, t, row: dict) -> None:
        state = self.optuna.trial.TrialState
        if row["status"] == DONE:
            self.study.tell(t, _objective(row))
        else:
            self.study.tell(t, state=state.PRUNED if row["status"] == PRUNED else state.FAIL)


def _objective(row: dict) -> float:
    """What Optuna minimises: validation MSE relative to PCA's at the same latent size."""
    return row["ratio_to_pca"] if row.get("ratio_to_pca") is not None else row["val_mse"]


def _val_curve(run_dir: Path) -> dict[int, float]:
    """{epoch: validation MSE} from a trial's metrics.csv (empty when it has none)."""
    try:
        with open(run_dir / "metrics.csv", newline="") as f:
            return {int(r["epoch"]): float(r["val_mse"]) for r in csv.DictReader(f)}
    except (OSError, KeyError, ValueError, csv.Error):
        return {}


# -- results.csv ----------------------------------------------------------------------------------
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


def result_row(trial: Trial, run_dir: Path, summary: dict, status: str = DONE) -> dict:
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


def failed_row(trial: Trial, reason: str) -> dict:
    return {"trial": trial.name, "status": FAILED, **trial.options(), "error": reason}


# -- the sweep folder ---------------------------------------------------------------------------
def prepare_dir(out: Path, identity: dict) -> None:
    """Check that `out` is new, empty or this same sweep (same data and fixed options)."""
    if out.exists() and not out.is_dir():
        raise AekitError(f"{out} exists and is not a folder; pass another -o")
    state = out / STATE
    if state.is_file():
        try:
            before = json.loads(state.read_text())
        except (OSError, ValueError):
            raise AekitError(f"cannot read {state}; pass another -o or delete {out}") from None
        for key in ("data", "fixed"):
            if before.get(key) != identity[key]:
                diff = _describe_change(before.get(key), identity[key])
                raise AekitError(
                    f"{out} holds a sweep with other {'data' if key == 'data' else 'fixed options'} ({diff}); "
                    "run the same command to resume it, or pass another -o"
                )
    elif out.is_dir() and any(out.iterdir()):
        raise AekitError(f"{out} is not empty and holds no sweep ({STATE}); pass a new or empty folder to -o")


def _describe_change(before: Any, now: Any) -> str:
    def show(v: Any) -> str:
        return "default" if v is None else repr(v)

    if isinstance(before, dict) and isinstance(now, dict):
        keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        return "; ".join(f"{k} {show(before.get(k))} before, {show(now.get(k))} now" for k in keys[:3])
    return f"{show(before)} before, {show(now)} now"


def harvest(trials_dir: Path, done: dict[str, dict], wanted: list[Trial] | None) -> None:
    """Trial folders that results.csv does not list: a run that finished (its row was not yet
    written) joins the results; one that did not finish is deleted, to be run again."""
    if not trials_dir.is_dir():
        return
    by_name = {t.name: t for t in wanted or []}
    for folder in sorted(trials_dir.iterdir()):
        if folder.name in done or folder.is_symlink() or not folder.is_dir():
            continue
        summary = _summary(folder)
        trial = by_name.get(folder.name)
        if summary and trial and not str(summary.get("stopped", "")).startswith("interrupted"):
            done[folder.name] = result_row(trial, folder, summary)
        else:
            shutil.rmtree(folder)


def _summary(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def link_best(out: Path, rows: list[dict]) -> None:
    best = best_row(rows)
    if best is not None:
        replace_link(out / "best", f"{TRIALS_DIR}/{best['trial']}")


# -- running ----------------------------------------------------------------------------------------
class Interrupted(Exception):
    """Ctrl-C reached a trial: the sweep stops, keeping every finished trial."""


def run_trial(data: Any, trial: Trial, run_dir: Path, options: dict, on_epoch) -> dict:
    """Train one trial quietly; a trial that cannot run becomes a failed row, not an error."""
    from .api import train

    pruned = []

    def watch(epoch: int, row: dict) -> bool:
        stop = bool(on_epoch(epoch, row))
        if stop:
            pruned.append(epoch)
        return stop

    try:
        run = train(
            data, out=run_dir, verbose=False, on_epoch=watch if on_epoch else None, **options, **trial.options()
        )
    except AekitError as e:
        return failed_row(trial, str(e))
    if str(run.summary.get("stopped", "")).startswith("interrupted"):
        raise Interrupted
    return result_row(trial, run_dir, run.summary, PRUNED if pruned else DONE)


def run_sweep(
    data: Any,
    *,
    latent_dim: Any,
    depth: Any = None,
    lr: Any = None,
    model: Any = None,
    search: str = "grid",
    trials: int | None = None,
    max_time_per_trial: float | None = None,
    out: str | Path | None = None,
    config: str | Path | None = None,
    verbose: bool = True,
    **options: Any,
) -> SweepResults:
    """The sweep behind `aekit sweep` and `aekit.sweep` (see the module docstring)."""
    from .api import load_for
    from .sweep_report import print_results, print_start, trial_line, write_sweep_pages

    if search not in SEARCHES:
        raise AekitError(f"unknown search {search!r}; choose one of {', '.join(SEARCHES)}")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials <= 0):
        raise AekitError(f"--trials must be a positive integer, got {trials!r}")
    if latent_dim is None:
        raise AekitError(f"pass the latent sizes to try, e.g. --latent-dim {EXAMPLES['latent_dim']}")
    for name in SWEPT:
        options.pop(name, None)  # swept: given by the lists, never fixed
    if max_time_per_trial is not None:
        options["max_time"] = max_time_per_trial
    file_values = {k: v for k, v in (load_yaml(config) if config else {}).items() if k not in ("data", "out")}
    fixed = {**file_values, **{k: v for k, v in options.items() if v is not None}}
    base = make_config(fixed)  # unknown or invalid fixed options fail here, before any work
    given = {"model": model, "latent_dim": latent_dim, "depth": depth, "lr": lr}
    space = {
        k: parse_values(k, v) if v is not None else [getattr(base, k)]
        for k, v in given.items()  # an option not swept keeps its fixed value (depth: None = auto)
    }
    combos = grid(space)
    for t in combos:
        make_config(fixed, **t.options())  # every combination is a valid configuration
    if search != "grid":
        _require_optuna(search)  # before decoding anything

    out_dir = Path(out) if out is not None else _new_sweep_dir()
    source = str(data) if isinstance(data, (str, Path)) else f"<{type(data).__name__}>"
    identity = {"data": source, "fixed": _jsonable(fixed)}
    prepare_dir(out_dir, identity)
    dataset = load_for(data, base, verbose)  # decodes once into the cache, or fails clearly
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        out_dir / STATE,
        {**identity, "space": space, "search": search, "trials": trials, "aekit_version": __version__},
    )
    done = read_results(out_dir / RESULTS)
    harvest(out_dir / TRIALS_DIR, done, combos)
    n_planned = min(trials, len(combos)) if trials else (len(combos) if search == "grid" else DEFAULT_TRIALS)
    n_planned = min(n_planned, len(combos))
    if search == "grid":
        planner: GridSearch | OptunaSearch = GridSearch(combos, trials)
    else:
        planner = OptunaSearch(search, space, n_planned, base.seed, done, out_dir / TRIALS_DIR)
    already = len({t.name for t in combos} & done.keys())
    if verbose:
        print_start(dataset.source, len(dataset), out_dir, search, n_planned, len(combos), already, base.max_time)

    interrupted = False
    count = 0
    try:
        while (trial := planner.ask(done)) is not None:
            count += 1
            run_dir = out_dir / TRIALS_DIR / trial.name
            if run_dir.exists():  # left by an unfinished attempt
                shutil.rmtree(run_dir)
            if verbose:
                console.print(f"[bold]trial {already + count}/{n_planned}[/bold] {trial.name} ...", end=" ")
            t0 = time.perf_counter()
            row = run_trial(data, trial, run_dir, fixed, planner.on_epoch(trial))
            planner.tell(trial, row)
            done[trial.name] = row
            write_results(out_dir / RESULTS, list(done.values()))
            link_best(out_dir, list(done.values()))
            if verbose:
                console.print(trial_line(row, time.perf_counter() - t0))
    except (Interrupted, KeyboardInterrupt):
        interrupted = True
        if verbose:
            console.print("\n[yellow]interrupted[/yellow]: finished trials are kept; run the same command to resume")
    rows = sort_rows(list(done.values()))
    write_results(out_dir / RESULTS, rows)
    link_best(out_dir, rows)
    write_sweep_pages(out_dir, rows, title=source)
    if verbose:
        print_results(out_dir, rows)
    if rows and not interrupted and all(r["status"] == FAILED for r in rows):
        raise AekitError(f"every trial failed; the first said: {rows[0]['error']} (all reasons: {out_dir / RESULTS})")
    return SweepResults(path=out_dir, rows=rows, interrupted=interrupted)


def _require_optuna(search: str) -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise AekitError(f"--search {search} needs Optuna: {OPTUNA_HINT} (or use --search grid)") from None


def _new_sweep_dir(base: str = "sweeps") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, i = Path(base) / stamp, 1
    while path.exists():
        i += 1
        path = Path(base) / f"{stamp}-{i}"
    return path


def _jsonable(values: dict) -> dict:
    return json.loads(json.dumps(values, default=str))
