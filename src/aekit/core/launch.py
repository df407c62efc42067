"""Starting several processes: `aekit train --devices N` runs the same command under torchrun.
Torch-free, so that the command line can decide before importing torch."""

from __future__ import annotations

import os
import subprocess
import sys


def launched() -> bool:
    """True inside a torchrun launch of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


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
