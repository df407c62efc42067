"""`aekit encode` and `aekit score` over tar shards: one batch in memory at a time.

The samples are read in shard order and decoded under the model's own plan (channels, size, bit
depth), never cached; only the results (a code or a score per item, a few bytes) and, for
score's picture, the `keep` items with the highest values so far are held. Under torchrun each
rank reads its own shards (r, r + world, ...) and the results are gathered in rank order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aekit.core import distributed
from aekit.core.errors import AekitError
from aekit.data.base import Skipped
from aekit.data.stream import expand_shards, read_batches, source_name


@dataclass
class ShardPass:
    """What one pass over the shards gave: every item's id and value (rows of `values`), and the
    `keep` items with the highest values, highest first (`top_x` raw pixels, `top_values`)."""

    ids: list[str]
    values: np.ndarray
    source: str
    skipped: list[Skipped] = field(default_factory=list)
    top_x: np.ndarray | None = None
    top_values: np.ndarray | None = None
    id_name: str = "key"  # ids are shard/key

    def __len__(self) -> int:
        return len(self.ids)


def shard_pass(
    model: Any,
    data: Any,
    fn: Callable[[np.ndarray], np.ndarray],
    *,
    batch_size: int,
    ctx: distributed.Context,
    verbose: bool = True,
    keep: int = 0,
) -> ShardPass:
    """`fn(x)` for every sample of the tar shards DATA, x a (B, C, H, W) batch of raw pixels; with
    `keep` the `keep` items of highest value (fn must then give one number per item)."""
    from aekit.core.progress import console

    c, h, w = model.input_shape
    shards = expand_shards(str(data))
    source = source_name(data)
    if verbose:
        console.print(f"reading {len(shards)} tar shard(s) of {source} on the fly (not cached)")
    skipped: list[Skipped] = []
    ids: list[str] = []
    parts: list[np.ndarray] = []
    top_x, top_v = None, None
    high = model.meta["input"]["dtype"] == "uint16"
    batches = read_batches(
        data, channels=c, size=(h, w), high=high, batch=batch_size, skipped=skipped, rank=ctx.rank, world=ctx.world
    )
    for keys, x in batches:
        values = np.asarray(fn(x))
        ids += keys
        parts.append(values)
        if keep:  # the highest so far and this batch's
            top_x, top_v = _highest([(top_x, top_v), (x, values)], keep)
    values = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    result = ShardPass(ids, values, source, skipped, top_x, top_v)
    if ctx.active:
        result = _gathered(result, ctx, keep)
    if not result.ids:
        first = f" (first skipped: {result.skipped[0].path}: {result.skipped[0].reason})" if result.skipped else ""
        raise AekitError(f"no readable image sample in {source}: each sample needs a .png/.jpg/... member{first}")
    return result


def _gathered(part: ShardPass, ctx: distributed.Context, keep: int) -> ShardPass:
    """Every rank's results in rank order, on every rank."""
    import torch.distributed as dist

    parts: list[Any] = [None] * ctx.world
    dist.all_gather_object(parts, (part.ids, part.values, part.skipped, part.top_x, part.top_values))
    ids = [i for p in parts for i in p[0]]
    values = np.concatenate([p[1] for p in parts if len(p[1])]) if ids else part.values
    skipped = [s for p in parts for s in p[2]]
    top_x, top_v = _highest([(p[3], p[4]) for p in parts], keep) if keep else (None, None)
    return ShardPass(ids, values, part.source, skipped, top_x, top_v)


def _highest(pairs: list[tuple[np.ndarray | None, np.ndarray | None]], keep: int) -> tuple:
    """(x, values) of the `keep` highest values among the (x, values) pairs, highest first (the
    earlier of equal values first); pairs of None are left out."""
    pairs = [(x, v) for x, v in pairs if v is not None and len(v)]
    if not pairs:
        return None, None
    x, v = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    order = np.argsort(-v, kind="stable")[:keep]
    return x[order], v[order]
