"""The options of every command, one dataclass each: the single source of the command-line flags,
their help and defaults (`aekit.cli.parser` generates the parsers) and of the Python API's keyword
arguments (`aekit.api` checks keywords against them and shows them in its signatures).

Training options are `TrainConfig` (config/train.py); `train`, `demo` and `sweep` add theirs here.
Torch-free, so that `aekit --help` stays fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from aekit.config.choices import EXPORT_FORMATS, EXPORT_PARTS, LAYOUTS, METRICS, PRECISIONS, SEARCHES
from aekit.config.fields import arg, check_choices, opt
from aekit.config.train import cache_opt
from aekit.core.errors import AekitError

RUN_HELP = "run folder written by `aekit train` (e.g. runs/latest)"
DATA_HELP = "folder of images, one image file, a .npy/.npz array, a table (.csv, .tsv, .parquet), or rasters"
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps (default: auto)"
QUIET_HELP = "print nothing but errors"
EXACT = "fp32 (default: exact, as the threshold and exported models compute) or reduced precision for speed"
STRIDE_HELP = "rasters: spacing of the overlapping patches stitched into a GeoTIFF (default: half the patch)"
PLUGIN_HELP = (
    "import this module first: it registers your own model (aekit.register_model) that the run was trained with; "
    "repeat for several. A run folder never decides what is imported (SECURITY.md)"
)


def verbose_opt(quiet_help: str) -> Any:
    """Whether to print progress and results: False by default (library functions are quiet),
    True on the command line unless --quiet (cli/parser.py gives negated flags a True default)."""
    return opt(False, quiet_help, flag="--quiet", negate=True)


def plugins_opt() -> Any:
    """--plugin MODULE (repeatable): the only way a command that reads a run imports a user's code."""
    return opt(list, PLUGIN_HELP, factory=True, flag="--plugin", metavar="MODULE", append=True)


@dataclass
class Options:
    """Base of the command options: `help` (one line in `aekit --help`), `description` (the
    command's --help); values are checked against their choices."""

    help: ClassVar[str] = ""
    description: ClassVar[str] = ""
    train_skip: ClassVar[tuple[str, ...]] = ()  # TrainConfig fields a training command does not take

    def __post_init__(self) -> None:
        check_choices(dataclasses.fields(self), vars(self))

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


@dataclass
class UseOptions(Options):
    """Options shared by the commands that use a trained model on data (encode, score, ...)."""

    run: str = arg(RUN_HELP)
    data: Any = arg(DATA_HELP)
    batch_size: int = opt(256, "images per forward pass (default: 256)")
    device: str = opt("auto", DEVICE_HELP)
    verbose: bool = verbose_opt(QUIET_HELP)
    cache_dir: str | None = cache_opt()
    layout: str | None = opt(None, "array files: layout (default: inferred)", choices=LAYOUTS)
    id_column: str | None = opt(
        None,
        "tables: the column that identifies rows (default: the one used in training, else id, else row numbers)",
        metavar="NAME",
    )
    plugins: list[str] = plugins_opt()


@dataclass
class EncodeOptions(UseOptions):
    help: ClassVar[str] = "write the latent code of every image or table row"
    description: ClassVar[str] = (
        "Encode DATA with a trained model: one row per file with its path, or per table row "
        "with its identifier (the id column, or the row number)."
    )
    output: str | None = opt(None, "output .npy, .csv or .parquet", short="-o", required=True, metavar="FILE")
    precision: str = opt(
        "auto",
        "auto (default: the precision the run trained in, as its config.yaml records it; in bf16 "
        "codes are within about 0.5%% of fp32's), or fp32 for codes equal to an exported "
        "encoder's, or bf16/fp16",
        choices=PRECISIONS,
    )


@dataclass
class ReconstructOptions(UseOptions):
    help: ClassVar[str] = "write the model's reconstruction of every image"
    description: ClassVar[str] = (
        "Reconstruct DATA with a trained model into the folder DIR, mirroring the input tree "
        "(PNG for 8/16-bit images; arrays give DIR/reconstructions.npy; rasters, with a model trained on "
        "rasters, give whole GeoTIFFs with the source's CRS, transform, type and nodata, stitched from "
        "overlapping patches). DIR must be new, empty, or written by an earlier aekit reconstruct."
    )
    output: str | None = opt(None, "output folder", short="-o", required=True, metavar="DIR")
    compare: bool = opt(False, "also write DIR/compare/: each original left of its reconstruction")
    precision: str = opt("fp32", EXACT, choices=PRECISIONS)
    stride: int | None = opt(None, STRIDE_HELP, metavar="N")


@dataclass
class ScoreOptions(UseOptions):
    help: ClassVar[str] = "anomaly scores of every item, with a threshold and what makes an item odd"
    description: ClassVar[str] = (
        "Score DATA with a trained model: one row per item (path, score, is_anomaly, rank), "
        "worst first (tables: with top_features, the columns that make a row odd). The score is the run's "
        "default, the ensemble of the reconstruction error and the distances from the training items "
        "(--metric for another); the threshold is the "
        "one fixed at training time (by default the 99th percentile of the validation items' errors) "
        "unless one of --threshold, --threshold-percentile, --contamination is given. Also writes "
        "OUTPUT_worst.png (the worst items above their reconstructions) and OUTPUT_summary.json. "
        "Rasters with -o FILE.tif or -o DIR get per-pixel error maps as float32 GeoTIFFs instead "
        "(with .csv/.parquet, one score per patch)."
    )
    output: str | None = opt(
        None, "output .csv or .parquet (rasters: also .tif or DIR)", short="-o", required=True, metavar="FILE"
    )
    metric: str | None = opt(
        None,
        "ensemble (the default: the reconstruction error, local and whole, and the distances from the training "
        "items, each against its spread on normal items; images: the largest of them, tables: their sum), "
        "mse, mae, ssim (1 - SSIM: structural dissimilarity), or mse+latent (MSE plus the "
        "code's distance from the training codes)",
        choices=METRICS,
    )
    threshold: float | None = opt(
        None, "flag items whose score exceeds VALUE (a negative one as --threshold=-1)", metavar="VALUE"
    )
    threshold_percentile: float | None = opt(
        None, "threshold at this percentile of the run's validation errors (training default: 99)", metavar="P"
    )
    contamination: float | None = opt(
        None,
        "flag this fraction of the scored items (e.g. 0.05): the threshold comes from this data",
        metavar="FRACTION",
    )
    worst: int = opt(16, "items in the worst-items picture (default 16)", metavar="N")
    maps: str | None = opt(
        None,
        "images: write DIR/<the item's path>.png for each flagged item: the input, its reconstruction and "
        "the per-pixel error as a heatmap (tables get a top_features column instead)",
        metavar="DIR",
    )
    maps_limit: int = opt(100, "at most this many error maps, the highest scores first (default 100)", metavar="N")
    precision: str = opt("fp32", EXACT, choices=PRECISIONS)
    stride: int | None = opt(None, STRIDE_HELP, metavar="N")


@dataclass
class EvaluateOptions(UseOptions):
    help: ClassVar[str] = "MSE, PSNR and SSIM next to PCA; or AUROC, AP and F1 on normal and anomalous data"
    description: ClassVar[str] = (
        "Evaluate a trained model on DATA next to PCA with the same number of components "
        "(fitted on the run's training data). Metrics in [0, 1] pixel units, overall and per channel. "
        "With --normal DATA --anomalous DATA (or DATA with --label-column or --normal-folders): how well "
        "the anomaly score of aekit score separates them: AUROC, average precision (anomalous is the "
        "positive class), and precision, recall and F1 at the run's threshold; the ROC and precision-recall "
        "curves go next to -o FILE.json as FILE_curves.png and into the run folder, for aekit report."
    )
    data: Any = arg(DATA_HELP + "; optional with --normal and --anomalous", default=None, nargs="?")
    output: str | None = opt(None, "also write the metrics as JSON", short="-o", metavar="FILE.json")
    normal: str | None = opt(None, "normal items (folder, image file, array or table, like DATA)", metavar="DATA")
    anomalous: str | None = opt(None, "anomalous items, scored against --normal", metavar="DATA")
    label_column: str | None = opt(
        None,
        "tables: DATA's column of labels: 0, normal, inlier, good, false, no vs 1, anomalous, anomaly, abnormal, "
        "outlier, bad, true, yes (any case)",
        metavar="NAME",
    )
    normal_folders: str | None = opt(
        None,
        "images: DATA's sub-folders of normal items, e.g. good; items in other folders are anomalous",
        metavar="NAME,NAME",
    )
    metric: str | None = opt(
        None, "anomaly score: mse, mae, ssim (images) or mse+latent (default: as aekit score)", choices=METRICS
    )
    threshold: float | None = opt(
        None, "precision, recall and F1 at this score (default: the threshold stored with the run)", metavar="VALUE"
    )


@dataclass
class ReportOptions(Options):
    help: ClassVar[str] = "write RUN/report.html: the whole run on one page"
    description: ClassVar[str] = (
        "Write RUN/report.html, one self-contained page (no network needed) with the run's "
        "configuration and data, metrics against PCA, loss curves, reconstructions, the anomaly score "
        "histogram and a map of the embeddings; prints its path. Training writes it too."
    )
    run: str = arg(RUN_HELP)


@dataclass
class SampleOptions(Options):
    help: ClassVar[str] = "new images decoded from random latent codes (VAE)"
    description: ClassVar[str] = (
        "Draw N codes from the prior N(0, I) of a variational autoencoder (trained with "
        "--model vae) and decode them: a grid picture (-o) and/or one file per sample (--out-dir)."
    )
    run: str = arg("run folder of a model trained with --model vae")
    n: int = opt(16, "number of samples (default: 16)", flag="-n")
    output: str | None = opt(None, "grid picture (default: samples.png)", short="-o", metavar="FILE.png")
    out_dir: str | None = opt(None, "also write each sample as its own file here", metavar="DIR")
    seed: int = opt(0, "random seed (default: 0)")
    temperature: float = opt(1.0, "scale of the prior's spread (default: 1)")
    device: str = opt("auto", DEVICE_HELP)
    verbose: bool = verbose_opt(QUIET_HELP)
    plugins: list[str] = plugins_opt()


@dataclass
class InterpolateOptions(Options):
    help: ClassVar[str] = "walk the latent space between two images"
    description: ClassVar[str] = (
        "Encode images A and B, decode N evenly spaced points between their codes and write "
        "a strip: A, the decoded points, B."
    )
    run: str = arg("run folder written by `aekit train`")
    a: str = arg("first image file")
    b: str = arg("second image file")
    steps: int = opt(8, "decoded points, ends included (default: 8)", flag="-n", metavar="STEPS")
    output: str | None = opt("interpolation.png", "strip picture", short="-o", metavar="FILE.png")
    device: str = opt("auto", DEVICE_HELP)
    verbose: bool = verbose_opt(QUIET_HELP)
    plugins: list[str] = plugins_opt()


@dataclass
class ExportOptions(Options):
    help: ClassVar[str] = "write the model as one ONNX or TorchScript file that runs without aekit"
    description: ClassVar[str] = (
        "Export the model in RUN for use without aekit: float32 N,C,H,W in the data's own units "
        "(e.g. 0-255) goes in, the normalisation is inside, any batch size. Writes FILE and FILE.json "
        "(inputs, outputs, normalisation, anomaly threshold, usage)."
    )
    run: str = arg(RUN_HELP)
    output: str | None = opt(
        None,
        "output .onnx, or .pt/.ts for TorchScript (default: RUN/model.onnx; RUN/encoder.onnx or RUN/decoder.onnx "
        "with --part)",
        short="-o",
        metavar="FILE",
    )
    format: str | None = opt(
        None,
        "onnx or torchscript (default: from the FILE extension)",
        choices=tuple(EXPORT_FORMATS),
        what="export format",
    )
    part: str = opt(
        "full",
        "full: images -> reconstruction and score; encoder: images -> latent codes; "
        "decoder: latent codes -> images (default: full)",
        choices=EXPORT_PARTS,
    )
    verbose: bool = verbose_opt(QUIET_HELP)
    plugins: list[str] = plugins_opt()


@dataclass
class TrainOptions(Options):
    """`aekit train`'s own options; the training options themselves are TrainConfig's fields."""

    help: ClassVar[str] = "train an autoencoder on a folder of images or a table"
    description: ClassVar[str] = (
        "Train an autoencoder on DATA: a folder of images (searched recursively), "
        "a .npy/.npz array of images shaped N,H,W / N,H,W,C / N,C,H,W, or a table: a .csv/.tsv/.parquet "
        "file or a 2-D array (rows x columns), which trains an MLP on standardised numeric columns "
        "(--columns, --id-column)."
    )
    data: Any = arg(
        "folder of images, one image file, a .npy/.npz array, or a table (.csv, .tsv, .parquet); "
        "with --resume, default the run's own data",
        default=None,
        nargs="?",
    )
    config: str | None = opt(None, "read options from a YAML file; flags override it", metavar="FILE.yaml")
    out: str | None = opt(None, "run folder (default: runs/<timestamp>, linked as runs/latest)", metavar="DIR")
    verbose: bool = verbose_opt("print only the run folder")
    devices: int | None = opt(
        None,
        "train on N processes with DistributedDataParallel (GPUs, or CPU processes with gloo): "
        "the same as torchrun --standalone --nproc-per-node N -m aekit train ...",
        metavar="N",
    )
    resume: str | None = opt(
        None,
        "go on with an interrupted run from its last checkpoint (exactly as if it had not stopped; "
        "only --epochs, --max-steps, --max-time, --patience, --device and --checkpoint-every may be given)",
        metavar="RUN",
    )

    def check(self, batch_size: int | None, launched: bool) -> None:
        """DATA or --resume; --devices N divides the global batch (checked before torchrun starts)."""
        if self.data is None and self.resume is None:
            raise AekitError("give DATA to train on (a folder, file or array), or --resume RUN to go on with a run")
        if self.devices is None:
            return
        if self.devices < 1:
            raise AekitError(f"--devices must be a positive integer, got {self.devices}")
        batch = batch_size or 64
        if self.devices > 1 and not launched and batch % self.devices:
            raise AekitError(f"--batch-size {batch} (the global batch) must be a multiple of --devices {self.devices}")


DEMO_STEPS = 1500  # the demo's budget: about 40 s on a 2-core CPU


@dataclass
class DemoOptions(Options):
    help: ClassVar[str] = "train on the sample digits shipped with aekit"
    description: ClassVar[str] = (
        f"Train on the sample dataset embedded in aekit (2000 digit images of 28x28, drawn by "
        f"scripts/make_sample_data.py) for {DEMO_STEPS} steps unless --epochs, --max-steps or --max-time "
        "say otherwise, and say where the results are."
    )
    config: str | None = opt(None, "read options from a YAML file; flags override it", metavar="FILE.yaml")
    out: str | None = opt(None, "run folder (default: runs/<timestamp>, linked as runs/latest)", metavar="DIR")
    verbose: bool = verbose_opt("print only the run folder")


@dataclass
class SweepOptions(Options):
    """The swept options (comma-separated lists), the search and the per-trial budget; the other
    training options (TrainConfig's fields) apply to every trial."""

    train_skip: ClassVar[tuple[str, ...]] = ("max_time",)  # given per trial as --max-time-per-trial
    help: ClassVar[str] = "train one run per latent size, depth, learning rate and model, and compare them"
    description: ClassVar[str] = (
        "Sweep the latent size (and depth, learning rate, model) on DATA: one normal run per trial "
        "under SWEEP_DIR/trials/, all reading the same decode cache. Writes SWEEP_DIR/results.csv (a row per "
        "trial), sweep.png (validation MSE against latent size per depth, next to PCA), sweep.html, and links "
        "the best trial as SWEEP_DIR/best. Other training options apply to every trial. An interrupted sweep "
        "resumes when the same command runs again."
    )
    data: Any = arg("folder of images, one image file, a .npy/.npz array, or a table (.csv, .tsv, .parquet)")
    latent_dim: Any = opt(
        None, "latent sizes to try, comma-separated, e.g. 8,16,32,64", required=True, metavar="Z,Z,..."
    )
    depth: Any = opt(None, "depths to try, e.g. 2,3,4 (default: the data's own depth)", metavar="D,D,...")
    lr: Any = opt(None, "peak learning rates to try, e.g. 1e-3,3e-4 (default: 1e-3)", metavar="LR,LR,...")
    model: Any = opt(None, "models to try among ae, vae, dae, e.g. ae,vae (default: ae)", metavar="M,M,...")
    search: str = opt(
        "grid",
        "grid: every combination (default); random or tpe: --trials of them drawn by Optuna, pruning "
        "trials whose validation MSE trails the others' median (pip install 'aekit[sweep]')",
        choices=SEARCHES,
    )
    trials: int | None = opt(
        None, "random/tpe: number of trials (default: 10); grid: run only the first N", metavar="N"
    )
    max_time_per_trial: float | None = opt(None, "time budget of each trial (default: none)", metavar="SECONDS")
    out: str | None = opt(
        None,
        "sweep folder (default: sweeps/<timestamp>); run the same command again to resume an interrupted sweep",
        short="-o",
        metavar="SWEEP_DIR",
    )
    config: str | None = opt(None, "read options from a YAML file; flags override it", metavar="FILE.yaml")
    verbose: bool = verbose_opt("print only the run folder")


@dataclass
class ModelsOptions(Options):
    help: ClassVar[str] = "list the model architectures"
    description: ClassVar[str] = "List the registered models."


COMMANDS: dict[str, type[Options]] = {
    "train": TrainOptions,
    "demo": DemoOptions,
    "encode": EncodeOptions,
    "reconstruct": ReconstructOptions,
    "score": ScoreOptions,
    "evaluate": EvaluateOptions,
    "report": ReportOptions,
    "sample": SampleOptions,
    "interpolate": InterpolateOptions,
    "export": ExportOptions,
    "sweep": SweepOptions,
    "models": ModelsOptions,
}
TRAINS = ("train", "demo", "sweep")  # commands that also take TrainConfig's fields as flags
