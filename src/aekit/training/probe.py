"""`--precision auto` on a CPU with native bf16: measured, not assumed.

bf16 autocast with channels_last is about twice as fast as fp32 for a conv autoencoder on some
CPUs with AVX512-BF16/AMX, and several times slower on others (oneDNN falls back to slow kernels
for some layer shapes). So before training, a few optimisation steps of a copy of the model on
one batch are timed in each precision and the faster one is used; the choice and the timings are
printed and the choice is written to config.yaml (resume and `aekit encode` use it); bf16 must be
clearly faster (MARGIN), else exact fp32 is used. The copy and the random state are thrown away.
Being measured, the choice can differ between two runs of the same command when the two are
close: pass --precision fp32 (or bf16) for runs that must repeat bit for bit. GPUs keep the rule
(bf16 where supported), and so do several processes (the ranks must agree without a collective).
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from aekit.core.compute import compute_settings
from aekit.training.step import make_optimizer, train_step

PROBE_STEPS = 3  # timed steps per precision, after one warm-up step
MARGIN = 0.8  # bf16 must take at most this fraction of fp32's time: when close, exact fp32 wins


def fastest_precision(model: nn.Module, xn: torch.Tensor, device: torch.device) -> tuple[str, dict[str, float]]:
    """("fp32" or "bf16", seconds per step of each) for `model` on the normalised batch `xn`."""
    seconds: dict[str, float] = {}
    rng = torch.get_rng_state()
    try:
        for precision in ("fp32", "bf16"):
            compute = compute_settings(device, precision)
            trial = compute.prepare(copy.deepcopy(model))
            opt = make_optimizer(trial.parameters(), 1e-9, 0.0)
            train_step(trial, opt, xn, compute)  # warm-up: kernels chosen and memory allocated
            start = time.perf_counter()
            for _ in range(PROBE_STEPS):
                train_step(trial, opt, xn, compute)
            seconds[precision] = (time.perf_counter() - start) / PROBE_STEPS
    finally:
        torch.set_rng_state(rng)
    return ("bf16" if seconds["bf16"] < MARGIN * seconds["fp32"] else "fp32"), seconds
