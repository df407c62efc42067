"""Console output: one rich console on stderr, progress bars that cost nothing when hidden."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")
# soft_wrap: a line is printed whole, never cut at the console's width (80 columns when stderr is a
# file or a pipe), so logs hold one epoch per line; a terminal wraps long lines itself
console = Console(stderr=True, highlight=False, soft_wrap=True)


def make_progress(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=transient,
        refresh_per_second=4,
    )


def track(items: Iterable[T], total: int, description: str, enabled: bool = True, min_total: int = 200) -> Iterator[T]:
    """Iterate with a progress bar (shown only for long jobs, `total` >= `min_total`, when `enabled`)."""
    if not enabled or total < min_total:
        yield from items
        return
    with make_progress(transient=True) as progress:
        task = progress.add_task(description, total=total, info="")
        for i, item in enumerate(items, 1):
            yield item
            if i % 16 == 0 or i == total:
                progress.update(task, completed=i)
