"""Exact resume: the training state at the end of every epoch, saved atomically and loaded safely.

`RUN/state.pt` holds what the next epoch needs to go on exactly as if nothing had happened: the
model and optimizer states, fp16's gradient scaler (its scale and growth count), the
batch-order/augmentation generator and the global random state (a VAE's samples, a DAE's noise),
the epoch and step counters, the learning-rate factor of the NaN guard, the best score and weights
so far, the metrics rows and the time already spent (so a `--max-time` budget is kept across the
interruption). It is written to a temporary file and renamed, so a crash at any moment leaves the
previous epoch's state. It holds only tensors, numbers, strings and containers and is read with
`torch.load(weights_only=True)`: a file that would need to run code to load is refused.

`Loop` is where training stands (what state.pt holds); `Checkpoints` saves it inside epochs too
(--checkpoint-every), with the epoch's resume point (training/batches.py).
"""

from __future__ import annotations

import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aekit.config.train import parse_every
from aekit.core import distributed
from aekit.core.errors import AekitError
from aekit.core.rundir import atomic_write
from aekit.training.step import weights_finite

STATE_FILE = "state.pt"
STATE_FORMAT = 1
COMPLETED = "completed all epochs"  # why a run stopped, when nothing stopped it sooner


def save_state(run_dir: Path, state: dict[str, Any]) -> None:
    payload = {"format": STATE_FORMAT, **state}
    atomic_write(run_dir / STATE_FILE, lambda p: torch.save(payload, p))


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_FILE
    if not path.is_file():
        raise AekitError(
            f"{run_dir} has no {STATE_FILE}: nothing to resume (it is written after every epoch since aekit 0.1)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise AekitError(
            f"refusing to load {path}: it holds Python objects that would run code when loaded "
            f"(aekit loads only tensors and numbers; {_first_line(e)[:120]})"
        ) from None
    except Exception as e:  # truncated or not a torch file at all
        raise AekitError(f"cannot read {path}: {type(e).__name__}: {_first_line(e)[:160]}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise AekitError(f"{path} is not an aekit training state; train again without --resume")
    return state


def _first_line(e: Exception) -> str:
    """An exception's first line of message; its type when it has none (an EOFError of an empty file)."""
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)


@dataclass
class Loop:
    """Where training stands; saved after every epoch (state.pt), and inside epochs with
    --checkpoint-every, so that a run resumes exactly."""

    gen: torch.Generator  # batch order and flips
    best: dict  # val_loss, epoch, mse of the best epoch so far (epoch 0: the untrained model)
    best_state: dict  # its weights
    step: int = 0
    epoch: int = 0  # the last completed epoch
    rows: list[dict] = field(default_factory=list)  # metrics.csv
    lr_factor: float = 1.0  # lowered by the NaN guard
    bad_steps: int = 0
    stopped: str = COMPLETED
    partial: dict | None = None  # in a mid-epoch checkpoint: the epoch's order, next batch, sums so far
    reserve: float = 0.0  # seconds of the time budget kept for the end of the run (defaults.end_reserve)

    def keep_if_best(self, model, val: dict, epoch: int) -> bool:
        if math.isfinite(val["loss"]) and val["loss"] < self.best["val_loss"] and weights_finite(model):
            self.best = {"val_loss": val["loss"], "epoch": epoch, "mse": val["mse"], "step": self.step}
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return True
        return False

    def state(self, model, opt, elapsed: float, device: torch.device, scaler=None) -> dict:
        """What state.pt holds; `scaler` the fp16 GradScaler (compute.py), None otherwise."""
        state = {
            "epoch": self.epoch,
            "step": self.step,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "best": self.best,
            "best_state": self.best_state,
            "rows": self.rows,
            "elapsed": elapsed,
            "lr_factor": self.lr_factor,
            "bad_steps": self.bad_steps,
            "partial": self.partial,
        }
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        if scaler is not None:  # numbers only: read back with weights_only=True
            state["scaler"] = scaler.state_dict()
        return state

    @classmethod
    def restore(cls, state: dict, model, opt, device: torch.device, scaler=None) -> Loop:
        """Go on exactly where the last checkpoint left off (state.py): after its epoch, or inside
        the next one at the batch after the checkpoint; with fp16's `scaler` at its saved scale."""
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        gen = torch.Generator()
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        return cls(
            gen, dict(state["best"]), state["best_state"], state["step"], state["epoch"], list(state["rows"]),
            state["lr_factor"], state["bad_steps"], partial=state.get("partial"),
        )  # fmt: skip


class Checkpoints:
    """--checkpoint-every: the state is also saved inside epochs, every N steps or every so many
    seconds since the last save (the end of an epoch included)."""

    def __init__(self, spec: str, save) -> None:
        self.unit, self.every = parse_every(spec)
        self.save = save  # save(now): state.pt from the loop as it stands
        self.last = time.perf_counter()

    def due(self, step: int, now: float, device: torch.device, ctx) -> bool:
        if self.unit == "steps":
            return step % self.every == 0
        return distributed.any_rank(now - self.last >= self.every, device, ctx)  # every rank at the same step

    def saved(self, now: float) -> None:
        self.last = now
