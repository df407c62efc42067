"""Exact resume: the training state at the end of every epoch, saved atomically and loaded safely.

`RUN/state.pt` holds what the next epoch needs to go on exactly as if nothing had happened: the
model and optimizer states, the batch-order/augmentation generator and the global random state
(a VAE's samples, a DAE's noise), the epoch and step counters, the learning-rate factor of the
NaN guard, the best score and weights so far, the metrics rows and the time already spent (so a
`--max-time` budget is kept across the interruption). It is written to a temporary file and
renamed, so a crash at any moment leaves the previous epoch's state. It holds only tensors,
numbers, strings and containers and is read with `torch.load(weights_only=True)`: a file that
would need to run code to load is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from aekit.core.errors import AekitError
from aekit.core.rundir import atomic_write

STATE_FILE = "state.pt"
STATE_FORMAT = 1


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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AekitError(
            f"refusing to load {path}: it holds Python objects that would run code when loaded "
            f"(aekit loads only tensors and numbers; {first[:120]})"
        ) from None
    except Exception as e:  # truncated or not a torch file at all
        raise AekitError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0][:160]}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise AekitError(f"{path} is not an aekit training state; train again without --resume")
    return state
