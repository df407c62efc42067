"""Several processes through PyTorch's own engine: `torchrun ... -m aekit train` (or `--devices N`).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `start()` joins the process group (nccl on CUDA,
gloo on CPU) and gives each rank its device. Apple MPS has no backend: DistributedDataParallel
does not take MPS tensors, so several processes on a Mac are refused (`check_backend`). The trainer then

- splits every global batch of `--batch-size` items into equal contiguous slices, one per rank
  (`rank_slice`; a short last batch is padded by wrapping round, as DistributedSampler does), so
  each rank trains on a disjoint shard of every epoch and the ranks together take the same steps
  as one process with the same global batch;
- lets DistributedDataParallel average the gradients, and all-reduces the loss sums so that
  `metrics.csv` describes the whole data;
- stops all ranks together when `--max-time` is spent.

Only rank 0 writes the run folder; the other ranks write into a temporary folder that is removed
at the end. The decode cache is built by local rank 0 of each machine while the others wait, then
mapped by all; an image folder is listed by rank 0 alone and read in node shards (data/shards.py).
`torchrun ... -m aekit encode|score` shares the items out the same way (`shard_rows`), gathers the
results and rank 0 writes the one merged output.

A process that waits long for the others (to join the process group, or at the barrier around
reading the data) says so every WAIT_REPORT_S seconds, one process per machine, so a job whose
peer never started is not silent. How long it waits before giving up is the process group's
timeout: AEKIT_DIST_TIMEOUT seconds, 60 minutes by default (`timeout`), longer than NCCL's own
10 minutes, which a first decode of a large folder by local rank 0 can outlast.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from aekit.core.devices import mps_available
from aekit.core.errors import AekitError
from aekit.core.launch import launched

WAIT_REPORT_S = 20.0  # a process waiting this long for the others says so, and again every as long
TIMEOUT_S = 3600.0  # default AEKIT_DIST_TIMEOUT: how long a collective (a barrier) waits for the others


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1  # processes on this machine (torchrun's LOCAL_WORLD_SIZE)
    node: int = 0  # this machine's index among the job's (torchrun's GROUP_RANK)
    nodes: int = 1  # machines in the job

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def context() -> Context:
    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    rank, world = dist.get_rank(), dist.get_world_size()
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    nodes = _env_int("GROUP_WORLD_SIZE", max(1, world // max(local_world, 1)))
    node = _env_int("GROUP_RANK", rank // max(local_world, 1))
    return Context(rank, world, _env_int("LOCAL_RANK", 0), local_world, node, nodes)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return default


def check_backend(device: str, processes: int | str = "several") -> None:
    """Several processes run on CUDA (nccl) or on the CPU (gloo); on Apple MPS, which no process
    group backend serves and DistributedDataParallel does not take, a one-line error (training,
    and encode/score under torchrun)."""
    kind = device.split(":")[0]
    on_mps = kind == "mps" or (kind == "auto" and not torch.cuda.is_available() and mps_available())
    if on_mps:
        raise AekitError(
            f"{processes} processes cannot run on Apple MPS (no process group backend or DistributedDataParallel "
            "supports it): run one process (without --devices or torchrun; it uses MPS), or pass --device cpu for "
            "several CPU processes"
        )


def start(device: str = "auto") -> Context:
    """Join the process group of a torchrun launch (idempotent); one process: a trivial context."""
    if not launched():
        return Context()
    if not dist.is_initialized():
        check_backend(device, os.environ.get("WORLD_SIZE", "several"))
        stop_with_launcher()
        use_cuda = device.split(":")[0] in ("auto", "cuda") and torch.cuda.is_available()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        world, rank = os.environ.get("WORLD_SIZE", "?"), os.environ.get("RANK", "?")
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"

        def joining(seconds: float) -> str:
            return (
                f"rank {rank} of {world}: waiting for the others to join at {where}; started {seconds:.0f} s ago "
                "(is every machine of the job running it?)"
            )

        with waiting(joining, local_rank == 0):
            dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timeout())
    return context()


def timeout() -> timedelta:
    """How long a process waits at a barrier or collective for the others before the job fails:
    AEKIT_DIST_TIMEOUT seconds, default TIMEOUT_S (60 min). NCCL's default, 10 minutes, is shorter
    than the first decode of a large image folder, which local rank 0 does while the others wait."""
    raw = os.environ.get("AEKIT_DIST_TIMEOUT", "").strip()
    if not raw:
        return timedelta(seconds=TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= 365 * 86400):
        raise AekitError(
            f"AEKIT_DIST_TIMEOUT={raw!r}: give the seconds a process waits for the others (e.g. 7200), or unset it "
            f"for the default {TIMEOUT_S:.0f}"
        )
    return timedelta(seconds=seconds)


def stop_with_launcher() -> None:
    """Linux: ask the kernel for a SIGTERM when the process that started this one (torchrun's agent)
    dies. torchrun starts its workers in sessions of their own, so an agent killed with -9 left them
    training on, unseen; now they stop as on Ctrl-C (best model kept, state saved, exit 143).
    Only under torchrun's agent (TORCHELASTIC_RUN_ID): the kernel sends the signal when the *thread*
    that started the process ends, which other launchers may do while they live on."""
    if not sys.platform.startswith("linux") or "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        parent = os.getppid()
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: nothing to ask for
        return
    if os.getppid() != parent:  # the agent died before the request
        os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def waiting(message: Callable[[float], str], report: bool = True, every: float | None = None):
    """While the block runs (e.g. a wait for other processes), print `message(seconds so far)` to
    stderr every `every` seconds (WAIT_REPORT_S), from a thread that ends with the block."""
    if not report:
        yield
        return
    every = WAIT_REPORT_S if every is None else every
    done, t0 = threading.Event(), time.monotonic()

    def report_until_done() -> None:
        while not done.wait(every):
            print(f"aekit: {message(time.monotonic() - t0)}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=report_until_done, name="aekit-waiting", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def stop() -> None:
    """Leave the process group together: a rank that exits while another still talks to it makes
    gloo abort the other."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank_device(name: str, ctx: Context) -> str:
    """Each rank's device: cuda:LOCAL_RANK for CUDA (auto included), else the device asked for."""
    if ctx.active and name.split(":")[0] in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{ctx.local_rank}"
    return name


def rank_slice(global_idx: torch.Tensor, ctx: Context) -> slice:
    """This rank's contiguous slice of a global batch padded to a multiple of the world size."""
    per = len(global_idx) // ctx.world
    return slice(ctx.rank * per, (ctx.rank + 1) * per)


def pad_to_world(global_idx: torch.Tensor, order: torch.Tensor, ctx: Context) -> torch.Tensor:
    """A global batch padded (by wrapping round the epoch's order) to a multiple of the world size."""
    short = -len(global_idx) % ctx.world
    return torch.cat([global_idx, order[:short]]) if short else global_idx


def per_rank_batch(batch_size: int, ctx: Context) -> int:
    if batch_size % ctx.world:
        raise AekitError(
            f"--batch-size {batch_size} (the global batch) must be a multiple of the {ctx.world} processes; "
            f"pass e.g. --batch-size {batch_size - batch_size % ctx.world or ctx.world}"
        )
    return batch_size // ctx.world


def all_sum(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.active:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, device: torch.device, ctx: Context) -> bool:
    """True on every rank when `flag` is true on any (e.g. the time budget is spent)."""
    if not ctx.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast(value, ctx: Context):
    """Rank 0's value on every rank (any picklable object: a path, a decision)."""
    if not ctx.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: Context) -> None:
    if ctx.active:
        dist.barrier()


def gather(value, ctx: Context) -> list:
    """Every rank's value (any picklable object), in rank order, on every rank."""
    if not ctx.active:
        return [value]
    out = [None] * ctx.world
    dist.all_gather_object(out, value)
    return out


def shard_rows(n: int, ctx: Context) -> slice:
    """This rank's contiguous share of n items (encoding, scoring): nearly equal, in rank order."""
    per = -(-n // ctx.world)
    return slice(min(n, ctx.rank * per), min(n, (ctx.rank + 1) * per))


def gather_rows(part, ctx: Context):
    """The ranks' numpy results concatenated in rank order, on every rank."""
    if not ctx.active:
        return part
    import numpy as np

    parts = [None] * ctx.world
    dist.all_gather_object(parts, part)
    return np.concatenate(parts)


def map_rows(fn, n: int, empty, ctx: Context):
    """`fn(rows)` on this rank's share (a slice) of n items, gathered from all ranks in order;
    `empty` stands for a rank whose share is empty."""
    part = shard_rows(n, ctx)
    return gather_rows(fn(part) if part.stop > part.start else empty, ctx)


@contextmanager
def local_rank_first(ctx: Context):
    """Local rank 0 goes first (e.g. builds the decode cache), the other ranks after it."""
    if ctx.active and ctx.local_rank != 0:
        with waiting(
            lambda s: f"rank {ctx.rank}: waiting {s:.0f} s for local rank 0 to read the data", ctx.local_rank == 1
        ):
            dist.barrier()
    try:
        yield
    finally:
        if ctx.active and ctx.local_rank == 0:
            with waiting(lambda s: f"rank {ctx.rank}: waiting {s:.0f} s for the other processes to read the data"):
                dist.barrier()
