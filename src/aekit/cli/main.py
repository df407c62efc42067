"""The `aekit` command: a thin layer over library functions; `main(argv)` is callable from tests.

Each command is a plain function taking the parsed arguments; COMMANDS maps names to them.
User errors (AekitError, bad flags) print one line and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

from aekit.config.train import field_help
from aekit.core.errors import AekitError
from aekit.core.progress import console
from aekit.version import __version__

FLAG_NAMES = {"extensions": "--ext"}


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _flag_type(annotation: str) -> tuple[type, bool]:
    """(element type, is a list) for the string annotations of TrainConfig fields."""
    names = {"list": list, "int": int, "float": float, "str": str, "bool": bool}
    hint = eval(annotation, names) if isinstance(annotation, str) else annotation  # noqa: S307
    args = [a for a in typing.get_args(hint) if a is not type(None)] if isinstance(hint, types.UnionType) else [hint]
    hint = args[0]
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False


def _int_list(text: str) -> list[int]:
    """'4,3,2' or '4' -> [4, 3, 2] / [4]; used with nargs='+' so '4 3 2' works too."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 4,3,2, got {text!r}") from None


class _Flatten(argparse.Action):
    """Joins the lists of `_int_list` values: '--bands 4,3 2' is [4, 3, 2]."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, [v for group in values for v in group])


def add_train_options(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field; defaults are None so only given flags override the file.
    Fields in `skip` (and "out") are left to the caller, e.g. the options a sweep takes as lists."""
    from aekit.config.train import TrainConfig

    defaults = TrainConfig()
    for name, f in field_help().items():
        if name in skip:
            continue
        kind, is_list = _flag_type(f.type)
        flag = FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
        default = getattr(defaults, name)
        help_text = f.metadata["help"] + (f" (default: {default})" if default not in (None, []) else "")
        kw: dict = {"dest": name, "default": None, "help": help_text, "type": kind}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if kind is bool:
            kw = {"dest": name, "default": None, "help": f.metadata["help"], "action": "store_true"}
        elif name == "extensions":
            kw.update(action="append", metavar="EXT")
        elif name == "columns":
            kw.update(metavar="A,B,C")  # one comma-separated argument, split by the config
        elif name == "id_column":
            kw.update(metavar="NAME")
        elif is_list and kind is int:
            kw.update(nargs="+", metavar="N", type=_int_list, action=_Flatten)
        elif is_list:
            kw.update(nargs="+", metavar="N")
        p.add_argument(flag, **kw)
    p.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file; flags override it")
    if "out" not in skip:
        p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<timestamp>, linked as runs/latest)")
    p.add_argument("--quiet", action="store_true", help="print only the run folder")


def _options(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in field_help()}


def add_use_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the commands that use a trained model on data (encode, evaluate, ...)."""
    p.add_argument("run", help="run folder written by `aekit train` (e.g. runs/latest)")
    p.add_argument(
        "data",
        help="folder of images, one image file, a .npy/.npz array, a table (.csv, .tsv, .parquet), or rasters",
    )
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default: 256)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--cache-dir", help="where decoded images are cached (default: ~/.cache/aekit)")
    p.add_argument("--no-cache", action="store_true", help="decode into memory only")
    p.add_argument("--layout", choices=("NHW", "NHWC", "NCHW"), help="array files: layout (default: inferred)")
    p.add_argument(
        "--id-column",
        metavar="NAME",
        help="tables: the column that identifies rows (default: the one used in training, else id, else row numbers)",
    )


def _use(args: argparse.Namespace) -> dict:
    """Keyword arguments of the library functions behind the add_use_options commands."""
    return {
        "batch_size": args.batch_size,
        "device": args.device,
        "verbose": not args.quiet,
        "cache_dir": None if args.no_cache else (args.cache_dir or "default"),
        "layout": args.layout,
        "id_column": args.id_column,
    }


def cmd_train(args: argparse.Namespace) -> int:
    from aekit.training.workflow import train

    if args.data is None and args.resume is None:
        raise AekitError("give DATA to train on (a folder, file or array), or --resume RUN to go on with a run")
    if args.devices is not None:
        if args.devices < 1:
            raise AekitError(f"--devices must be a positive integer, got {args.devices}")
        if args.devices > 1 and not launched():
            batch = args.batch_size or 64
            if batch % args.devices:
                raise AekitError(
                    f"--batch-size {batch} (the global batch) must be a multiple of --devices {args.devices}"
                )
            return launch(args.devices, args.argv)
    run = train(
        args.data, out=args.out, config=args.config, verbose=not args.quiet, resume=args.resume, **_options(args)
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(run.path)
    return 130 if run.summary["stopped"].startswith("interrupted") else 0


def launched() -> bool:
    """Inside a torchrun launch of several processes (checked without importing torch)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch(n: int, argv: list[str]) -> int:
    """`aekit train --devices N ...` = `torchrun --standalone --nproc-per-node N -m aekit train ...`."""
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--devices":
            skip = True
        elif not a.startswith("--devices="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", "-m", "aekit"]
    return subprocess.call([*cmd, *rest])


def cmd_demo(args: argparse.Namespace) -> int:
    from importlib.resources import files

    from aekit.training.workflow import train

    sample = Path(str(files("aekit") / "data" / "sample"))
    options = _options(args)
    options["epochs"] = options["epochs"] or 15
    run = train(sample, out=args.out, config=args.config, verbose=not args.quiet, **options)
    s = run.summary
    console.print(
        f"\n[bold green]demo done[/bold green]: trained on {s['n_images']} photo patches "
        f"({sample}), validation MSE {s['val_mse']:.5f} (PCA: {s['pca_val_mse']:.5f}).\n"
        f"Results are in [bold]{run.path}[/bold]: report.html (everything on one page), recon.png, "
        f"loss.png, metrics.csv, summary.json, model.safetensors + model.json.\n"
        f"Next: aekit encode {run.path} {sample} -o embeddings.csv"
    )
    print(run.path)
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from aekit.inference.encode import encode_to_file

    written, n, skipped = encode_to_file(args.run, args.data, args.output, precision=args.precision, **_use(args))
    if not args.quiet and written:  # under torchrun, rank 0 writes and says so
        console.print(f"encoded {n} item(s), skipped {len(skipped)}: {', '.join(str(p) for p in written)}")
        for s in skipped[:10]:
            console.print(f"  skipped {s.path}: {s.reason}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from aekit.inference.evaluate import evaluate

    evaluate(args.run, args.data, output=args.output, **_use(args))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from aekit.inference.score import score_to_file

    score_to_file(
        args.run,
        args.data,
        args.output,
        metric=args.metric,
        threshold=args.threshold,
        threshold_percentile=args.threshold_percentile,
        contamination=args.contamination,
        worst=args.worst,
        precision=args.precision,
        stride=args.stride,
        **_use(args),
    )
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from aekit.inference.reconstruct import reconstruct_to_dir

    reconstruct_to_dir(
        args.run,
        args.data,
        args.output,
        compare=args.compare,
        precision=args.precision,
        stride=args.stride,
        **_use(args),
    )
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from aekit.inference.generate import sample

    out = args.output if args.output or not args.out_dir else None
    sample(
        args.run,
        args.n,
        out if out is not None or args.out_dir else "samples.png",
        out_dir=args.out_dir,
        seed=args.seed,
        temperature=args.temperature,
        device=args.device,
        verbose=not args.quiet,
    )
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from aekit.inference.generate import interpolate

    interpolate(args.run, args.a, args.b, args.n, args.output, device=args.device, verbose=not args.quiet)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from aekit.reporting.report import report

    print(report(args.run))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from aekit.exporting import export, format_for, sidecar_path

    path = export(args.run, args.output, format=args.format or format_for(args.output), part=args.part)
    if not args.quiet:
        console.print(
            f"exported {args.part} model: {path} ({path.stat().st_size / 1e6:.2f} MB), "
            f"description in {sidecar_path(path)}"
        )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from aekit.sweeps.run import run_sweep

    res = run_sweep(
        args.data,
        latent_dim=args.latent_dim,
        depth=args.depth,
        lr=args.lr,
        model=args.model,
        search=args.search,
        trials=args.trials,
        max_time_per_trial=args.max_time_per_trial,
        out=args.out,
        config=args.config,
        verbose=not args.quiet,
        **{name: getattr(args, name, None) for name in field_help() if name not in SWEEP_SKIP},
    )
    print(res.path)
    return 130 if res.interrupted else 0


def cmd_models(args: argparse.Namespace) -> int:
    from aekit.models import describe_models

    for name, text in describe_models().items():
        print(f"{name:<8} {text}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "demo": cmd_demo,
    "encode": cmd_encode,
    "reconstruct": cmd_reconstruct,
    "score": cmd_score,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "sample": cmd_sample,
    "interpolate": cmd_interpolate,
    "export": cmd_export,
    "sweep": cmd_sweep,
    "models": cmd_models,
}
SWEEP_SKIP = ("model", "latent_dim", "depth", "lr", "max_time", "out")  # sweep's own flags


def add_sweep_options(p: argparse.ArgumentParser) -> None:
    """The swept options (comma-separated lists), the search and the per-trial budget."""
    p.add_argument(
        "data", help="folder of images, one image file, a .npy/.npz array, or a table (.csv, .tsv, .parquet)"
    )
    p.add_argument(
        "--latent-dim", required=True, metavar="Z,Z,...", help="latent sizes to try, comma-separated, e.g. 8,16,32,64"
    )
    p.add_argument("--depth", metavar="D,D,...", help="depths to try, e.g. 2,3,4 (default: the data's own depth)")
    p.add_argument("--lr", metavar="LR,LR,...", help="peak learning rates to try, e.g. 1e-3,3e-4 (default: 1e-3)")
    p.add_argument("--model", metavar="M,M,...", help="models to try among ae, vae, dae, e.g. ae,vae (default: ae)")
    p.add_argument(
        "--search",
        default="grid",
        choices=("grid", "random", "tpe"),
        help="grid: every combination (default); random or tpe: --trials of them drawn by Optuna, pruning "
        "trials whose validation MSE trails the others' median (pip install 'aekit[sweep]')",
    )
    p.add_argument(
        "--trials", type=int, metavar="N", help="random/tpe: number of trials (default: 10); grid: run only the first N"
    )
    p.add_argument(
        "--max-time-per-trial", type=float, metavar="SECONDS", help="time budget of each trial (default: none)"
    )
    p.add_argument(
        "-o",
        "--out",
        metavar="SWEEP_DIR",
        help="sweep folder (default: sweeps/<timestamp>); run the same command again to resume an interrupted sweep",
    )
    add_train_options(p, skip=SWEEP_SKIP)


def add_precision(p: argparse.ArgumentParser, default: str = "fp32") -> None:
    if default == "fp32":
        text = "fp32 (default: exact, as the threshold and exported models compute) or reduced precision for speed"
    else:
        text = (
            "auto (default: the training's precision, bf16 autocast where the CPU/GPU has native bf16, "
            "else fp32; codes within about 0.5%% of fp32's), or fp32 for codes equal to an exported "
            "encoder's, or bf16/fp16"
        )
    p.add_argument("--precision", default=default, choices=("fp32", "auto", "bf16", "fp16"), help=text)


def add_stride(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stride",
        type=int,
        metavar="N",
        help="rasters: spacing of the overlapping patches stitched into a GeoTIFF (default: half the patch)",
    )


def build_parser() -> Parser:
    parser = Parser(prog="aekit", description="Train autoencoders on your own data, then use them.")
    parser.add_argument("--version", action="version", version=f"aekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    parser.subparsers = sub.choices

    p = sub.add_parser(
        "train",
        help="train an autoencoder on a folder of images or a table",
        description="Train an autoencoder on DATA: a folder of images (searched recursively), "
        "a .npy/.npz array of images shaped N,H,W / N,H,W,C / N,C,H,W, or a table: a .csv/.tsv/.parquet "
        "file or a 2-D array (rows x columns), which trains an MLP on standardised numeric columns "
        "(--columns, --id-column).",
    )
    p.add_argument(
        "data",
        nargs="?",
        help="folder of images, one image file, a .npy/.npz array, or a table (.csv, .tsv, .parquet); "
        "with --resume, default the run's own data",
    )
    add_train_options(p)
    p.add_argument(
        "--devices",
        type=int,
        metavar="N",
        help="train on N processes with DistributedDataParallel (GPUs, or CPU processes with gloo): "
        "the same as torchrun --standalone --nproc-per-node N -m aekit train ...",
    )
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="go on with an interrupted run from its last completed epoch (exactly as if it had not "
        "stopped; only --epochs, --max-time and --device may be given)",
    )

    p = sub.add_parser(
        "demo",
        help="train on the sample photos shipped with aekit",
        description="Train on the sample dataset embedded in aekit and say where the results are.",
    )
    add_train_options(p)

    p = sub.add_parser(
        "encode",
        help="write the latent code of every image or table row",
        description="Encode DATA with a trained model: one row per file with its path, or per table row "
        "with its identifier (the id column, or the row number).",
    )
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output .npy, .csv or .parquet")
    add_use_options(p)
    add_precision(p, default="auto")

    p = sub.add_parser(
        "reconstruct",
        help="write the model's reconstruction of every image",
        description="Reconstruct DATA with a trained model into the folder DIR, mirroring the input tree "
        "(PNG for 8/16-bit images; arrays give DIR/reconstructions.npy; rasters, with a model trained on "
        "rasters, give whole GeoTIFFs with the source's CRS, transform, type and nodata, stitched from "
        "overlapping patches). DIR must be new, empty, or written by an earlier aekit reconstruct.",
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--compare", action="store_true", help="also write DIR/compare/: each original left of its reconstruction"
    )
    add_use_options(p)
    add_precision(p)
    add_stride(p)

    p = sub.add_parser(
        "score",
        help="anomaly scores: reconstruction error of every item, with a threshold",
        description="Score DATA with a trained model: one row per item (path, score, is_anomaly, rank), "
        "worst first. The score is the reconstruction error in [0, 1] pixel units; the threshold is the "
        "one fixed at training time (by default the 99th percentile of the validation items' errors) "
        "unless one of --threshold, --threshold-percentile, --contamination is given. Also writes "
        "OUTPUT_worst.png (the worst items above their reconstructions) and OUTPUT_summary.json. "
        "Rasters with -o FILE.tif or -o DIR get per-pixel error maps as float32 GeoTIFFs instead "
        "(with .csv/.parquet, one score per patch).",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="output .csv or .parquet (rasters: also .tif or DIR)"
    )
    p.add_argument(
        "--metric",
        default="mse",
        choices=("mse", "mae", "ssim"),
        help="mse (default), mae, or ssim (1 - SSIM: structural dissimilarity)",
    )
    p.add_argument("--threshold", type=float, metavar="VALUE", help="flag items whose score exceeds VALUE")
    p.add_argument(
        "--threshold-percentile",
        type=float,
        metavar="P",
        help="threshold at this percentile of the run's validation errors (training default: 99)",
    )
    p.add_argument(
        "--contamination",
        type=float,
        metavar="FRACTION",
        help="flag this fraction of the scored items (e.g. 0.05): the threshold comes from this data",
    )
    p.add_argument("--worst", type=int, default=16, metavar="N", help="items in the worst-items picture (default 16)")
    add_use_options(p)
    add_precision(p)
    add_stride(p)

    p = sub.add_parser(
        "evaluate",
        help="MSE, PSNR and SSIM of a trained model on any data, next to PCA",
        description="Evaluate a trained model on DATA next to PCA with the same number of components "
        "(fitted on the run's training data). Metrics in [0, 1] pixel units, overall and per channel.",
    )
    p.add_argument("-o", "--output", metavar="FILE.json", help="also write the metrics as JSON")
    add_use_options(p)

    p = sub.add_parser(
        "report",
        help="write RUN/report.html: the whole run on one page",
        description="Write RUN/report.html, one self-contained page (no network needed) with the run's "
        "configuration and data, metrics against PCA, loss curves, reconstructions, the anomaly score "
        "histogram and a map of the embeddings; prints its path. Training writes it too.",
    )
    p.add_argument("run", help="run folder written by `aekit train` (e.g. runs/latest)")

    p = sub.add_parser(
        "sample",
        help="new images decoded from random latent codes (VAE)",
        description="Draw N codes from the prior N(0, I) of a variational autoencoder (trained with "
        "--model vae) and decode them: a grid picture (-o) and/or one file per sample (--out-dir).",
    )
    p.add_argument("run", help="run folder of a model trained with --model vae")
    p.add_argument("-n", type=int, default=16, help="number of samples (default: 16)")
    p.add_argument("-o", "--output", metavar="FILE.png", help="grid picture (default: samples.png)")
    p.add_argument("--out-dir", metavar="DIR", help="also write each sample as its own file here")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--temperature", type=float, default=1.0, help="scale of the prior's spread (default: 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")

    p = sub.add_parser(
        "interpolate",
        help="walk the latent space between two images",
        description="Encode images A and B, decode N evenly spaced points between their codes and write "
        "a strip: A, the decoded points, B.",
    )
    p.add_argument("run", help="run folder written by `aekit train`")
    p.add_argument("a", help="first image file")
    p.add_argument("b", help="second image file")
    p.add_argument("-n", type=int, default=8, metavar="STEPS", help="decoded points, ends included (default: 8)")
    p.add_argument("-o", "--output", default="interpolation.png", metavar="FILE.png", help="strip picture")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")

    p = sub.add_parser(
        "export",
        help="write the model as one ONNX or TorchScript file that runs without aekit",
        description="Export the model in RUN for use without aekit: float32 N,C,H,W in the data's own units "
        "(e.g. 0-255) goes in, the normalisation is inside, any batch size. Writes FILE and FILE.json "
        "(inputs, outputs, normalisation, anomaly threshold, usage).",
    )
    p.add_argument("run", help="run folder written by `aekit train` (e.g. runs/latest)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output .onnx, or .pt/.ts for TorchScript")
    p.add_argument(
        "--format", choices=("onnx", "torchscript"), help="onnx or torchscript (default: from the FILE extension)"
    )
    p.add_argument(
        "--part",
        default="full",
        choices=("full", "encoder", "decoder"),
        help="full: images -> reconstruction and score; encoder: images -> latent codes; "
        "decoder: latent codes -> images (default: full)",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")

    p = sub.add_parser(
        "sweep",
        help="train one run per latent size, depth, learning rate and model, and compare them",
        description="Sweep the latent size (and depth, learning rate, model) on DATA: one normal run per trial "
        "under SWEEP_DIR/trials/, all reading the same decode cache. Writes SWEEP_DIR/results.csv (a row per "
        "trial), sweep.png (validation MSE against latent size per depth, next to PCA), sweep.html, and links "
        "the best trial as SWEEP_DIR/best. Other training options apply to every trial. An interrupted sweep "
        "resumes when the same command runs again.",
    )
    add_sweep_options(p)

    sub.add_parser("models", help="list the model architectures", description="List the registered models.")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # report unknown flags as the sub-command's error, with its help
        sub = parser.subparsers.get(args.command, parser)
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = COMMANDS[args.command](args)
        if "aekit.core.distributed" in sys.modules:  # a torchrun launch: all ranks leave together
            sys.modules["aekit.core.distributed"].stop()
        return code
    except AekitError as e:
        print(f"aekit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
