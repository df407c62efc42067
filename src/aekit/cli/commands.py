"""What each command does with its parsed options: a call of the library function, and a line
saying what was written. `run(args)` picks the command."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
from pathlib import Path

from aekit.cli.parser import command_options, train_options
from aekit.config import commands as c
from aekit.core.launch import launch, launched
from aekit.core.progress import console
from aekit.core.signals import exit_code


def cmd_train(o: c.TrainOptions, args: argparse.Namespace) -> int:
    from aekit.training.workflow import train

    o.check(args.batch_size, launched())
    if o.devices is not None and o.devices > 1 and not launched():
        # what cannot run says so once, before torchrun starts N processes
        from aekit.core.distributed import check_backend
        from aekit.training.workflow import check_resume, launch_config

        if o.resume:
            cfg = check_resume(o.resume, o.data, config=o.config, out=o.out, **train_options(args))[0]
        else:
            cfg = launch_config(o.config, train_options(args))
        check_backend(cfg.device, o.devices)
        return launch(o.devices, args.argv)
    run = train(o.data, out=o.out, config=o.config, verbose=o.verbose, resume=o.resume, **train_options(args))
    if int(os.environ.get("RANK", "0")) == 0:
        print(run.path)
    return exit_code(run.summary["stopped"])


def cmd_demo(o: c.DemoOptions, args: argparse.Namespace) -> int:
    from importlib.resources import files

    from aekit.training.workflow import train

    sample = Path(str(files("aekit") / "data" / "sample"))
    options = train_options(args)
    if options.get("epochs") is None and options.get("max_time") is None:
        options["max_steps"] = options.get("max_steps") or c.DEMO_STEPS
    run = train(sample, out=o.out, config=o.config, verbose=o.verbose, **options)
    s = run.summary
    console.print(
        f"\n[bold green]demo done[/bold green]: trained on {s['n_images']} digit images ({sample}) in "
        f"{s['seconds']:.0f} s: validation MSE {s['val_mse']:.5f}, {s['val_mse'] / s['pca_val_mse']:.2f}x "
        f"PCA's {s['pca_val_mse']:.5f} with the same {s['latent_dim']} numbers per image.\n"
        f"Results are in [bold]{run.path}[/bold]: report.html (everything on one page), recon.png, "
        f"loss.png, metrics.csv, summary.json, model.safetensors + model.json.\n"
        f"Next: aekit encode {run.path} {sample} -o embeddings.csv"
    )
    print(run.path)
    return 0


def cmd_encode(o: c.EncodeOptions, args: argparse.Namespace) -> int:
    from aekit.inference.encode import encode_to_file

    written, got = encode_to_file(o)
    if o.verbose and written:  # under torchrun, rank 0 writes and says so
        console.print(f"encoded {len(got.ids)} item(s), skipped {len(got.skipped)}: {', '.join(map(str, written))}")
        for s in got.skipped[:10]:
            console.print(f"  skipped {s.path}: {s.reason}")
    return 0


WRITERS = {  # commands that write what a model makes of data: the library function behind each
    "evaluate": ("aekit.inference.evaluate", "evaluate"),
    "score": ("aekit.inference.score", "score_to_file"),
    "reconstruct": ("aekit.inference.reconstruct", "reconstruct_to_dir"),
}


def cmd_write(o: c.UseOptions, args: argparse.Namespace) -> int:
    module, name = WRITERS[args.command]
    getattr(importlib.import_module(module), name)(o)
    return 0


def cmd_sample(o: c.SampleOptions, args: argparse.Namespace) -> int:
    from aekit.inference.generate import sample

    if o.output is None and o.out_dir is None:
        o.output = "samples.png"
    sample(o)
    return 0


def cmd_interpolate(o: c.InterpolateOptions, args: argparse.Namespace) -> int:
    from aekit.inference.generate import interpolate

    interpolate(o)
    return 0


def cmd_report(o: c.ReportOptions, args: argparse.Namespace) -> int:
    from aekit.reporting.report import report

    print(report(o.run))
    return 0


def cmd_export(o: c.ExportOptions, args: argparse.Namespace) -> int:
    from aekit.exporting import export, sidecar_path

    path = export(o)
    if o.verbose:
        size = path.stat().st_size / 1e6
        console.print(f"exported {o.part} model: {path} ({size:.2f} MB), description in {sidecar_path(path)}")
    return 0


def cmd_sweep(o: c.SweepOptions, args: argparse.Namespace) -> int:
    from aekit.sweeps.run import run_sweep

    own = {f.name: getattr(o, f.name) for f in dataclasses.fields(o) if f.name != "data"}
    train = {k: v for k, v in train_options(args).items() if k not in own and k not in o.train_skip}
    res = run_sweep(o.data, **own, **train)
    print(res.path)
    return 130 if res.interrupted else 0


def cmd_models(o: c.ModelsOptions, args: argparse.Namespace) -> int:
    from aekit.models import describe_models

    for name, text in describe_models().items():
        print(f"{name:<8} {text}")
    return 0


COMMANDS = {name: cmd_write if name in WRITERS else globals()[f"cmd_{name}"] for name in c.COMMANDS}


def run(args: argparse.Namespace) -> int:
    options = command_options(args)
    if getattr(options, "plugins", None):  # --plugin of a command that reads a run: the user's own modules
        from aekit.models.registry import load_plugins

        load_plugins(options.plugins)
    return COMMANDS[args.command](options, args)
