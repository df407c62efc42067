"""Everything training needs before its first step: split, normalise, build the model, start at PCA.

`prepare` reads nothing but the decoded data and the config, writes the run's config.yaml and
pca.safetensors, and returns a `Setup` that the loop (fit.py) and the end of the run
(artefacts.py) share.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from aekit.config.train import TrainConfig
from aekit.core import distributed
from aekit.core.compute import ComputeSettings, compute_settings, cpu_has_bf16, make_repeatable
from aekit.core.devices import resolve_device
from aekit.core.errors import AekitError
from aekit.core.plots import preview_channels
from aekit.core.rundir import write_json, write_yaml
from aekit.data.base import LoadedData
from aekit.data.kind import DataKind
from aekit.data.normalize import Normalizer, channel_stats
from aekit.models import create_model
from aekit.models.base import AEModule
from aekit.models.checkpoint import count_parameters, model_meta, save_pca
from aekit.models.conv import auto_width, max_depth
from aekit.models.pca import PCA, fit_pca, pca_rows
from aekit.models.registry import factory_path, is_builtin
from aekit.training.defaults import resolve_for_data
from aekit.training.probe import fastest_precision

# Table models up to this many parameters train on one CPU thread: their matrices are too small
# to share, and waiting on busy threads cost 10-40x (1.5 ms vs 14-61 ms a step, 12 columns, 2 cores)
SMALL_MODEL = 250_000


@dataclass
class Setup:
    cfg: TrainConfig  # with everything inferred from the data filled in
    kind: DataKind
    ctx: distributed.Context
    device: torch.device
    train_idx: torch.Tensor  # item numbers, sorted
    val_idx: torch.Tensor
    eval_idx: torch.Tensor  # what validation measures: val_idx, or train_idx when there is no validation split
    x_all: torch.Tensor  # (N, C, H, W) raw units, on the host
    m_all: torch.Tensor | None  # (N, 1, H, W) True = valid (rasters with nodata)
    normalizer: Normalizer
    model: AEModule
    train_model: torch.nn.Module  # the same parameters: maybe channels_last, compiled, wrapped in DDP
    compute: ComputeSettings
    pca: PCA
    meta: dict  # model.json: how to rebuild the model
    n_params: int
    rgb: list[int] | None  # channels shown in previews
    shards: NodeShards | None = None  # an image folder read in node shards (several machines)
    stream: dict | None = None  # tar shards streamed (data/stream.py): x_all is their first sample

    @property
    def n_train(self) -> int:
        """Training items of the whole run (of every machine's shard)."""
        if self.stream:
            return self.stream["n_train"]
        return self.shards.n_train if self.shards else len(self.train_idx)

    @property
    def n_val(self) -> int:
        return self.shards.n_val if self.shards else len(self.val_idx)

    @property
    def epoch_items(self) -> int:
        """Items an epoch takes, for the budget: the training items, or with node shards as many
        global batches as the largest shard needs (the smaller ones wrap round)."""
        if self.stream:
            return self.stream["n_train"]
        return self.shards.steps * self.cfg.batch_size if self.shards else len(self.train_idx)

    @property
    def epoch_length(self) -> int:
        """The length of this process's epoch order (fit.py); none when streaming."""
        if self.stream:
            return 0
        return self.shards.steps * self.shards.node_batch if self.shards else len(self.train_idx)


SHARDS_FILE = "shards.json"


@dataclass(frozen=True)
class NodeShards:
    """Training on an image folder read in node shards (data/shards.py): each machine's processes
    draw their items from its shard only. Every step each machine takes `node_batch` items of its
    shard (the global batch / the machines), cut into equal slices among its processes; an epoch is
    `steps` steps for every machine, enough for the largest shard, whose order the smaller ones
    wrap round. Each machine splits its shard into training and validation items itself; the
    validation metrics of each epoch are summed over all machines."""

    node: int
    nodes: int
    node_batch: int
    steps: int
    counts: tuple[tuple[int, int], ...]  # (training, validation) items of each machine

    @property
    def n_train(self) -> int:
        return sum(t for t, _ in self.counts)

    @property
    def n_val(self) -> int:
        return sum(v for _, v in self.counts)

    def order(self, train_idx: torch.Tensor, seed: int) -> torch.Tensor:
        """This machine's epoch order of its training items, from the epoch's seed (the same on
        every process), wrapped round to `steps` batches of `node_batch`."""
        perm = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed + self.node))
        order = train_idx[perm]
        length = self.steps * self.node_batch
        return order.repeat(math.ceil(length / len(order)))[:length] if len(order) < length else order

    def describe(self, shard: dict) -> dict:
        """What RUN/shards.json and summary.json record of the split."""
        return {
            "rule": shard["rule"],
            "machines": self.nodes,
            "files": shard["files"],
            "items": [{"machine": k, "train": t, "val": v} for k, (t, v) in enumerate(self.counts)],
            "batch_per_machine": self.node_batch,
            "steps_per_epoch": self.steps,
        }


def node_shards(data: LoadedData, cfg: TrainConfig, ctx: distributed.Context, n_train: int, n_val: int) -> NodeShards:
    """The NodeShards of this run, from every machine's counts (exchanged)."""
    if ctx.world != ctx.nodes * ctx.local_world:
        raise AekitError(
            f"{ctx.world} processes on {ctx.nodes} machines of {ctx.local_world}: node shards need as many processes "
            "on every machine (torchrun --nproc-per-node)"
        )
    counts = {}
    for node, t, v in distributed.gather((data.shard["node"], n_train, n_val), ctx):
        counts[node] = (t, v)
    node_batch = cfg.batch_size // ctx.nodes
    steps = math.ceil(max(max(t for t, _ in counts.values()), 1) / node_batch)
    return NodeShards(ctx.node, ctx.nodes, node_batch, steps, tuple(counts[k] for k in range(ctx.nodes)))


def pooled_stats(mean: list[float], std: list[float], n: int, ctx, min_std: float) -> tuple[list[float], list[float]]:
    """The per-channel mean and std of every machine's training items, from each machine's own
    (weighted by its item count; one process per machine counts)."""
    parts = [p for p in distributed.gather((n, mean, std) if ctx.local_rank == 0 else None, ctx) if p is not None]
    w = np.array([p[0] for p in parts], np.float64)
    m = np.array([p[1] for p in parts], np.float64)
    sd = np.array([p[2] for p in parts], np.float64)
    total = (w[:, None] * m).sum(0) / w.sum()
    var = (w[:, None] * (sd**2 + m**2)).sum(0) / w.sum() - total**2
    out = np.maximum(np.sqrt(np.maximum(var, 0.0)), np.maximum(min_std, 1e-6 * np.abs(total)))
    return total.tolist(), out.tolist()


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded train/validation split; at least one item of each when n >= 2 and val_fraction > 0."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(1, n_val), n - 1)
    else:
        n_val = 0
    return perm[n_val:].sort().values, perm[:n_val].sort().values


MIN_TRAIN_ROWS, MIN_VAL_ROWS = 8, 1  # a table's least: rows to fit on, and to set the anomaly threshold


def min_table_rows(val_fraction: float) -> int:
    """The fewest rows a table can train on with this validation fraction (split as split_indices)."""
    n = MIN_TRAIN_ROWS
    while True:
        n_val = len(split_indices(n, val_fraction, 0)[1])
        if n - n_val >= MIN_TRAIN_ROWS and (n_val >= MIN_VAL_ROWS or val_fraction == 0):
            return n
        n += 1


def check_rows(data: LoadedData, cfg: TrainConfig) -> None:
    """A table too small to train on and validate is a one-line error naming the minimum."""
    need = min_table_rows(cfg.val_fraction)
    if data.columns is None or len(data) >= need:
        return
    why = f"{MIN_TRAIN_ROWS} to fit on"
    if cfg.val_fraction > 0:
        why += f" and {MIN_VAL_ROWS} to set the anomaly threshold with --val-fraction {cfg.val_fraction:g}"
    raise AekitError(
        f"{data.source} has {len(data)} row(s); a table needs at least {need} rows to train ({why}): add rows"
        + (", or change --val-fraction" if cfg.val_fraction > 0 else "")
    )


def prepare(data: LoadedData, cfg: TrainConfig, run_dir: Path) -> Setup:
    check_rows(data, cfg)
    ctx = distributed.context()  # rank and world size under torchrun; one process otherwise
    device = resolve_device(distributed.rank_device(cfg.device, ctx))
    distributed.per_rank_batch(cfg.batch_size, ctx)  # the global batch must split evenly
    torch.manual_seed(cfg.seed)
    kind = DataKind.of(data)
    c, h, w = data.shape
    rgb = preview_channels(cfg.rgb_bands, data.raster["bands"] if data.raster else None, c)  # checked early

    sharded = ctx.active and data.shard is not None and data.shard["nodes"] > 1
    train_idx, val_idx = split_indices(len(data), cfg.val_fraction, cfg.seed + (ctx.node if sharded else 0))
    shards = node_shards(data, cfg, ctx, len(train_idx), len(val_idx)) if sharded else None
    n_epoch = shards.steps * cfg.batch_size if shards else len(train_idx)
    stream = None
    if data.stream:  # the training items: all but the validation items of the first sample (an estimate)
        n_epoch = max(data.stream["estimate"] - len(val_idx), 1)
        stream = {**data.stream, "n_train": n_epoch, "exclude": [data.ids[i] for i in val_idx.tolist()]}
        stream["skipped"] = data.skipped  # the epochs add what they could not use
    cfg = resolve_for_data(cfg, data, n_epoch)  # arch, latent size, epochs (see defaults.py)
    x_all = torch.from_numpy(data.array)  # batches go to the device through a pinned buffer (core/transfer.py)
    m_all = None if data.mask is None else torch.from_numpy(data.mask)
    min_std = 1e-12 if kind.table else 1e-3
    constant = 1.0 if kind.table else None  # a column constant in training is only centred (StandardScaler)
    mean, std = channel_stats(
        data.array, data.scale, train_idx.numpy(), min_std=min_std, mask=data.mask, constant_std=constant
    )
    if shards:  # every process normalises alike: the statistics of all machines' training items
        mean, std = pooled_stats(mean, std, len(train_idx), ctx, min_std)
    normalizer = Normalizer(data.scale, mean, std).to(device)

    model, kwargs = build_model(cfg, data, normalizer)

    def linear_baseline() -> PCA:
        rows = train_idx[pca_rows(len(train_idx), c * h * w, cfg.seed)]
        return fit_pca(copy.deepcopy(normalizer).cpu().normalize(x_all[rows]), cfg.latent_dim, cfg.seed)

    # with node shards rank 0 fits it on its machine's items and sends it: every process starts alike
    pca = distributed.broadcast(linear_baseline() if ctx.main else None, ctx) if shards else linear_baseline()
    model.init_from_pca(pca.mean, pca.components, variance=pca.variance)  # start where the linear baseline ends
    if cfg.precision == "auto" and device.type == "cpu" and cpu_has_bf16() and not ctx.active:
        batch = train_idx[: cfg.batch_size]
        xn = normalizer.normalize(x_all[batch].to(device))
        precision, seconds = fastest_precision(model.to(device), xn, device)
        cfg = replace(cfg, precision=precision)
        ms = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in seconds.items())
        data.notes.append(f"precision auto: {precision}, the faster here (a training step: {ms})")
    compute = compute_settings(device, cfg.precision, cfg.compile)
    make_repeatable(compute)  # fp32 on CUDA: bit for bit (cuDNN deterministic, no TF32)
    train_model = training_module(model, compute, ctx)  # the same parameters
    save_pca(run_dir, pca)
    if shards:
        if ctx.main:
            write_json(run_dir / SHARDS_FILE, shards.describe(data.shard))
        data.notes.append(
            f"node shards: machine {ctx.node} of {ctx.nodes} trains on its {len(data)} of the {data.shard['files']} "
            f"files ({data.shard['rule']}); {shards.node_batch} items of each global batch, {shards.steps} steps an "
            "epoch"
        )
    resolved = {"columns": data.columns} if kind.table else {"channels": c, "image_size": [h, w]}
    cfg = replace(cfg, depth=kwargs.get("depth", cfg.depth), width=kwargs.get("width", cfg.width), **resolved)
    write_yaml(run_dir / "config.yaml", {"data": data.source, **cfg.to_dict()})
    meta = model_meta(cfg.arch, kwargs, normalizer, str(data.array.dtype), source=data.source, **_meta_extra(data, cfg))

    n_params = count_parameters(model)
    if kind.table and device.type == "cpu" and n_params <= SMALL_MODEL:
        torch.set_num_threads(1)
    if cfg.latent_dim >= c * h * w:
        data.notes.append(f"latent_dim {cfg.latent_dim} >= the {c * h * w} input values: no compression")
    eval_idx = val_idx if len(val_idx) else train_idx  # a single image: report on what we have
    return Setup(
        cfg, kind, ctx, device, train_idx, val_idx, eval_idx, x_all, m_all, normalizer, model, train_model,
        compute, pca, meta, n_params, rgb, shards, stream,
    )  # fmt: skip


def training_module(model: AEModule, compute: ComputeSettings, ctx: distributed.Context) -> torch.nn.Module:
    """What the steps run, with the model's parameters: on the device (maybe channels_last), in
    DistributedDataParallel under torchrun (gradients averaged over the ranks in backward()), then
    compiled with --compile. Compiling the DDP module, not wrapping a compiled model in DDP, is
    PyTorch's way: DDPOptimizer splits the graph at DDP's gradient buckets, so the all-reduce of one
    bucket overlaps the backward pass of the next."""
    module = compute.place(model)
    if ctx.active:
        device = compute.device
        module = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None
        )
    return compute.compiled(module)


def build_model(cfg: TrainConfig, data: LoadedData, normalizer: Normalizer) -> tuple[AEModule, dict]:
    """The model for `data` and the keyword arguments that rebuild it (saved in model.json)."""
    c, h, w = data.shape
    kwargs = {"in_shape": (c, h, w), "latent_dim": cfg.latent_dim, "depth": cfg.depth}
    if not is_builtin(cfg.arch):  # a user's model: --depth and --width only when given
        kwargs.update(width=cfg.width)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
    elif cfg.arch == "conv":
        kwargs["width"] = cfg.width or auto_width(c)
    elif cfg.arch == "mlp":
        kwargs["width"] = cfg.width
    deepest = max_depth(h, w)
    if cfg.arch in ("conv", "basic") and cfg.depth is not None and cfg.depth > deepest:
        raise AekitError(
            f"depth {cfg.depth} is too deep for {h}x{w} images (at most {deepest}); pass a smaller --depth"
        )
    if cfg.model != "ae":
        kwargs.update(variant=cfg.model, variant_options=cfg.variant_options())
    if cfg.model == "vae" and cfg.recon_loss == "bce" and data.scale == 1.0:
        lo, hi = float(np.min(data.array)), float(np.max(data.array))
        if lo < 0 or hi > 1:
            raise AekitError(
                f"--recon-loss bce needs data in [0, 1]; these float values span [{lo:g}, {hi:g}]: use mse"
            )
    model = create_model(cfg.arch, **kwargs)
    model.use_normalizer(normalizer)  # models that work in pixel units too (noise, Bernoulli)
    if cfg.arch == "mlp":
        kwargs["width"] = getattr(model, "backbone", model).width  # resolved (a VAE or DAE wraps the mlp)
    if is_builtin(cfg.arch):
        kwargs["depth"] = len(model.sizes) - 1  # resolved: the run rebuilds exactly this network
    return model, kwargs


def _meta_extra(data: LoadedData, cfg: TrainConfig) -> dict:
    """What model.json records of tables and rasters besides the network."""
    extra = {"table": {"columns": data.columns, "id_column": data.id_name}} if data.columns is not None else {}
    if not is_builtin(cfg.arch):  # a user's model: where aekit.load finds it again (models/registry.py)
        extra["factory"] = factory_path(cfg.arch)
        if extra["factory"] is None:
            data.notes.append(
                f"model {cfg.arch!r} is defined in a script (__main__) or a function: aekit.load in another "
                "process cannot import it; define it in a module"
            )
    if data.raster:
        extra["raster"] = {**data.raster, "rgb_bands": cfg.rgb_bands}
    return extra
