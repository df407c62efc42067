"""The space of a sweep and the order it is walked in: a `Trial` is one combination of the swept
options (model, latent size, depth, learning rate); `GridSearch` takes every one, `OptunaSearch`
draws them with Optuna (random or TPE) and prunes trials that trail others of their latent size."""

from __future__ import annotations

import csv
import itertools
import math
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aekit.config.choices import MODELS
from aekit.core.errors import AekitError
from aekit.sweeps.results import DONE, PRUNED

SWEPT = ("model", "latent_dim", "depth", "lr")  # the options a sweep varies; the rest are fixed
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

    @classmethod
    def from_name(cls, name: str) -> Trial | None:
        """The trial a folder name stands for (None for any other name)."""
        m = re.fullmatch(r"(\w+)-latent(\d+)-depth(auto|\d+)-lr([0-9.e+-]+)", name)
        if not m or m[1] not in MODELS:
            return None
        try:
            trial = cls(m[1], int(m[2]), None if m[3] == "auto" else int(m[3]), float(m[4]))
        except ValueError:
            return None
        return trial if trial.name == name else None


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
        require_optuna(method)
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


def require_optuna(search: str) -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise AekitError(f"--search {search} needs Optuna: {OPTUNA_HINT} (or use --search grid)") from None
