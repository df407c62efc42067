"""Words on the pictures of originals above their reconstructions (recon.png, OUTPUT_worst.png):
the rows' names at the left, each item's name above its column, its error or score below it (red,
with "above", when it is above the threshold), and an optional title line. The tiles keep their
exact pixels (nearest-neighbour zoom); the text uses Pillow's own font, so no font file is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROWS = ("original", "reconstruction")
INK = (31, 36, 48)  # the report's text colours
MUTED = (95, 102, 115)
ALERT = (198, 40, 40)
ELLIPSIS = "..."  # in every font, also Pillow's bitmap fallback


@dataclass(frozen=True)
class GridText:
    """What is written on a grid; per item (column), in the grid's order."""

    names: Sequence[str] | None = None  # item ids: their file name is written above the column
    values: Sequence[float] | None = None  # written below the column (an error or an anomaly score)
    value_name: str = "MSE"  # the row label of the values
    flags: Sequence[bool] | None = None  # above the threshold: the value in red and "above"
    title: str | None = None  # one line above everything


@cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, ImportError):
        return ImageFont.load_default()


def text_width(fnt, text: str) -> int:
    return math.ceil(fnt.getlength(text))


def line_height(fnt) -> int:
    return math.ceil(fnt.getbbox("Ag")[3]) + 3


def short_name(item_id: str, width: int, fnt) -> str:
    """The last part of an item id (its file name), cut in the middle to fit `width` pixels; more of
    the end is kept than of the start: numbered files differ there."""
    name = str(item_id).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or str(item_id)
    if text_width(fnt, name) <= width:
        return name
    for keep in range(len(name) - 1, 0, -1):
        head = keep // 3
        cut = name[:head] + ELLIPSIS + name[len(name) - (keep - head) :]
        if text_width(fnt, cut) <= width:
            return cut
    return ELLIPSIS if text_width(fnt, ELLIPSIS) <= width else ""


def format_value(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else str(v)


def cell_lines(text: GridText, n: int) -> list[tuple[str, list[tuple[str, tuple]]]]:
    """The lines below the reconstructions: (row label, [(text, colour) per item])."""
    flags = [bool(f) for f in text.flags] if text.flags is not None else None
    lines = []
    if text.values is not None:
        lines.append(
            (
                text.value_name,
                [(format_value(float(v)), ALERT if flags and flags[i] else INK) for i, v in enumerate(text.values)],
            )
        )
    if flags is not None:
        lines.append(("threshold", [("above", ALERT) if f else ("below", MUTED) for f in flags]))
    for label, cells in lines:
        if len(cells) != n:
            raise ValueError(f"{label}: {len(cells)} values for {n} items")
    return lines


def labelled_grid(top: np.ndarray, bottom: np.ndarray, text: GridText | None = None, min_side: int = 64) -> Image.Image:
    """(N, H, W, 3) uint8 originals and reconstructions as one picture: one column per item,
    tiles zoomed to at least `min_side` pixels, with the words of `text` and the rows' names."""
    text = text or GridText()
    n, h, w, _ = top.shape
    pad = 2
    zoom = max(1, math.ceil(min_side / max(1, min(h, w))))
    ch, cw = h * zoom, w * zoom
    fnt = font(max(12, min(20, cw // 6)))
    line = line_height(fnt)
    below = cell_lines(text, n)
    left = 3 * pad + max(text_width(fnt, label) for label in [*ROWS, *(label for label, _ in below)])
    names = [short_name(i, cw - 6, fnt) for i in text.names] if text.names is not None else None
    if names is not None and len(names) != n:
        raise ValueError(f"names: {len(names)} for {n} items")
    y_title = pad
    y_names = y_title + (line + pad if text.title else 0)
    y_tiles = y_names + (line if names is not None else 0)
    y_below = y_tiles + 2 * (ch + pad) + pad
    width = max(left + n * (cw + pad) + pad, 2 * pad + (text_width(fnt, text.title) if text.title else 0))
    canvas = Image.new("RGB", (width, y_below + len(below) * line + pad), "white")
    draw = ImageDraw.Draw(canvas)
    if text.title:
        draw.text((pad, y_title), text.title, font=fnt, fill=INK)
    for r, (label, tiles) in enumerate(zip(ROWS, (top, bottom))):
        y = y_tiles + r * (ch + pad)
        draw.text((left - 2 * pad - text_width(fnt, label), y + (ch - line) // 2), label, font=fnt, fill=INK)
        for i in range(n):
            canvas.paste(
                Image.fromarray(tiles[i].repeat(zoom, axis=0).repeat(zoom, axis=1)), (left + i * (cw + pad), y)
            )
    for i in range(n):
        middle = left + i * (cw + pad) + cw // 2  # the column's centre
        if names is not None:
            draw.text((middle - text_width(fnt, names[i]) // 2, y_names), names[i], font=fnt, fill=INK)
        for k, (_, cells) in enumerate(below):
            word, colour = cells[i]
            draw.text((middle - text_width(fnt, word) // 2, y_below + k * line), word, font=fnt, fill=colour)
    for k, (label, _) in enumerate(below):
        draw.text((left - 2 * pad - text_width(fnt, label), y_below + k * line), label, font=fnt, fill=MUTED)
    return canvas
