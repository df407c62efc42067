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

PROBE_ROUNDS = 4  # alternating rounds, each one timed step per precision, after one warm-up step each
PROBE_SECONDS = 3.0  # no new round once the probe has taken this long (large models: fewer rounds)
MARGIN = 0.8  # bf16 must take at most this fraction of fp32's time: when close, exact fp32 wins


def fastest_precision(model: nn.Module, xn: torch.Tensor, device: torch.device) -> tuple[str, dict[str, float]]:
    """("fp32" or "bf16", seconds per step of each) for `model` on the normalised batch `xn`.

    The precisions take turns, one step each per round, and each keeps its fastest step: other
    work on the machine only ever adds time, so the minimum is what the step itself costs, and
    taking turns gives both the same conditions (a shared VM varies by 40% between seconds)."""
    rng = torch.get_rng_state()
    start = time.perf_counter()
    try:
        trials = {}
        for precision in ("fp32", "bf16"):
            compute = compute_settings(device, precision)
            trial = compute.prepare(copy.deepcopy(model))
            trials[precision] = (trial, make_optimizer(trial.parameters(), 1e-9, 0.0), compute)
            train_step(*trials[precision][:2], xn, compute)  # warm-up: kernels chosen and memory allocated
        seconds = {precision: float("inf") for precision in trials}
        for r in range(PROBE_ROUNDS):
            if r and time.perf_counter() - start > PROBE_SECONDS:
                break
            for precision, (trial, opt, compute) in trials.items():
                t0 = time.perf_counter()
                train_step(trial, opt, xn, compute)
                seconds[precision] = min(seconds[precision], time.perf_counter() - t0)
    finally:
        torch.set_rng_state(rng)
    return ("bf16" if seconds["bf16"] < MARGIN * seconds["fp32"] else "fp32"), seconds
