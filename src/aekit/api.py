"""The Python API: `aekit.train(data, **options) -> Run`, `aekit.load(run) -> Autoencoder`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import TrainConfig, load_yaml, make_config
from .data import load_data
from .inference import Autoencoder, load
from .rundir import check_out, link_latest, make_run_dir, remove_if_empty


@dataclass
class Run:
    """A finished training run: its folder and its summary (the contents of summary.json)."""

    path: Path
    summary: dict
    config: TrainConfig

    def load(self, device: str = "auto") -> Autoencoder:
        return load(self.path, device=device)


def train(
    data: Any, *, out: str | Path | None = None, config: str | Path | None = None, verbose: bool = True, **options: Any
) -> Run:
    """Train an autoencoder on `data`: a folder or image file, a numpy array or tensor of images
    (N,H,W / N,H,W,C / N,C,H,W), or a `torch.utils.data.Dataset` yielding tensors, tuples or dicts.

    `options` are TrainConfig fields (latent_dim=32, epochs=10, max_time=60, ...); they override
    the YAML file `config`. `out` defaults to runs/<timestamp> with runs/latest pointing at it.
    """
    from .trainer import fit

    cfg = make_config(load_yaml(config) if config else None, **options)
    check_out(out)
    t0 = time.perf_counter()
    dataset = load_data(
        data,
        channels=cfg.channels,
        image_size=cfg.image_size,
        extensions=cfg.extensions,
        show_progress=verbose,
        cache_dir=None if cfg.no_cache else (cfg.cache_dir or "default"),
        layout=cfg.layout,
    )
    dataset.load_seconds = round(time.perf_counter() - t0, 3)
    run_dir = make_run_dir(out)
    try:
        summary = fit(dataset, cfg, run_dir, verbose=verbose)
    except BaseException:
        remove_if_empty(run_dir)  # e.g. an option the data cannot take: leave nothing behind
        raise
    if out is None:
        link_latest(run_dir)  # only once the run has written its results
    return Run(path=run_dir, summary=summary, config=cfg)


__all__ = ["Autoencoder", "Run", "load", "train"]
