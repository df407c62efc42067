"""Where an epoch's batches come from: one training loop (fit.py) over either source.

- `MemoryBatches`: decoded items on the host (in memory, or mapped from the decode cache), drawn
  in a seeded order and gathered onto the device; with node shards each machine draws from its own
  items, and under torchrun each process takes its slice of every global batch.
- `StreamBatches`: tar shards decoded on the fly by DataLoader workers (data/stream.py), one pass
  over all shards in an order drawn from the epoch's seed.

Both yield raw batches `(x, mask)` on the device (x e.g. uint8, (B, C, H, W); mask None or
(B, 1, H, W) True = valid), with a seeded half mirrored left-right when augmenting, and both say
where a mid-epoch checkpoint must go on from (`resume_point`), so that `--resume` continues
exactly as a run that never stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from aekit.core import distributed
from aekit.core.transfer import HostGather, asynchronous, host_cast
from aekit.data.base import Skipped

Batch = tuple[torch.Tensor, torch.Tensor | None]


def mirror(x: torch.Tensor, flips: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mirror the items `flips` (bool, (B,)) of x left-right, in place when x is uint8 or float
    (torch cannot flip uint16: it is made float first); the mask the same way. Returns x."""
    if x.dtype not in (torch.uint8, torch.float32):
        x = x.float()
    picked = torch.nonzero(flips).flatten().to(x.device)
    x[picked] = x[picked].flip(-1)
    if mask is not None:
        mask[picked] = mask[picked].flip(-1)
    return x


def epoch_order(s, gen: torch.Generator) -> tuple[torch.Tensor, int | None]:
    """The epoch's order of the training items, drawn from `gen`; with node shards each machine's
    order of its own items from a seed drawn from `gen` (the same draws on every process, so that
    `gen`, saved by rank 0, resumes every machine), and that seed."""
    if s.shards is None:
        return s.train_idx[torch.randperm(len(s.train_idx), generator=gen)], None
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    return s.shards.order(s.train_idx, seed), seed


class MemoryBatches:
    """An epoch over items held on the host (s.x_all), in an order drawn from `gen`; or, resumed from
    a mid-epoch checkpoint, the same order from the batch after it."""

    def __init__(self, s, gen: torch.Generator, resumed: dict | None) -> None:
        self.s, self.gen = s, gen
        self.step_items = s.shards.node_batch if s.shards else s.cfg.batch_size  # of `order` per step
        self.x = HostGather(s.x_all, s.device)  # on CUDA through a pinned buffer (core/transfer.py)
        self.m = None if s.m_all is None else HostGather(s.m_all, s.device)
        if resumed is None:
            self.order, self.seed = epoch_order(s, gen)
            self.next = 0
        else:
            self.order, self.next, self.seed = resumed["order"], resumed["next"], resumed.get("seed")
            if s.shards:  # rank 0's order was saved: each machine makes its own again from the epoch's seed
                self.order = s.shards.order(s.train_idx, self.seed)
        self.at = self.next

    def __iter__(self) -> Iterator[Batch]:
        while self.next < len(self.order):
            self.at, self.next = self.next, self.next + self.step_items
            yield self.gather(self.at)

    def fraction(self, seen: int) -> float:
        """How far into the epoch the current batch is (a VAE's KL warm-up follows it)."""
        return self.at / len(self.order)

    def resume_point(self) -> dict | None:
        """What a checkpoint after the current batch records; None after the epoch's last batch."""
        if self.next >= len(self.order):
            return None
        return {"order": self.order.cpu(), **({"seed": self.seed} if self.seed is not None else {}), "next": self.next}

    def gather(self, i: int) -> Batch:
        """This rank's part of the global batch order[i : i + step_items], raw on the device, with a
        seeded half mirrored when augmenting; and its mask."""
        s = self.s
        batch = self.order[i : i + self.step_items]
        flips = torch.rand(len(batch), generator=self.gen) < 0.5 if s.cfg.augment == "flip" else None
        if s.shards:  # this machine's items of the global batch, cut among its processes
            part = distributed.rank_slice(batch, distributed.Context(s.ctx.local_rank, s.ctx.local_world))
            batch, flips = batch[part], None if flips is None else flips[part]
        elif s.ctx.active:
            batch = distributed.pad_to_world(batch, self.order, s.ctx)
            if flips is not None:
                flips = torch.cat([flips, flips[: len(batch) - len(flips)]])
            part = distributed.rank_slice(batch, s.ctx)
            batch, flips = batch[part], None if flips is None else flips[part]
        xb, mb = self.x(batch), None if self.m is None else self.m(batch)
        if flips is not None:  # while still 1 byte a value
            xb = mirror(xb, flips, mb)
        return channels_last(xb, s), mb


class StreamBatches:
    """An epoch over tar shards (data/stream.py): every rank reads its part of the shards in an order
    drawn from the epoch's seed; the epoch ends on every rank when the first runs out. Resumed from
    a mid-epoch checkpoint, the epoch is read again from its start and the batches done are left out
    (read and decoded again, not trained on)."""

    def __init__(self, s, gen: torch.Generator, resumed: dict | None) -> None:
        self.s, self.gen = s, gen
        if resumed is None:
            self.seed, self.done = int(torch.randint(0, 2**62, (1,), generator=gen)), 0
        else:
            self.seed, self.done = resumed["seed"], resumed["next"]
        self.b = 0  # batches pulled this epoch

    def __iter__(self) -> Iterator[Batch]:
        from aekit.data.stream import epoch_batches

        s, ctx = self.s, self.s.ctx
        known = {k.path for k in s.stream["skipped"]}
        per_rank = s.cfg.batch_size // ctx.world
        pin = s.device.type == "cuda"  # the workers' batches in pinned memory: asynchronous copies
        batches = epoch_batches(s.stream, per_rank, self.seed, s.stream["exclude"], ctx.rank, ctx.world, pin)
        while True:
            xb = self._pull(batches, known)
            if distributed.any_rank(xb is None, s.device, ctx):
                return  # every rank ends the epoch at the same step, when the first runs out
            self.b += 1
            if self.b <= self.done:  # trained on before the checkpoint this run resumed from
                continue
            flip = s.cfg.augment == "flip"
            xb = host_cast(xb, s.device).to(s.device, non_blocking=asynchronous(s.device), copy=flip)
            if flip:  # on the device, on a copy of what the workers decoded (the pinned batch is copied as it is)
                xb = mirror(xb, torch.rand(len(xb), generator=self.gen) < 0.5)
            yield channels_last(xb, s), None

    def _pull(self, batches, known: set[str]) -> torch.Tensor | None:
        """The next non-empty batch of this rank; None at the end of its part. Members that could not
        be used are added to the run's skipped list once."""
        while True:
            xb, bad = next(batches, (None, None))
            for key, reason in bad or ():
                if key not in known:
                    known.add(key)
                    self.s.stream["skipped"].append(Skipped(key, reason))
            if xb is not None and len(xb):
                return xb
            if bad is None:
                return None

    def fraction(self, seen: int) -> float:
        return min(seen / max(self.s.n_train, 1), 0.999)

    def resume_point(self) -> dict:
        return {"order": torch.zeros(0, dtype=torch.long), "seed": self.seed, "next": self.b}


def channels_last(xb: torch.Tensor, s) -> torch.Tensor:
    """Float and channels_last in one pass, before normalising (when the compute settings say so)."""
    if s.compute.channels_last:
        return xb.to(dtype=torch.float32, memory_format=torch.channels_last)
    return xb


def batches_of(s, gen: torch.Generator, resumed: dict | None) -> MemoryBatches | StreamBatches:
    """The epoch's batch source for this run's data."""
    return (StreamBatches if s.stream else MemoryBatches)(s, gen, resumed)
