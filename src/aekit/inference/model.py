"""A trained model, loaded from its run directory, that takes raw images and does its own preprocessing.

Inputs: numpy arrays or tensors shaped (N, H, W), (N, H, W, C) or (N, C, H, W), uint8, uint16 or
float. Integer inputs are pixel values; float inputs are taken in the training data's units
(0-255 for 8-bit images, not [0, 1]). Channels are adapted (gray <-> RGB, alpha dropped or added)
and sizes are resized to cover the model's size and center-cropped, as in training. A table model
takes rows (N, F) or one row (F,) of its columns, in the table's own units. Models trained on
rasters take values in the rasters' own units, of any numeric type, with nodata already filled
(raster files go through raster_outputs.py).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from aekit.config.choices import PRECISIONS
from aekit.core.compute import compute_settings, make_repeatable
from aekit.core.devices import resolve_device
from aekit.core.errors import AekitError
from aekit.core.rundir import resolve_run
from aekit.core.transfer import host_cast
from aekit.data.memory import from_nchw, infer_layout, to_nchw
from aekit.models.checkpoint import load_model, load_references
from aekit.models.registry import load_plugins

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as Pillow's RGB -> L


class Autoencoder:
    """A trained autoencoder: `encode`, `decode`, `reconstruct` on raw images."""

    def __init__(
        self,
        model: torch.nn.Module,
        normalizer,
        meta: dict,
        device: str = "auto",
        precision: str = "fp32",
        references: dict | None = None,
    ):
        if precision not in PRECISIONS:
            raise AekitError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        self._place(model, normalizer, resolve_device(device), precision)
        self.meta = meta
        self.references = references  # the ensemble score's kNN references (RUN/reference.safetensors)
        inp = meta["input"]
        self.input_shape: tuple[int, int, int] = (inp["channels"], inp["height"], inp["width"])
        self.latent_dim: int = meta["latent_dim"]
        self.scale: float = float(meta["normalization"]["scale"])
        table = meta.get("table")
        self.columns: list[str] | None = table["columns"] if table else None  # a table model's features
        self.id_column: str | None = table.get("id_column") if table else None

    def _place(self, model: torch.nn.Module, normalizer, device: torch.device, precision: str) -> None:
        """The model and normaliser on `device`, run in `precision`."""
        self.device = device
        # fp32 by default: embeddings and scores are exact and reproducible; channels_last is
        # free speed on CPUs (oneDNN) and GPUs whatever the precision
        self.compute = compute_settings(device, precision)
        self.compute.channels_last = device.type in ("cpu", "cuda")
        make_repeatable(self.compute)  # fp32 on CUDA: scores as exact as the threshold set in training
        self.model = self.compute.prepare(model).eval()
        self.normalizer = normalizer.to(device)

    # -- pickling: a model used on a GPU loads on a machine without one -----------------------
    def __getstate__(self) -> dict:
        """Every tensor on the CPU (model, normaliser, references), with the device and precision
        it ran in: a detector fitted on a GPU and pickled loads on a machine that has none."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("model", "normalizer", "compute")}
        state["device"] = str(self.device)
        state["precision"] = PRECISION_NAMES[self.compute.amp_dtype]
        state["model"], state["normalizer"] = on_host(self.model), on_host(self.normalizer)
        if self.references is not None:
            state["references"] = {k: v.cpu() for k, v in self.references.items()}
        return state

    def __setstate__(self, state: dict) -> None:
        """Back on the device it was saved from where this machine has it, else on the CPU."""
        if "precision" not in state:  # pickled by an earlier aekit, whole: its tensors where they ran
            self.__dict__.update(state)
            return
        state = dict(state)
        model, normalizer, precision = state.pop("model"), state.pop("normalizer"), state.pop("precision")
        device = device_here(state.pop("device"))
        self.__dict__.update(state)
        self._place(model, normalizer, device, precision)

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        shape = f"{c} columns" if self.columns is not None else f"{c}x{h}x{w}"
        return f"Autoencoder(arch={self.meta['arch']!r}, input={shape}, latent_dim={self.latent_dim})"

    # -- preprocessing ------------------------------------------------------------------------
    def _as_array(self, x: Any, layout: str | None) -> tuple[np.ndarray, str]:
        """The input as a numpy array of N images, and its layout (inferred once for all batches)."""
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if arr.size == 0:
            raise AekitError(f"no images to process (input shape {arr.shape})")
        if self.columns is not None:
            return self._table_rows(arr), "NCHW"
        if arr.ndim == 2:
            arr = arr[None]
        prefer = "NCHW" if isinstance(x, torch.Tensor) else "NHWC"
        return arr, layout or infer_layout(arr.shape, prefer=prefer, expected_channels=self.input_shape[0])

    def _table_rows(self, arr: np.ndarray) -> np.ndarray:
        """A table model's input, (N, F) rows or one row (F,), as (N, F, 1, 1) float32."""
        if arr.ndim == 4 and arr.shape[2:] == (1, 1):
            arr = arr[:, :, 0, 0]
        if arr.ndim == 1:
            arr = arr[None]
        f = len(self.columns)
        if arr.ndim != 2 or arr.shape[1] != f:
            names = ", ".join(self.columns[:10]) + (", ..." if f > 10 else "")
            raise AekitError(f"this model takes rows of {f} columns ({names}), shaped (N, {f}); got {arr.shape}")
        if arr.dtype.kind not in "biuf":
            raise AekitError(f"unsupported input type {arr.dtype}; pass numbers (float32)")
        arr = arr.astype(np.float32)
        bad = ~np.isfinite(arr)
        if bad.any():
            cols = [self.columns[j] for j in np.flatnonzero(bad.any(0))[:5]]
            raise AekitError(
                f"input has NaN or Inf values in {int(bad.any(1).sum())} row(s) (columns {', '.join(cols)}); "
                "drop or fill them"
            )
        return arr[:, :, None, None]

    def prepare(self, x: Any, layout: str | None = None) -> torch.Tensor:
        """Raw images -> (N, C, H, W) float32 in the model's raw units, on the model's device."""
        arr, layout = self._as_array(x, layout)
        return self._to_tensor(arr, layout, self._unit_factor(arr))

    def _to_tensor(self, arr: np.ndarray, layout: str, factor: float) -> torch.Tensor:
        t = host_cast(torch.from_numpy(np.ascontiguousarray(to_nchw(arr, layout))), self.device).to(self.device)
        # to float and to channels_last in one pass (two passes cost ~5x more on a CPU)
        cl = self.compute.channels_last and t.ndim == 4
        t = t.to(dtype=torch.float32, memory_format=torch.channels_last if cl else torch.preserve_format)
        if factor != 1.0:
            t = t.mul_(factor)
        t = self._adapt_channels(t)
        h, w = self.input_shape[1:]
        if t.shape[-2:] != (h, w):
            t = fit_size(t, (h, w))
        return t

    def _unit_factor(self, arr: np.ndarray) -> float:
        if "raster" in self.meta:
            return 1.0  # raster models take values in the training rasters' own units, whatever the type
        if arr.dtype == np.uint8:
            return self.scale / 255.0
        if arr.dtype == np.uint16:
            return self.scale / 65535.0
        if np.issubdtype(arr.dtype, np.floating):
            top = float(np.nanmax(arr)) if arr.size else 0.0
            if self.scale > 1 and 0.0 < top <= 1.0 and float(np.nanmin(arr)) >= 0.0:
                warnings.warn(
                    f"float input in [0, 1], but this model takes pixel values (0-{self.scale:g}); "
                    f"multiply by {self.scale:g} or pass integer images",
                    stacklevel=3,  # _unit_factor <- encode/reconstruct/prepare <- the caller
                )
            return 1.0
        raise AekitError(f"unsupported input type {arr.dtype}; pass uint8, uint16 or float images")

    def _adapt_channels(self, t: torch.Tensor) -> torch.Tensor:
        want, have = self.input_shape[0], t.shape[1]
        if have == want:
            return t
        if have in (3, 4) and want == 1:
            luma = t.new_tensor(LUMA).view(1, 3, 1, 1)
            return (t[:, :3] * luma).sum(1, keepdim=True)
        if have == 4 and want == 3:
            return t[:, :3]
        if have == 1 and want in (3, 4):
            t = t.expand(-1, 3, -1, -1)
            have = 3
        if have == 3 and want == 4:
            return torch.cat([t, torch.full_like(t[:, :1], self.scale)], 1)
        if t.shape[1] == want:
            return t
        raise AekitError(f"input has {have} channels, the model takes {want}")

    # -- the three verbs ----------------------------------------------------------------------
    def encode(self, x: Any, *, batch_size: int = 256, layout: str | None = None) -> Any:
        """Latent codes (N, latent_dim), numpy or tensor like the input (tables: rows (N, F))."""
        arr, layout = self._as_array(x, layout)
        factor = self._unit_factor(arr)
        z = self._batched(lambda b: self.model.encode(self.normalizer.normalize(b)), arr, layout, factor, batch_size)
        return z.cpu() if isinstance(x, torch.Tensor) else z.cpu().numpy()

    def decode(self, z: Any, *, batch_size: int = 256) -> Any:
        """Images (N, C, H, W) float32 in the data's raw units from latent codes."""
        zt = torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z, dtype=torch.float32)
        if zt.ndim != 2 or zt.shape[1] != self.latent_dim:
            raise AekitError(f"latent codes must be shaped (N, {self.latent_dim}); got {tuple(zt.shape)}")
        out = self._batched(lambda b: self._to_raw(self.model.decode(b.to(self.device))), zt, None, 1.0, batch_size)
        if self.columns is not None:
            out = out[:, :, 0, 0]  # (N, F)
        return out.cpu() if isinstance(z, torch.Tensor) else out.cpu().numpy()

    def reconstruct(self, x: Any, *, batch_size: int = 256, layout: str | None = None) -> Any:
        """Reconstructions at the model's size, in the input's layout, dtype and container."""
        is_tensor = isinstance(x, torch.Tensor)
        single = np.ndim(x) == 2
        arr, lay = self._as_array(x, layout)
        factor = self._unit_factor(arr)
        recon = self._batched(
            lambda b: self._to_raw(self.model(self.normalizer.normalize(b)).recon), arr, lay, factor, batch_size
        )
        out = recon.cpu().numpy()
        if self.columns is not None:  # tables: (N, F) float32, or float64 for float64 input
            f64 = x.dtype == torch.float64 if is_tensor else np.asarray(x).dtype == np.float64
            out = out[:, :, 0, 0].astype(np.float64 if f64 else np.float32)
            out = out[0] if np.ndim(x) == 1 else out
            return torch.from_numpy(np.ascontiguousarray(out)) if is_tensor else out
        if "raster" in self.meta and arr.dtype.kind in "iu":  # raster units: round into the input's type
            info = np.iinfo(arr.dtype)
            out = np.rint(np.clip(out, info.min, info.max)).astype(arr.dtype)
        elif arr.dtype in (np.uint8, np.uint16):
            full = 255.0 if arr.dtype == np.uint8 else 65535.0
            out = np.rint(np.clip(out * (full / self.scale), 0, full)).astype(arr.dtype)
        if lay == "NHW" and out.shape[1] != 1:
            lay = "NCHW"  # a gray input to a colour model comes back with the model's channels
        out = from_nchw(out, lay)
        if single:
            out = out[0]
        return torch.from_numpy(np.ascontiguousarray(out)) if is_tensor else out

    def explain(self, x: Any, *, batch_size: int = 256, layout: str | None = None) -> np.ndarray:
        """Where each item's reconstruction is wrong. Images: (N, H, W) squared error per pixel,
        averaged over the channels, in the units of `score(metric="mse")` (pixels in [0, 1]; the
        data's own units for float data). Table rows: (N, F) each column's share of the row's squared
        error in standardised units (each row sums to 1): the columns that make it odd."""
        arr, lay = self._as_array(x, layout)
        factor = self._unit_factor(arr)

        def errors(b: torch.Tensor) -> torch.Tensor:
            xn = self.normalizer.normalize(b)
            recon = self.model(xn).recon
            if self.columns is not None:
                sq = (recon - xn).float() ** 2  # (B, F, 1, 1)
                return (sq / sq.sum(dim=1, keepdim=True).clamp_min(1e-30))[:, :, 0, 0]
            unit = self.normalizer.to_unit(recon, clamp=self.scale > 1)
            return ((unit - b / self.scale).float() ** 2).mean(dim=1)  # (B, H, W)

        return self._batched(errors, arr, lay, factor, batch_size).cpu().numpy()

    def score(
        self,
        x: Any,
        *,
        metric: str | None = None,
        batch_size: int = 256,
        layout: str | None = None,
        mask: Any = None,
    ) -> np.ndarray:
        """Per-item anomaly score (N,), higher = more anomalous. Default: the run's `score_metric`,
        the ensemble of the reconstruction error and the distances from the training items
        (measures/ensemble.py; images: the largest of its parts' robust z-scores, about 0 for a
        typical normal item; tables: about its number of parts for a typical normal row). Or: mse, mae,
        ssim (1 - SSIM) of the reconstruction in [0, 1] pixel units (table rows: standardised units,
        mse or mae); mse+latent, the MSE plus the distance of the code from the training codes.
        Compare with `threshold` (set at training time). `mask` (N, 1, H, W), True where valid,
        leaves nodata pixels out (rasters)."""
        from aekit.config.choices import METRICS, TABLE_METRICS

        allowed = METRICS if self.columns is None else TABLE_METRICS
        metric = metric or self.score_metric
        if metric not in allowed:
            raise AekitError(f"unknown metric {metric!r} for this model; choose one of {', '.join(allowed)}")
        if metric in ("mse+latent", "ensemble") and not self.meta.get("latent_score"):
            raise AekitError("this run has no latent statistics (trained by an older aekit): score it by --metric mse")
        if metric == "ensemble" and not (self.meta.get("ensemble") and self.references):
            raise AekitError(
                "this run has no ensemble references (trained by an older aekit): score it by --metric mse"
            )
        arr, lay = self._as_array(x, layout)
        factor = self._unit_factor(arr)
        errors = self._scorer(metric)
        if mask is None:
            return self._batched(errors, arr, lay, factor, batch_size).cpu().numpy().astype(np.float64)
        with torch.inference_mode():  # rasters with nodata: the mask goes along batch by batch, in fp32
            out = [
                errors(
                    self._to_tensor(arr[i : i + batch_size], lay, factor),
                    torch.from_numpy(np.asarray(mask[i : i + batch_size])).to(self.device),
                ).cpu()
                for i in range(0, len(arr), batch_size)
            ]
        return torch.cat(out).numpy().astype(np.float64)

    def _scorer(self, metric: str):
        """errors(raw batch, mask or None) -> (N,) scores under `metric`."""
        from aekit.measures import ensemble
        from aekit.measures.item_errors import item_errors
        from aekit.measures.latent_score import combined

        scorer = ensemble.scorer_of(self.meta, self.references).to(self.device) if metric == "ensemble" else None

        def errors(b: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
            xn = self.normalizer.normalize(b)
            out = self.model(xn)
            if self.columns is not None:  # tables: standardised units, as in training
                recon, target = out.recon, xn
            else:
                recon, target = self.normalizer.to_unit(out.recon, clamp=self.scale > 1), b / self.scale
            if metric == "ensemble":
                return scorer(out.z, recon, target, xn, m)
            e = item_errors(recon, target, "mse" if metric == "mse+latent" else metric, m)
            if metric == "mse+latent":  # float64 on the CPU: float32 before it goes back (MPS has no float64)
                return combined(e, out.z, self.meta["latent_score"]).float().to(e.device)
            return e

        return errors

    @property
    def score_metric(self) -> str:
        """The run's default anomaly score: ensemble (mse+latent for tables and mse for images in runs of
        earlier versions)."""
        return self.meta.get("score_metric", "mse")

    @property
    def threshold(self) -> float | None:
        """The anomaly threshold on the default score (`score_metric`) fixed at training time (None
        for older runs); `threshold_info` says how it was set."""
        t = self.meta.get("threshold")
        return float(t["value"]) if t else None

    @property
    def threshold_info(self) -> dict | None:
        return self.meta.get("threshold")

    def _batched(self, fn, data, layout: str | None, factor: float, batch_size: int) -> torch.Tensor:
        """fn over batches of `data`, concatenated on the CPU, in the chosen precision; no autograd;
        fp32 out. Raw images (layout given) are converted one batch at a time: device memory stays
        at one batch whatever the size of the input, each result copied to the host output. Latent
        codes (layout None) go in as they are."""
        check_batch_size(batch_size)

        def run(chunk):
            return fn(chunk if layout is None else self._to_tensor(chunk, layout, factor)).float()

        out = None
        with torch.inference_mode(), self.compute.autocast():
            for i in range(0, len(data), batch_size):
                r = run(data[i : i + batch_size])
                if out is None:  # one output allocated up front, on the host: no small results left
                    out = torch.empty((len(data), *r.shape[1:]))  # between the batches' buffers (heap fragmentation)
                out[i : i + len(r)] = r
        return out

    def _to_raw(self, recon: torch.Tensor) -> torch.Tensor:
        return self.normalizer.to_unit(recon, clamp=self.scale > 1) * self.scale


NO_ANTIALIAS = ("mps",)  # devices without antialiased bilinear resizing (aten::_upsample_bilinear2d_aa)


def fit_size(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (N, C, h, w) to cover `size` keeping the aspect ratio, then center-crop to it.
    On a device without antialiased resizing (MPS) the batch is resized on the CPU and moved back."""
    if t.device.type in NO_ANTIALIAS:
        return fit_size(t.cpu(), size).to(t.device)
    h, w = size
    s = max(h / t.shape[-2], w / t.shape[-1])
    nh, nw = max(h, round(t.shape[-2] * s)), max(w, round(t.shape[-1] * s))
    t = F.interpolate(t, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    y, x = (nh - h) // 2, (nw - w) // 2
    return t[..., y : y + h, x : x + w]


PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}  # autocast dtype -> --precision


def on_host(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of `module` with its parameters and buffers on the CPU, made without a second copy on
    the device (deepcopy, told the CPU copy of each tensor)."""
    memo: dict[int, Any] = {id(p): torch.nn.Parameter(p.detach().cpu(), p.requires_grad) for p in module.parameters()}
    memo.update({id(b): b.cpu() for b in module.buffers()})
    return copy.deepcopy(module, memo)


def device_here(saved: str) -> torch.device:
    """The device `saved` (e.g. "cuda:0", "mps") where this machine has it, else the CPU."""
    try:
        device = resolve_device(saved)
    except AekitError:  # no CUDA or MPS here
        return torch.device("cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        return torch.device("cpu")
    return device


def check_batch_size(batch_size: int) -> None:
    """Fail early, before any data is read, on a batch size that cannot be used."""
    if batch_size < 1:
        raise AekitError(f"batch size must be a positive integer, got {batch_size}")


def load(
    run: str | Path, *, device: str = "auto", precision: str = "fp32", plugins: list[str] | None = None
) -> Autoencoder:
    """Load a trained model from a run directory (e.g. "runs/latest") without the training code.

    `precision` "fp32" (default, exact) or "auto"/"bf16"/"fp16" for faster approximate inference.
    `plugins`: modules to import first that register your own models (as `--plugin`); a run
    folder never decides what is imported (SECURITY.md)."""
    load_plugins(plugins)
    model, normalizer, meta = load_model(run)
    refs = load_references(resolve_run(run), meta) if meta.get("ensemble") else None
    return Autoencoder(model, normalizer, meta, device=device, precision=precision, references=refs)
