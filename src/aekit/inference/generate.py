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


def sample(
    run: str | Path,
    n: int = 16,
    output: str | Path | None = "samples.png",
    *,
    out_dir: str | Path | None = None,
    seed: int = 0,
    temperature: float = 1.0,
    device: str = "auto",
    verbose: bool = True,
) -> np.ndarray:
    """Decode `n` codes drawn from the VAE's prior (scaled by `temperature`); write a grid to
    `output` and/or one file per sample into `out_dir`. Returns (n, C, H, W) in data units."""
    from aekit.core.plots import tile_grid
    from aekit.core.progress import console
    from aekit.inference.model import load
    from aekit.inference.reconstruct import check_out_dir, image_file

    if not isinstance(n, int) or n < 1:
        raise AekitError(f"number of samples must be a positive integer, got {n!r}")
    if not temperature > 0:
        raise AekitError(f"temperature must be > 0, got {temperature!r}")
    png = _check_png(output) if output is not None else None
    folder = check_out_dir(out_dir, None) if out_dir is not None else None
    model = load(run, device=device)
    if model.meta["model_kwargs"].get("variant") != "vae":
        raise AekitError(
            "sampling needs a variational autoencoder, whose latent space has a prior to draw from; "
            "train one with --model vae (aekit interpolate works with this model)"
        )
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.latent_dim, generator=gen) * temperature
    images = _to_data_units(model, model.decode(z.numpy()))
    if png is not None:
        tile_grid(images.astype(np.float32) / model.scale, png)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for i, chw in enumerate(images):
            suffix, writer = image_file(chw)
            atomic_write(folder / f"sample_{i:04d}{suffix}", writer)
    if verbose:
        where = " and ".join(str(p) for p in (png, folder) if p is not None)
        console.print(f"drew {n} sample(s) from N(0, {temperature:g}^2 I) in {model.latent_dim} dimensions: {where}")
    return images


def _read_one(model, path: Any) -> np.ndarray:
    from aekit.inference.encode import read_for_model

    p = Path(path)
    if not p.is_file():
        raise AekitError(f"{p} is not a file; pass two image files to interpolate between")
    items = read_for_model(model, p, verbose=False, cache_dir=None)
    return np.asarray(items.array[:1])


def interpolate(
    run: str | Path,
    a: str | Path,
    b: str | Path,
    steps: int = 8,
    output: str | Path | None = "interpolation.png",
    *,
    device: str = "auto",
    verbose: bool = True,
) -> np.ndarray:
    """Decode `steps` evenly spaced points between the codes of images `a` and `b` (both ends
    included); write a strip to `output`: A, the decoded points, B. Returns the decoded points."""
    from aekit.core.plots import tile_grid
    from aekit.core.progress import console
    from aekit.inference.model import load

    if not isinstance(steps, int) or steps < 2:
        raise AekitError(f"steps must be an integer >= 2, got {steps!r}")
    png = _check_png(output) if output is not None else None
    model = load(run, device=device)
    xa, xb = _read_one(model, a), _read_one(model, b)
    za, zb = model.encode(xa, layout="NCHW"), model.encode(xb, layout="NCHW")
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    path = _to_data_units(model, model.decode((1 - t) * za + t * zb))
    if png is not None:
        strip = np.concatenate([xa, path, xb]).astype(np.float32) / model.scale
        tile_grid(strip, png, cols=len(strip))
    if verbose and png is not None:
        console.print(f"wrote {png}: {Path(a).name}, {steps} decoded steps, {Path(b).name}")
    return path
