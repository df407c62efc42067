"""A guard against data unlike the training data: `aekit score`, `encode`, `reconstruct` and
`evaluate` say so in lines starting "warning:", naming what differs and what to do, instead of
scoring colour photos with a gray digits model in silence.

What is checked: the channels and size of the items as they were before aekit made them fit the
model (image files: counted by the reader, `LoadedData.adapted`; arrays: their shape), their values
(each channel's mean, in units of the training data's spread), and after scoring the share of
items above the threshold against the share of normal items that would be.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

SAMPLE = 2000  # items the value check reads (spread over the data)
MEAN_SHIFT = 2.0  # a channel's mean this many training spreads away from the training mean: other data
SPREAD_RATIO = 3.0  # or its spread this many times larger or smaller
FLAGGED_SHARE = 0.5  # above the threshold: at least this share, when normal data would give much less


def shape_warnings(model: Any, items: Any) -> list[str]:
    """Channels and size: the reader's count for image files, the shape for arrays (tar shards are
    read on the fly under the model's plan: nothing to look at here)."""
    if model.columns is not None or getattr(items, "stream", True) is not None:
        return []
    c, h, w = model.input_shape
    lines = []
    adapted = items.adapted if isinstance(items.adapted, dict) else {}
    n = adapted.get("n", len(items))
    kind = {1: "gray", 3: "RGB", 4: "RGBA"}
    if adapted.get("channels"):
        lines.append(
            f"warning: {adapted['channels']} of {n} images have other channels than the model's {c} "
            f"({kind.get(c, c)}) and were converted; the model never saw such images: score data like its "
            "training data, or train a model on these"
        )
    elif items.shape[0] != c and items.adapted is None:
        lines.append(
            f"warning: the data have {items.shape[0]} channel(s) and the model takes {c} ({kind.get(c, c)}): "
            "they are converted, and the model never saw such items; score data like its training data"
        )
    if adapted.get("resized"):
        example = "x".join(map(str, adapted.get("example_size") or []))
        lines.append(
            f"warning: {adapted['resized']} of {n} images are not {h}x{w} (e.g. {example}) and were resized to cover "
            f"it and center-cropped; scores of other sizes compare poorly: pass images of the training size"
        )
    elif tuple(items.shape[1:]) != (h, w) and items.adapted is None and "raster" not in model.meta:
        lines.append(
            f"warning: the items are {items.shape[1]}x{items.shape[2]} and the model takes {h}x{w}: they are "
            "resized and center-cropped; pass items of the training size"
        )
    return lines


def value_warnings(model: Any, items: Any) -> list[str]:
    """Each channel's mean and spread against the training data's (its normalisation)."""
    if getattr(items, "stream", True) is not None or not len(items) or items.shape != tuple(model.input_shape):
        return []
    pick = np.linspace(0, len(items) - 1, min(len(items), SAMPLE)).round().astype(np.int64)
    x = np.asarray(items.array[np.unique(pick)], np.float64) / model.scale
    mean, spread = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    norm = model.meta["normalization"]
    train_mean, train_std = np.asarray(norm["mean"]), np.asarray(norm["std"])
    shift = np.abs(mean - train_mean) / train_std
    ratio = np.maximum(spread, 1e-12) / train_std
    odd = np.flatnonzero((shift > MEAN_SHIFT) | (ratio > SPREAD_RATIO) | (ratio < 1 / SPREAD_RATIO))
    if not len(odd):
        return []
    j = int(odd[np.argmax(shift[odd])])
    what = f"column {model.columns[j]!r}" if model.columns is not None else f"channel {j}"
    return [
        f"warning: the values differ from the training data's ({len(odd)} of {len(mean)} "
        f"{'columns' if model.columns is not None else 'channels'}; {what}: mean {mean[j]:.4g} and spread "
        f"{spread[j]:.4g} where training had {train_mean[j]:.4g} and {train_std[j]:.4g}, in "
        f"{'standardised' if model.columns is not None else '[0, 1]'} units): check the units and the source"
    ]


def flagged_warning(flags: np.ndarray, rule: dict) -> list[str]:
    """Far more items above the threshold than normal data would put there."""
    if not len(flags) or rule.get("rule") == "given":
        return []
    expected = rule.get("contamination") or (1 - (rule.get("percentile") or 99.0) / 100)
    share = float(np.mean(flags))
    if share < FLAGGED_SHARE or share < 10 * expected:
        return []
    return [
        f"warning: {int(flags.sum())} of {len(flags)} items ({100 * share:.1f}%) score above the threshold, "
        f"which about {100 * expected:.3g}% of items like the training data would: this data is unlike "
        "what the model was trained on (or the model does not fit it); check that it is the right data"
    ]


def check_data(model: Any, items: Any, verbose: bool) -> list[str]:
    """The channel, size and value warnings of `items` for `model`, said; returns them."""
    lines = shape_warnings(model, items) + value_warnings(model, items)
    say(lines, verbose)
    return lines


def say(lines: list[str], verbose: bool) -> None:
    """On the console when verbose (the command line), else as Python warnings."""
    from aekit.core.progress import console

    for line in lines:
        if verbose:
            console.print(line, style="yellow", markup=False)
        else:
            warnings.warn(line.removeprefix("warning: "), UserWarning, stacklevel=3)


def say_skipped(skipped: list, verbose: bool, shown: int = 10) -> None:
    """Files that could not be used, listed as training lists them."""
    from aekit.core.progress import console

    if not verbose or not skipped:
        return
    console.print(f"skipped {len(skipped)} file(s):", style="yellow")
    for s in skipped[:shown]:
        console.print(f"  {s.path}: {s.reason}", markup=False)
    if len(skipped) > shown:
        console.print(f"  ... and {len(skipped) - shown} more")
