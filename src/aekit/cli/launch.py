"""`aekit train --devices N`: the same command under torchrun, checked without importing torch."""

from __future__ import annotations

import os
import subprocess
import sys

from aekit.config.commands import TrainOptions
from aekit.core.errors import AekitError


def launched() -> bool:
    """Inside a torchrun launch of several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def check_devices(o: TrainOptions, batch_size: int | None) -> None:
    if o.data is None and o.resume is None:
        raise AekitError("give DATA to train on (a folder, file or array), or --resume RUN to go on with a run")
    if o.devices is None:
        return
    if o.devices < 1:
        raise AekitError(f"--devices must be a positive integer, got {o.devices}")
    batch = batch_size or 64
    if o.devices > 1 and not launched() and batch % o.devices:
        raise AekitError(f"--batch-size {batch} (the global batch) must be a multiple of --devices {o.devices}")


def launch(n: int, argv: list[str]) -> int:
    """`aekit train --devices N ...` = `torchrun --standalone --nproc-per-node N -m aekit train ...`."""
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--devices":
            skip = True
        elif not a.startswith("--devices="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", "-m", "aekit"]
    return subprocess.call([*cmd, *rest])
