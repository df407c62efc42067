"""`aekit sweep`: one normal training run per combination of latent size, depth, learning rate and
model, compared in SWEEP_DIR/results.csv, sweep.png and sweep.html, with SWEEP_DIR/best linking
the best trial.

Each trial is `aekit.training.workflow.train(data, out=SWEEP_DIR/trials/<name>, ...)`; the data are decoded once
into the cache, which every trial then reads (same preprocessing, same cache key). results.csv is
rewritten atomically after every trial, so a sweep stopped at any moment resumes when the same
command runs again: finished trials (matched on their parameters, which name them) are kept, a
trial that did not finish is deleted and run again. A trial that cannot run (e.g. a depth too deep
for the image size) is recorded as failed with its reason, and the sweep goes on.

`--search grid` (the default) runs every combination; `random` and `tpe` (Optuna) draw `--trials`
of them, the latent sizes in turn, and prune trials that trail others of their size (OptunaSearch).
Under torchrun, every trial is trained by all the ranks together (distributed.py); rank 0 alone
writes the sweep folder, and the other ranks take its view of the finished trials, so that all
plan the same trials. (The module is not called sweep.py so that `aekit.sweep` stays the function.)
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aekit.config.choices import SEARCHES
from aekit.config.train import load_yaml, make_config
from aekit.core.errors import AekitError
from aekit.core.progress import console
from aekit.core.rundir import SWEEP_MARKER, mark_output, replace_link, write_json
from aekit.sweeps.results import (
    DONE,
    FAILED,
    PRUNED,
    RESULTS,
    SweepResults,
    best_row,
    failed_row,
    read_results,
    result_row,
    sort_rows,
    write_results,
)
from aekit.sweeps.search import (
    EXAMPLES,
    SWEPT,
    GridSearch,
    OptunaSearch,
    Trial,
    grid,
    parse_values,
    require_optuna,
)
from aekit.version import __version__

STATE, TRIALS_DIR = "sweep.json", "trials"
DEFAULT_TRIALS = 10  # --search random|tpe without --trials


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


def harvest(trials_dir: Path, done: dict[str, dict]) -> None:
    """Trial folders that results.csv does not list: a run that finished (its row was not yet
    written) joins the results; one that did not finish is deleted, to be run again. Folders
    not named like a trial are left alone."""
    if not trials_dir.is_dir():
        return
    for folder in sorted(trials_dir.iterdir()):
        trial = Trial.from_name(folder.name)
        if trial is None or folder.name in done or folder.is_symlink() or not folder.is_dir():
            continue
        summary = _summary(folder)
        if summary and not str(summary.get("stopped", "")).startswith("interrupted"):
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
    from aekit.training.workflow import train

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


@dataclass
class _Plan:
    """What a sweep runs: the configuration of its fixed options, the swept values and every
    combination of them."""

    base: Any  # the TrainConfig of the fixed options
    space: dict[str, list]
    combos: list[Trial]


@dataclass
class _Progress:
    """A sweep while its trials run: rank 0 writes `out_dir`; `done` maps trial names to rows."""

    data: Any
    fixed: dict
    out_dir: Path
    ctx: Any
    verbose: bool
    done: dict[str, dict]
    already: int
    n_planned: int


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
    verbose: bool = False,
    **options: Any,
) -> SweepResults:
    """The sweep behind `aekit sweep` and `aekit.sweep` (see the module docstring)."""
    from aekit.core import distributed
    from aekit.data.source import Request, open_data
    from aekit.sweeps.overview import print_start

    _check_arguments(search, trials, latent_dim)
    fixed = _fixed_options(options, max_time_per_trial, config)
    plan = _plan_space(fixed, {"model": model, "latent_dim": latent_dim, "depth": depth, "lr": lr}, search)

    # under torchrun every rank runs every trial together (distributed training); rank 0 alone
    # writes the sweep folder and the others take its decisions, so all ranks plan alike
    ctx = distributed.start(plan.base.device)
    verbose = verbose and ctx.main
    out_dir = Path(distributed.broadcast(str(Path(out) if out is not None else _new_sweep_dir()), ctx))
    source = describe_data(data)
    same = {k: v for k, v in fixed.items() if k not in ("device", "cache_dir")}  # results alike
    identity = {"data": source, "fixed": _jsonable(same)}
    if ctx.main:
        prepare_dir(out_dir, identity)
    dataset = open_data(data, Request.for_training(plan.base), ctx=ctx, verbose=verbose)  # decoded once
    state = {**identity, "space": plan.space, "search": search, "trials": trials, "aekit_version": __version__}
    done = _start_state(out_dir, state, ctx)
    n_planned = min(trials, len(plan.combos)) if trials else (len(plan.combos) if search == "grid" else DEFAULT_TRIALS)
    n_planned = min(n_planned, len(plan.combos))
    if search == "grid":
        planner: GridSearch | OptunaSearch = GridSearch(plan.combos, trials)
    else:
        planner = OptunaSearch(search, plan.space, n_planned, plan.base.seed, done, out_dir / TRIALS_DIR)
    already = len({t.name for t in plan.combos} & done.keys())
    if verbose:
        n_combos, max_time = len(plan.combos), plan.base.max_time
        print_start(dataset.source, len(dataset), out_dir, search, n_planned, n_combos, already, max_time)
    progress = _Progress(data, fixed, out_dir, ctx, verbose, done, already, n_planned)
    interrupted = _run_trials(progress, planner)
    return _finish(progress, source, interrupted)


def _check_arguments(search: str, trials: int | None, latent_dim: Any) -> None:
    if search not in SEARCHES:
        raise AekitError(f"unknown search {search!r}; choose one of {', '.join(SEARCHES)}")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials <= 0):
        raise AekitError(f"--trials must be a positive integer, got {trials!r}")
    if latent_dim is None:
        raise AekitError(f"pass the latent sizes to try, e.g. --latent-dim {EXAMPLES['latent_dim']}")


def _fixed_options(options: dict, max_time_per_trial: float | None, config: str | Path | None) -> dict:
    """The options every trial shares: the config file's, then the call's (a swept option given
    as a fixed one is dropped); `max_time_per_trial` is every trial's max_time."""
    for name in SWEPT:
        options.pop(name, None)  # swept: given by the lists, never fixed
    if max_time_per_trial is None:
        max_time_per_trial = options.pop("max_time", None)  # aekit.sweep(max_time=...) means the same
    if max_time_per_trial is not None:
        options["max_time"] = max_time_per_trial
    # a YAML file's `plugins` are never imported (SECURITY.md): only --plugin / plugins= name modules
    skip = ("data", "out", "plugins")
    file_values = {k: v for k, v in (load_yaml(config) if config else {}).items() if k not in skip}
    return {**file_values, **{k: v for k, v in options.items() if v is not None}}


def _plan_space(fixed: dict, given: dict, search: str) -> _Plan:
    """Check the fixed options and every combination of the swept values before any work."""
    base = make_config(fixed)  # unknown or invalid fixed options fail here, before any work
    space = {
        k: parse_values(k, v) if v is not None else [getattr(base, k)]
        for k, v in given.items()  # an option not swept keeps its fixed value (depth: None = auto)
    }
    combos = grid(space)
    for t in combos:
        make_config(fixed, **t.options())  # every combination is a valid configuration
    if search != "grid":
        require_optuna(search)  # before decoding anything
    return _Plan(base=base, space=space, combos=combos)


def _start_state(out_dir: Path, state: dict, ctx: Any) -> dict[str, dict]:
    """Rank 0 records the sweep (sweep.json) and reads the trials already finished; every rank
    gets those rows."""
    from aekit.core import distributed

    done: dict[str, dict] = {}
    if ctx.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        mark_output(out_dir, SWEEP_MARKER)
        write_json(out_dir / STATE, state)
        done = read_results(out_dir / RESULTS)
        harvest(out_dir / TRIALS_DIR, done)
    return distributed.broadcast(done, ctx)


def _run_trials(progress: _Progress, planner: GridSearch | OptunaSearch) -> bool:
    """Run the trials the planner asks for, recording each; True when Ctrl-C stopped them."""
    from aekit.sweeps.overview import trial_line

    p = progress
    count = 0
    try:
        while (trial := planner.ask(p.done)) is not None:
            count += 1
            run_dir = p.out_dir / TRIALS_DIR / trial.name
            if p.ctx.main and run_dir.exists():  # left by an unfinished attempt
                shutil.rmtree(run_dir)
            if p.verbose:
                console.print(f"[bold]trial {p.already + count}/{p.n_planned}[/bold] {trial.name} ...", end=" ")
            t0 = time.perf_counter()
            row = run_trial(p.data, trial, run_dir, p.fixed, planner.on_epoch(trial))
            planner.tell(trial, row)
            p.done[trial.name] = row
            if p.ctx.main:
                write_results(p.out_dir / RESULTS, list(p.done.values()))
                link_best(p.out_dir, list(p.done.values()))
            if p.verbose:
                console.print(trial_line(row, time.perf_counter() - t0))
    except (Interrupted, KeyboardInterrupt):
        if p.verbose:
            console.print("\n[yellow]interrupted[/yellow]: finished trials are kept; run the same command to resume")
        return True
    return False


def _finish(progress: _Progress, source: str, interrupted: bool) -> SweepResults:
    """The final results.csv, best link and pages; an error when every trial failed."""
    from aekit.sweeps.overview import print_results, write_sweep_pages

    out_dir = progress.out_dir
    rows = sort_rows(list(progress.done.values()))
    if progress.ctx.main:
        write_results(out_dir / RESULTS, rows)
        link_best(out_dir, rows)
        write_sweep_pages(out_dir, rows, title=source)
    if progress.verbose:
        print_results(out_dir, rows)
    if rows and not interrupted and all(r["status"] == FAILED for r in rows):
        raise AekitError(f"every trial failed; the first said: {rows[0]['error']} (all reasons: {out_dir / RESULTS})")
    return SweepResults(path=out_dir, rows=rows, interrupted=interrupted)


def _new_sweep_dir(base: str = "sweeps") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, i = Path(base) / stamp, 1
    while path.exists():
        i += 1
        path = Path(base) / f"{stamp}-{i}"
    return path


def describe_data(data: Any) -> str:
    """What a sweep folder records of its data: a path in full, or an array's type, shape and dtype."""
    if isinstance(data, (str, Path)):
        return str(Path(data).expanduser().resolve())
    shape = getattr(data, "shape", None)
    if shape is None:
        return f"<{type(data).__name__}>"
    return f"<{type(data).__name__} {tuple(shape)} {getattr(data, 'dtype', '')}>"


def _jsonable(values: dict) -> dict:
    return json.loads(json.dumps(values, default=str))
