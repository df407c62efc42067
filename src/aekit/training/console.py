"""What training prints: the table of what is about to happen, the progress bar with a line per
epoch, and the table of what happened."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.table import Table

from aekit.core.progress import console, make_progress
from aekit.measures.compare import format_db
from aekit.training.defaults import budget_spent, describe_budget


def print_start(data, cfg, compute, n_params, n_train, n_val, run_dir) -> None:
    c, h, w = data.shape
    t = Table(title="aekit train", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("data", data.source)
    if data.columns is None:
        t.add_row("files", f"{data.n_found} found, {len(data)} used, {len(data.skipped)} skipped")
    for note in data.notes:
        t.add_row("", note)
    if data.columns is None:
        t.add_row("input", f"{c} channel(s) x {h} x {w}, {data.array.dtype}")
    else:
        t.add_row("input", f"{len(data)} rows x {c} numeric columns, standardised per column")
    t.add_row("split", f"{n_train} train / {n_val} validation (seed {cfg.seed})")
    t.add_row("model", f"{cfg.arch}, latent {cfg.latent_dim}, depth {cfg.depth}, {n_params:,} parameters")
    t.add_row("training", f"batch {cfg.batch_size}, lr {cfg.lr:g} (warm-up, then cosine decay over the budget)")
    t.add_row("budget", describe_budget(cfg, n_train))
    n = torch.get_num_threads()
    threads = f" ({n} thread{'s' * (n > 1)})" if compute.device.type == "cpu" else ""
    t.add_row("compute", compute.describe() + threads)
    t.add_row("output", str(run_dir))
    console.print(t)


def print_end(s: dict, run_dir: Path) -> None:
    t = Table(title="result", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("stopped", s["stopped"])
    start = " (the starting point: training did not improve on it)" if s["best_epoch"] == 0 else ""
    t.add_row("best epoch", f"{s['best_epoch']} of {s['epochs_run']}{start}")
    if "columns" in s:
        t.add_row("val MSE", f"{s['val_mse']:.6f} (standardised columns: 1.0 is as bad as predicting the mean)")
    else:
        t.add_row(
            "val MSE",
            f"{s['val_mse']:.6f} ({s['mse_units']}), PSNR {format_db(s['val_psnr'])} dB, SSIM {s['val_ssim']:.4f}",
        )
    t.add_row("anomaly threshold", s["threshold"]["explanation"])
    unit = "rows" if "columns" in s else "images"
    t.add_row("time", f"{s['seconds']:.1f} s, {s['images_per_s']:.0f} {unit}/s in the last epoch")
    t.add_row("run folder", str(run_dir))
    console.print(t)
    if s["skipped"]:
        console.print(f"[yellow]skipped {len(s['skipped'])} file(s):[/yellow]")
        for item in s["skipped"][:10]:
            console.print(f"  {item['path']}: {item['reason']}")
        if len(s["skipped"]) > 10:
            console.print(f"  ... and {len(s['skipped']) - 10} more, listed in {run_dir / 'summary.json'}")


class TrainingBar:
    """The progress bar of a run: it follows the budget (steps, or time when that runs out first),
    redraws at most 4 times a second, prints a line per epoch above itself, and completes when
    training ends, early or not. Hidden (and free) when not `enabled`."""

    def __init__(self, cfg, steps: int, enabled: bool) -> None:
        self.cfg, self.steps, self.last = cfg, steps, 0.0
        self.reserve = 0.0  # seconds of the time budget kept for the end of the run (fit sets it)
        self.progress = make_progress() if enabled else None
        if self.progress:
            self.task = self.progress.add_task("training", total=steps, info="")
            self.progress.start()

    def step(self, epoch: int, step: int, elapsed: float, now: float) -> None:
        if self.progress and now - self.last > 0.25:
            done = budget_spent(self.cfg, step, self.steps, elapsed, self.reserve) * self.steps
            self.progress.update(self.task, completed=done, description=f"epoch {epoch}/{self.cfg.epochs}")
            self.last = now

    def epoch(self, line: str, val_loss: float, step: int, elapsed: float) -> None:
        if self.progress:
            done = budget_spent(self.cfg, step, self.steps, elapsed, self.reserve) * self.steps
            self.progress.update(self.task, completed=done, info=f"val {val_loss:.4f}")
            self.progress.console.print(line)

    def finish(self, completed: bool) -> None:
        """Stop the bar; full when training ended by its own rule (budget, early stop), left where it
        was when interrupted."""
        if self.progress:
            if completed:
                self.progress.update(self.task, completed=self.steps)
            self.progress.stop()
            self.progress = None
