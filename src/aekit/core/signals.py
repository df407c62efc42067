"""Stopping a command from outside: Ctrl-C (SIGINT) and SIGTERM, which timeout, SLURM and
Kubernetes send. During training both stop it cleanly (the best model kept, how to resume said);
the command exits with 130 after Ctrl-C and 143 after SIGTERM, as a shell reports them."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

INTERRUPTED = "interrupted (Ctrl-C)"
TERMINATED = "interrupted (SIGTERM)"


class Terminated(KeyboardInterrupt):
    """SIGTERM during training: handled as Ctrl-C is."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises `Terminated` in the main thread while the block runs (other threads cannot
    take signals: there it does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    stopping = []

    def terminate(signum, frame):
        if stopping:  # already stopping cleanly: a repeat (a dying parent can send two) changes nothing
            return
        stopping.append(signum)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code(stopped: str) -> int:
    """The exit code of a training command from how the run stopped."""
    return 143 if stopped == TERMINATED else 130 if stopped.startswith("interrupted") else 0
