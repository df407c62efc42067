"""An image folder read under torchrun: listed once, decoded once per machine, in node shards.

- Listing: rank 0 alone lists the folder and stats its files (the cache key's sizes and times);
  the Listing goes to every other process (torch.distributed.broadcast_object_list), which then
  neither lists nor stats anything.
- Split: with N machines, machine k (torchrun's GROUP_RANK) reads files k, k+N, k+2N, ... of the
  sorted listing (cache.Listing.part): a split by file, fixed by the listing and N, so the same
  on every resume with the same files and machines. With one machine the shard is the whole
  folder, under the very cache key a single process uses.
- Decoding: local rank 0 of each machine decodes its shard into the machine's cache while the
  machine's other processes wait; they then map that entry (one copy per machine, cache.py).
- One plan for all: what the data call for (channels, size, 16-bit) is decided from every file's
  header, and each machine sees only its own. The machines exchange what they found (channels,
  16-bit, their most common sizes) and a machine whose shard was read under another plan than the
  whole folder's reads it again under that one (rare: a folder mixing sizes or colour and gray).

Training then samples each rank's items from its machine's shard only (training/fit.py).
"""

from __future__ import annotations

import os
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from aekit.core import distributed
from aekit.core.errors import AekitError
from aekit.data.base import LoadedData
from aekit.data.cache import Listing, read_images_cached, take_listing
from aekit.data.images import infer_size, read_images

SPLIT_RULE = "strided by file: machine k of N reads files k, k+N, k+2N, ... of the sorted listing"


def is_image_path(data: Any) -> bool:
    """DATA is a path that is not a table or an array file: a folder or file of images, or rasters."""
    from aekit.data.memory import ARRAY_SUFFIXES
    from aekit.data.tables import TABLE_SUFFIXES

    return isinstance(data, (str, Path)) and Path(data).suffix.lower() not in (*TABLE_SUFFIXES, *ARRAY_SUFFIXES)


def read_folder_shared(
    root: str | Path,
    ctx: distributed.Context,
    *,
    cache_dir: str | Path | None,
    channels: int | None = None,
    image_size: Any = None,
    extensions: Any = (),
    show_progress: bool = True,
) -> LoadedData:
    """This machine's shard of the image folder `root` (the whole folder on one machine), read
    as the module says; `cache_dir` None decodes without the cache (each process its own)."""
    root = Path(root)
    listing, total = _broadcast_listing(root, extensions, ctx)  # this machine's part, of `total` files
    shard = (ctx.node, ctx.nodes, total)
    if ctx.nodes > 1 and total < ctx.nodes:
        raise AekitError(
            f"{root} holds {total} image files for {ctx.nodes} machines: each machine reads its own "
            "files, so there must be at least one per machine"
        )
    user = {"channels": channels, "image_size": image_size, "high": None}
    first = ctx.local_rank == 0 or cache_dir is None  # decodes (the others of its machine map what it wrote)
    read = partial(_read, root, listing, shard, extensions=extensions, cache_dir=cache_dir)
    data = _read_or_error(lambda: read(user, show_progress=show_progress), first)
    with distributed.waiting(lambda s: f"rank {ctx.rank}: waiting {s:.0f} s for the other machines to read their "
                             "shards", ctx.local_rank == 0 and not ctx.main):  # fmt: skip
        found = distributed.gather(_found(data) if isinstance(data, LoadedData) else data, ctx)
    _raise_first(found)
    found = [f for f in found if f is not None]
    plan = found[0]["plan"] if ctx.nodes == 1 else merged_plan(found, channels, image_size)
    if first and _found(data)["plan"] != plan:  # this shard alone called for another plan than the folder's
        data = _read_or_error(lambda: read(plan, show_progress=show_progress), True)
    _raise_first(distributed.gather(data if isinstance(data, str) else None, ctx))
    if not first:
        with distributed.waiting(
            lambda s: f"rank {ctx.rank}: waiting {s:.0f} s for local rank 0 to read the data", ctx.local_rank == 1
        ):
            distributed.barrier(ctx)
        data = read(plan, show_progress=False, verified=True)
    else:
        distributed.barrier(ctx)
    assert isinstance(data, LoadedData)
    data.n_found = total + len(listing.others)  # in the whole folder
    data.shard = {
        "node": ctx.node,
        "nodes": ctx.nodes,
        "files": total,
        "others": len(listing.others),
        "rule": SPLIT_RULE,
    }
    return data


def _broadcast_listing(root: Path, extensions: Any, ctx: distributed.Context) -> tuple[Listing, int]:
    """This machine's part of rank 0's Listing of `root` (the whole of it on one machine), and the
    number of image files in the folder; rank 0's error (no image there) raised on every rank."""
    packed: tuple | str | None = None
    if ctx.main:
        try:
            packed = pack(take_listing(root, extensions))
        except AekitError as e:
            packed = str(e)
    with distributed.waiting(
        lambda s: f"rank {ctx.rank}: waiting {s:.0f} s for rank 0 to list {root}", not ctx.main and ctx.local_rank == 0
    ):
        packed = distributed.broadcast(packed, ctx)
    if isinstance(packed, str):
        raise AekitError(packed)
    assert packed is not None
    return unpack(packed, ctx.node, ctx.nodes)


def pack(listing: Listing) -> tuple:
    """A Listing in a compact form to send: the paths as one string (after their common start),
    sizes and times as arrays: about 30 bytes a file, where pickled Paths take 48 and 6 us each to
    rebuild (4.8 MB and 0.6 s per 100k files)."""
    names = [str(f) for f in listing.files]
    head = os.path.commonprefix(names) if len(names) > 1 else ""
    stats = np.array(listing.stats, np.int64).reshape(-1, 2)
    return head, "\0".join(n[len(head) :] for n in names), stats, listing.others


def unpack(packed: tuple, node: int, nodes: int) -> tuple[Listing, int]:
    """Machine `node`'s part of a packed Listing (Listing.part), and how many files the whole holds."""
    head, joined, stats, others = packed
    names = joined.split("\0")
    part = stats[node::nodes].tolist()
    return Listing([Path(head + n) for n in names[node::nodes]], others, [tuple(s) for s in part]), len(names)


def _read(root, listing, shard, plan, *, extensions, cache_dir, show_progress, verified=False) -> LoadedData:
    options = {
        "channels": plan["channels"],
        "image_size": plan["image_size"],
        "extensions": extensions,
        "high": plan["high"],
        "show_progress": show_progress,
    }
    if cache_dir is None:
        sizes: Counter = Counter()
        data = read_images(root, listing=(listing.files, listing.others), sizes=sizes, **options)
        data.shard = {"node": shard[0], "nodes": shard[1], "files": shard[2]}
        data.shard["sizes"] = [[h, w, n] for (h, w), n in sizes.most_common(64)]
        return data
    base = None if cache_dir == "default" else cache_dir
    return read_images_cached(root, cache_dir=base, listing=listing, shard=shard, verified=verified, **options)


def _read_or_error(read, go: bool) -> LoadedData | str | None:
    """read() when `go`, its AekitError as text (sent to the other ranks rather than raised alone)."""
    if not go:
        return None
    try:
        return read()
    except AekitError as e:
        return str(e)


def _raise_first(found: list) -> None:
    errors = [f for f in found if isinstance(f, str)]
    if errors:
        raise AekitError(errors[0])


def _found(data: LoadedData) -> dict:
    """What a machine's shard calls for: its plan (channels, size, 16-bit) and its image sizes."""
    c, h, w = data.shape
    plan = {"channels": c, "image_size": [h, w], "high": bool(data.array.dtype == np.uint16)}
    return {"plan": plan, "sizes": (data.shard or {}).get("sizes") or [[h, w, len(data)]]}


def merged_plan(found: list[dict], channels: int | None, image_size: Any) -> dict:
    """The plan of the whole folder from what each machine found in its shard, by the rules of
    images.py: gray (1 channel) only when every shard is, 16-bit when any is, and the most common
    size over all shards (of the sizes each kept), scaled down as for one folder."""
    if channels is None:
        channels = 1 if all(f["plan"]["channels"] == 1 for f in found) else 3
    if image_size is None:
        counts: Counter = Counter()
        for f in found:
            counts.update({(h, w): n for h, w, n in f["sizes"]})
        mode = counts.most_common(1)[0][0]  # ties: the size met first, machine 0's first
        image_size = list(infer_size([mode])[0])
    else:
        image_size = [int(image_size[0]), int(image_size[-1])]
    high = any(f["plan"]["high"] for f in found)
    return {"channels": channels, "image_size": image_size, "high": high}
