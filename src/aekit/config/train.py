"""Typed training configuration: the single source of options for the CLI, the API and run files.

Precedence: dataclass defaults < `--config file.yaml` < command-line flags (or API keywords).
Unknown keys are errors. The resolved config (inferred values filled in) is written to every
run directory as `config.yaml`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aekit.config.choices import AUGMENTS, DEVICES, LAYOUTS, LOGGERS, MODELS, NOISES, PRECISIONS, RECON_LOSSES
from aekit.config.fields import check_choices, opt
from aekit.core.errors import AekitError, did_you_mean

IMAGE_LATENT_DIM = 64  # the default latent size for images (tables: see models/mlp.auto_latent_dim)
IMAGE_EPOCHS = 30  # with --max-time alone: the number of epochs for images
TABLE_STEPS = 3000  # with --max-time alone, tables train for at least this many steps
BUDGET_STEPS = 3000  # the default budget (no --epochs, --max-steps or --max-time): this many steps...
BUDGET_SECONDS = 600.0  # ... and at most this long (see training/defaults.py)
PATIENCE = 10  # epochs without a better validation loss before training stops early
MAX_SIDE = 4096
NULLABLE = ("cache_dir",)  # options whose None is a choice (no cache), not "not given"
MIN_PATCH = 4


def cache_opt() -> Any:
    """The decode cache, one option for every command: "default" ($AEKIT_CACHE_DIR or the user
    cache folder), a folder, or None (--no-cache) to decode into memory only."""
    return opt(
        "default",
        "where decoded images are cached (default: $AEKIT_CACHE_DIR or ~/.cache/aekit)",
        metavar="CACHE_DIR",
        off=("--no-cache", "decode into memory only; neither read nor write the cache"),
    )


@dataclass
class TrainConfig:
    """Everything that decides how a model is trained; saved as `config.yaml` in each run."""

    model: str = opt(
        "ae",
        "ae (autoencoder), vae (variational: sample and interpolate) or dae (denoising: learns to remove --noise)",
        choices=MODELS,
    )
    arch: str = opt(
        "auto",
        "model architecture: auto is conv for images, mlp for tables; or any registered model, your own "
        "included (aekit.register_model, --plugin); see `aekit models`",
    )
    plugins: list[str] = opt(
        list,
        "import this module before training, to register your own models (aekit.register_model) for --arch; "
        "repeat for several",
        factory=True,
        flag="--plugin",
        metavar="MODULE",
        append=True,
    )
    latent_dim: int | None = opt(
        None,
        "size of the latent code (embedding); default 64 for images (a quarter of the values for images of fewer "
        "than 256 values), a quarter of the columns for tables (2-64)",
    )
    depth: int | None = opt(
        None, "conv: number of stride-2 stages, default from the image size; mlp: hidden layers (default 2)"
    )
    width: int | None = opt(
        None,
        "conv: channels of the first stage, doubling per stage up to 8x; default 16, or 2x the input "
        "channels when there are more than 8. mlp: the first hidden layer, default 2x the columns "
        "(at most 256, at least 2x latent_dim)",
    )
    channels: int | None = opt(None, "images: 1 gray, 3 RGB, 4 RGBA; default 1 if every image is gray, else 3")
    layout: str | None = opt(
        None,
        "array files: NHW, NHWC or NCHW; default inferred (the axis of size 1, 3 or 4 is the channel)",
        choices=LAYOUTS,
    )
    columns: list[str] | None = opt(
        None,
        "tables: the numeric columns to use, comma-separated (a,b,c); default every numeric column",
        metavar="A,B,C",
    )
    id_column: str | None = opt(
        None,
        "tables: the column that identifies rows (kept by encode, never a feature); default a column named id "
        "or *_id, else the first text column with unique values, else the row number",
        metavar="NAME",
    )
    image_size: list[int] | None = opt(
        None,
        "H W or one number (square): images are resized to cover it, then center-cropped; "
        "default the most common size (longest side <= 128)",
    )
    beta: float = opt(1.0, "vae: weight of the KL term (beta-VAE)")
    kl_warmup_epochs: float = opt(
        5.0, "vae: epochs over which the KL weight rises from 0 to beta (at most half the epochs; 0: off)"
    )
    free_bits: float = opt(0.0, "vae: nats of KL per latent dimension that cost nothing (against posterior collapse)")
    recon_loss: str = opt(
        "mse", "vae: mse (Gaussian) or bce (Bernoulli, for data in [0, 1] such as 8-bit images)", choices=RECON_LOSSES
    )
    noise: str = opt(
        "gaussian:0.1",
        "dae: input corruption in [0, 1] pixel units: gaussian:SIGMA, masking:FRACTION or saltpepper:FRACTION",
    )
    bands: list[int] | None = opt(
        None,
        "rasters: the bands to use, 1-based as in GDAL, e.g. 4,3,2 (default: every band); reading a raster "
        "goes through rasterio (extra `geo`)",
    )
    patch_size: int | None = opt(
        None,
        "rasters: cut the rasters into square patches of this side; default: whole tiles when every file "
        "has one size up to 512 pixels, else 64",
    )
    stride: int | None = opt(
        None,
        "rasters: spacing of the patch grid; training draws patches at seeded random positions, as many as "
        "this grid holds (default: the patch size)",
    )
    nodata: float | None = opt(
        None,
        "rasters: the nodata value (default: the file's own; NaN is always nodata); nodata pixels are left "
        "out of the statistics, the loss and the metrics",
    )
    rgb_bands: list[int] | None = opt(
        None,
        "previews (recon.png): the 3 bands shown as red, green, blue, numbered as --bands "
        "(default: the first three), with a 2-98 percentile stretch for rasters",
    )
    epochs: int | None = opt(
        None,
        f"number of passes over the training data; default: the budget (with none of --epochs, "
        f"--max-steps, --max-time: {BUDGET_STEPS} steps and at most {BUDGET_SECONDS / 60:g} minutes)",
    )
    max_steps: int | None = opt(
        None, "stop after this many optimisation steps; the learning-rate schedule follows them (default: the budget)"
    )
    patience: int = opt(
        PATIENCE,
        "stop early when the validation loss has not improved for this many epochs, and for at least a twentieth "
        "of the budget's steps (0: never)",
    )
    batch_size: int = opt(64, "images per optimisation step")
    lr: float = opt(1e-3, "peak learning rate (AdamW, warm-up then cosine decay)")
    weight_decay: float = opt(1e-4, "AdamW weight decay")
    val_fraction: float = opt(0.1, "fraction of the data held out for validation (seeded split)")
    augment: str = opt(
        "flip", "batch augmentation on the device: flip (random horizontal flips) or none", choices=AUGMENTS
    )
    seed: int = opt(0, "random seed for the split, initialisation and batch order")
    max_time: float | None = opt(
        None,
        "time budget in seconds, the end of the run included: training stops cleanly early enough for the "
        "last validation pass and the run's results (estimated from the validation pass's time)",
    )
    checkpoint_every: str | None = opt(
        None,
        "also write the resumable state (state.pt) inside epochs: every N steps (500) or every so much time "
        "(90s, 10m, 1h); default: at the end of every epoch only",
        metavar="N|TIME",
    )
    device: str = opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    precision: str = opt(
        "auto",
        "auto (bf16 autocast on GPUs with native bf16; on CPUs with native bf16, bf16 only when a short "
        "measured probe finds it clearly faster; else fp32), fp32, bf16, fp16",
        choices=PRECISIONS,
    )
    compile: bool = opt(False, "compile the model with torch.compile (slower start, faster steps on GPUs)")
    extensions: list[str] = opt(list, "extra file extensions to read as images, e.g. .jfif", factory=True)
    threshold_percentile: float = opt(
        99.0, "anomaly threshold: this percentile of the validation items' reconstruction errors"
    )
    contamination: float | None = opt(
        None, "anomaly threshold instead set to flag this fraction of the validation items (e.g. 0.01)"
    )
    cache_dir: str | None = cache_opt()
    log: str | None = opt(
        None,
        "log the config, per-epoch metrics and reconstruction grids to files, no server needed: tensorboard "
        "(RUN/tensorboard; pip install 'aekit[tensorboard]') or mlflow (local store RUN/mlruns; "
        "pip install 'aekit[mlflow]')",
        choices=LOGGERS,
    )
    log_dir: str | None = opt(
        None,
        "with --log: tensorboard writes LOG_DIR/<run name>, mlflow uses LOG_DIR as its store (default: in the run)",
        metavar="LOG_DIR",
    )

    def __post_init__(self) -> None:
        for name in ("beta", "kl_warmup_epochs", "free_bits"):
            value = getattr(self, name)
            if not _number(value) or not 0 <= value < math.inf:
                raise AekitError(f"{name} must be a number >= 0, got {value!r}")
        parse_noise(self.noise)
        if not isinstance(self.arch, str) or not self.arch.strip():
            raise AekitError(f"arch must be a model name (see `aekit models`), got {self.arch!r}")  # checked: training
        self.plugins = parse_plugins(self.plugins)
        if self.log_dir is not None:
            if self.log is None:
                raise AekitError("--log-dir is where --log writes: pass --log tensorboard or --log mlflow too")
            self.log_dir = str(self.log_dir)
        check_choices(dataclasses.fields(self), vars(self))
        self._check_schedule()
        self._check_images()
        self._check_rasters()
        check_rule(self.threshold_percentile, self.contamination)
        dev = str(self.device)
        if dev.split(":")[0] not in DEVICES:
            raise AekitError(f"unknown device {dev!r}; use auto, cpu, cuda, cuda:N or mps")
        if self.columns is not None:
            from aekit.config.train import parse_columns

            self.columns = parse_columns(self.columns)
        if not isinstance(self.compile, bool):
            raise AekitError(f"compile must be true or false, got {self.compile!r}")
        for name in ("cache_dir", "id_column"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise AekitError(
                    f"{name} must be a {'folder' if name == 'cache_dir' else 'column name'}, got {value!r}"
                )
            setattr(self, name, None if value is None else os.fspath(value))

    def _check_schedule(self) -> None:
        """Sizes, budget and optimisation: numbers in their ranges."""
        if self.latent_dim is not None:
            _positive("latent_dim", self.latent_dim, int)
        if self.width is not None:
            _positive("width", self.width, int)
        if self.epochs is not None:
            _positive("epochs", self.epochs, int)
        _positive("batch_size", self.batch_size, int)
        _positive("lr", self.lr, float)
        if self.depth is not None:
            _positive("depth", self.depth, int)
        if self.max_time is not None:
            _positive("max_time", self.max_time, float)
        if self.max_steps is not None:
            _positive("max_steps", self.max_steps, int)
        if self.checkpoint_every is not None:
            parse_every(self.checkpoint_every)
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise AekitError(
                f"patience must be a whole number of epochs >= 0 (0: never stop early), got {self.patience!r}"
            )
        if not _number(self.weight_decay) or not 0 <= self.weight_decay < math.inf:
            raise AekitError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not _number(self.val_fraction) or not 0 <= self.val_fraction < 1:
            raise AekitError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise AekitError(f"seed must be a whole number, got {self.seed!r}")

    def _check_images(self) -> None:
        """Channels, size (H W, from one or two numbers) and extensions of image files."""
        if self.channels is not None:
            _positive("channels", self.channels, int)
        if self.image_size is not None:
            size = [self.image_size] if isinstance(self.image_size, int) else list(self.image_size)
            if len(size) == 1:
                size = size * 2
            if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
                raise AekitError(f"image_size must be one or two positive integers (H W), got {self.image_size!r}")
            if max(size) > MAX_SIDE:
                raise AekitError(
                    f"image_size {size} is over the limit of {MAX_SIDE} pixels a side; pass a smaller size"
                )
            self.image_size = size
        self.extensions = [self.extensions] if isinstance(self.extensions, str) else list(self.extensions)
        if not all(isinstance(e, str) for e in self.extensions):
            raise AekitError(f"extensions must be file extensions such as .jfif, got {self.extensions!r}")
        self.extensions = [e if e.startswith(".") else "." + e for e in (x.lower() for x in self.extensions)]

    def _check_rasters(self) -> None:
        """Bands (1-based, each once), preview bands among them, patches and nodata."""
        self.bands = _band_list("bands", self.bands)
        self.rgb_bands = _band_list("rgb_bands", self.rgb_bands)
        if self.bands is not None and len(set(self.bands)) != len(self.bands):
            raise AekitError(f"bands lists a band twice: {self.bands}; name each band once")
        if self.rgb_bands is not None and len(self.rgb_bands) not in (1, 3):
            raise AekitError(f"rgb_bands takes 3 bands (red green blue) or 1 (gray), got {self.rgb_bands}")
        if self.rgb_bands is not None and self.bands is not None and not set(self.rgb_bands) <= set(self.bands):
            raise AekitError(f"rgb_bands {self.rgb_bands} must be among the selected bands {self.bands}")
        if self.patch_size is not None:
            _positive("patch_size", self.patch_size, int)
            if not MIN_PATCH <= self.patch_size <= MAX_SIDE:
                raise AekitError(f"patch_size must be in [{MIN_PATCH}, {MAX_SIDE}], got {self.patch_size}")
        if self.stride is not None:
            _positive("stride", self.stride, int)
        if self.nodata is not None:
            if not _number(self.nodata):
                raise AekitError(f"nodata must be a number, got {self.nodata!r}")
            self.nodata = float(self.nodata)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def variant_options(self) -> dict[str, Any]:
        """The model-specific options that model.json records to rebuild the network."""
        if self.model == "vae":
            warmup = min(self.kl_warmup_epochs, self.epochs / 2)
            return {
                "beta": self.beta,
                "kl_warmup_epochs": warmup,
                "free_bits": self.free_bits,
                "recon_loss": self.recon_loss,
            }
        if self.model == "dae":
            return {"noise": self.noise}
        return {}


def check_rule(percentile: float | None, contamination: float | None) -> None:
    if percentile is not None and not (_number(percentile) and 0 < percentile <= 100):
        raise AekitError(f"threshold percentile must be in (0, 100], got {percentile!r}")
    if contamination is not None and not (_number(contamination) and 0 < contamination < 1):
        raise AekitError(f"contamination must be a fraction in (0, 1), e.g. 0.01; got {contamination!r}")


def parse_noise(spec: str) -> tuple[str, float]:
    """'gaussian:0.1' -> ('gaussian', 0.1); the amount is a [0, 1]-pixel sigma or a fraction."""
    kind, _, amount = str(spec).partition(":")
    try:
        value = float(amount) if amount else {"gaussian": 0.1, "masking": 0.25, "saltpepper": 0.1}[kind]
    except (KeyError, ValueError):
        raise AekitError(
            f"invalid noise {spec!r}; use gaussian:SIGMA, masking:FRACTION or saltpepper:FRACTION, e.g. gaussian:0.1"
        ) from None
    if kind not in NOISES or not value > 0 or (kind != "gaussian" and value >= 1):
        raise AekitError(
            f"invalid noise {spec!r}; use gaussian:SIGMA (> 0), masking:FRACTION or saltpepper:FRACTION (in (0, 1))"
        )
    return kind, value


TIME_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_every(value: str | int) -> tuple[str, float]:
    """--checkpoint-every: "500" (or 500) -> ("steps", 500); "90s", "10m", "1.5h" -> ("seconds", 5400.0)."""
    text = str(value).strip().lower()
    unit = "seconds" if text[-1:] in TIME_UNITS else "steps"
    try:
        amount = float(text[:-1]) * TIME_UNITS[text[-1]] if unit == "seconds" else int(text)
        finite = math.isfinite(amount)
    except (ValueError, OverflowError):  # OverflowError: 10**400 steps, which no float holds
        amount, finite = 0, False
    if isinstance(value, bool) or not amount > 0 or not finite:
        raise AekitError(
            f"checkpoint_every must be a number of steps (e.g. 500) or a time with s, m or h (e.g. 10m), got {value!r}"
        )
    return unit, amount


def _number(value: Any) -> bool:
    """An int or a float that a float holds (not 10**400); not a bool (YAML reads yes/no/on/off as
    booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _positive(name: str, value: Any, kind: type) -> None:
    ok_type = _number(value) and (kind is float or isinstance(value, int))
    if not ok_type or not 0 < value < math.inf:  # NaN and Inf too
        raise AekitError(f"{name} must be a positive {kind.__name__}, got {value!r}")


def _band_list(name: str, value: Any) -> list[int] | None:
    """A list of 1-based band numbers; a single number or "4,3,2" text (YAML) is accepted too."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = [int(v) for v in value.replace(",", " ").split()]
        except ValueError:
            raise AekitError(f"{name} must be band numbers like 4,3,2, got {value!r}") from None
    value = [value] if isinstance(value, int) else list(value)
    if not value or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in value):
        raise AekitError(f"{name} must be band numbers counted from 1 (as in GDAL), e.g. 4,3,2; got {value!r}")
    return value


def field_help() -> dict[str, dataclasses.Field]:
    """The config's fields by name, with their help text in `metadata['help']`."""
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


MAX_YAML_VALUES = 10_000  # a config holds a few dozen options; aliases can repeat a list into billions


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise AekitError(f"config file not found: {p}; pass the path of a YAML file written by aekit or by hand")
    try:
        data = yaml.safe_load(p.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError:
        raise AekitError(f"config file {p} is not UTF-8 text; save it as UTF-8") from None
    except yaml.YAMLError as e:
        raise AekitError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise AekitError(f"config file {p} is not valid YAML: it nests lists or mappings too deeply") from None
    if not isinstance(data, dict):
        raise AekitError(f"config file {p} must hold a mapping of option: value")
    if _values_over(data, MAX_YAML_VALUES):
        raise AekitError(
            f"config file {p} holds more than {MAX_YAML_VALUES} values once its aliases (*name) are expanded; "
            "a config holds one value per option"
        )
    return data


def _values_over(data: Any, limit: int) -> bool:
    """Whether `data` holds more than `limit` values, counted as a tree (a list an alias repeats counts
    each time), without recursion."""
    stack, count = [data], 0
    while stack:
        value = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(value, dict):
            stack += [*value.keys(), *value.values()]
        elif isinstance(value, (list, tuple, set)):
            stack += list(value)
    return False


def make_config(file_values: dict[str, Any] | None = None, **overrides: Any) -> TrainConfig:
    """Merge defaults < file values < overrides (None overrides are ignored, and so are None file
    values of options that cannot be None); reject unknown keys."""
    values = dict(file_values or {})
    values.pop("data", None)  # config.yaml of a run records the data path for reference only
    values.pop("out", None)
    if values.pop("no_cache", False):  # the key of runs written before cache_dir took None for it
        values["cache_dir"] = None
    values.update({k: v for k, v in overrides.items() if v is not None or k in NULLABLE})
    known = field_help()
    unknown = sorted(str(k) for k in set(values) - set(known))  # YAML keys may be numbers
    if unknown:
        raise AekitError(
            f"unknown option(s) {', '.join(unknown)}; valid options: {', '.join(known)}"
            + did_you_mean(unknown[0], known)
        )
    for k in [k for k, v in values.items() if v is None and "None" not in str(known[k].type)]:
        del values[k]  # `option: null` (or empty) where None is no value: the default, as for overrides
    try:
        return TrainConfig(**values)
    except TypeError as e:
        raise AekitError(f"invalid config: {e}") from None


def parse_plugins(value: str | Sequence[str] | None) -> list[str]:
    """--plugin a --plugin b,c (or a list, or "a,b") as a list of module names."""
    items = [value] if isinstance(value, str) else list(value or [])
    return [m.strip() for item in items for m in str(item).split(",") if m.strip()]


def parse_columns(value: str | Sequence[str] | None) -> list[str] | None:
    """--columns "a,b,c" (or a list) as a list of names; None when not given."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    names = [p.strip() for p in parts if p.strip()]
    if not names:
        raise AekitError("--columns needs at least one column name (a comma-separated list, e.g. --columns a,b,c)")
    return names
