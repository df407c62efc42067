"""`aekit sample` and `aekit interpolate`: images made from the latent space.

Sampling draws codes from the prior N(0, I) of a variational autoencoder (`--model vae`) and
decodes them; a plain autoencoder has no prior to draw from, so it is refused with a hint.
Interpolation encodes two images and decodes evenly spaced points on the line between their
codes (the posterior means for a VAE); it works for every model, best for a VAE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from aekit.config.commands import InterpolateOptions, SampleOptions
from aekit.core.errors import AekitError
from aekit.core.rundir import atomic_write, check_output_file


def _check_png(output: str | Path) -> Path:
    p = Path(output)
    if p.suffix.lower() != ".png":
        raise AekitError(f"output {p} must end in .png")
    check_output_file(p, "samples.png")
    return p


def _to_data_units(model, raw: np.ndarray) -> np.ndarray:
    """Decoded float images -> the training data's dtype (rounded and clipped for integer data)."""
    dtype = np.dtype(model.meta["input"]["dtype"])
    if dtype.kind in "ui":
        return np.rint(np.clip(raw, 0, model.scale)).astype(dtype)
    return raw.astype(np.float32)


def sample(o: SampleOptions) -> np.ndarray:
    """Decode `o.n` codes drawn from the VAE's prior (scaled by `o.temperature`); write a grid to
    `o.output` and/or one file per sample into `o.out_dir`. Returns (n, C, H, W) in data units."""
    from aekit.core.plots import tile_grid
    from aekit.core.progress import console
    from aekit.inference.model import load
    from aekit.inference.reconstruct import check_out_dir, image_file

    n, temperature = o.n, o.temperature
    if not isinstance(n, int) or n < 1:
        raise AekitError(f"number of samples must be a positive integer, got {n!r}")
    if not temperature > 0:
        raise AekitError(f"temperature must be > 0, got {temperature!r}")
    png = _check_png(o.output) if o.output is not None else None
    folder = check_out_dir(o.out_dir, None) if o.out_dir is not None else None
    model = load(o.run, device=o.device)
    if model.meta["model_kwargs"].get("variant") != "vae":
        raise AekitError(
            "sampling needs a variational autoencoder, whose latent space has a prior to draw from; "
            "train one with --model vae (aekit interpolate works with this model)"
        )
    gen = torch.Generator().manual_seed(o.seed)
    z = torch.randn(n, model.latent_dim, generator=gen) * temperature
    images = _to_data_units(model, model.decode(z.numpy()))
    if png is not None:
        tile_grid(images.astype(np.float32) / model.scale, png)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for i, chw in enumerate(images):
            suffix, writer = image_file(chw)
            atomic_write(folder / f"sample_{i:04d}{suffix}", writer)
    if o.verbose:
        where = " and ".join(str(p) for p in (png, folder) if p is not None)
        console.print(f"drew {n} sample(s) from N(0, {temperature:g}^2 I) in {model.latent_dim} dimensions: {where}")
    return images


def _read_one(model, path: Any) -> np.ndarray:
    from aekit.data.source import Request, open_data

    p = Path(path)
    if not p.is_file():
        raise AekitError(f"{p} is not a file; pass two image files to interpolate between")
    items = open_data(p, Request.for_model(model.meta, cache_dir=None), verbose=False)
    return np.asarray(items.array[:1])


def interpolate(o: InterpolateOptions) -> np.ndarray:
    """Decode `o.steps` evenly spaced points between the codes of images `o.a` and `o.b` (both
    ends included); write a strip to `o.output`: A, the decoded points, B. Returns the decoded points."""
    from aekit.core.plots import tile_grid
    from aekit.core.progress import console
    from aekit.inference.model import load

    steps = o.steps
    if not isinstance(steps, int) or steps < 2:
        raise AekitError(f"steps must be an integer >= 2, got {steps!r}")
    png = _check_png(o.output) if o.output is not None else None
    model = load(o.run, device=o.device)
    xa, xb = _read_one(model, o.a), _read_one(model, o.b)
    za, zb = model.encode(xa, layout="NCHW"), model.encode(xb, layout="NCHW")
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    path = _to_data_units(model, model.decode((1 - t) * za + t * zb))
    if png is not None:
        strip = np.concatenate([xa, path, xb]).astype(np.float32) / model.scale
        tile_grid(strip, png, cols=len(strip))
    if o.verbose and png is not None:
        console.print(f"wrote {png}: {Path(o.a).name}, {steps} decoded steps, {Path(o.b).name}")
    return path
