"""The picture of why an item was flagged: the input, its reconstruction, and the per-pixel error as
a heatmap (dark: reconstructed well, bright: wrong), side by side with a title line saying the score
and the threshold. Pillow only: the heat colours are matplotlib's "inferno" table, taken once."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

from aekit.core.grid_labels import INK, MUTED, font, line_height, text_width

PANELS = ("input", "reconstruction", "error")


@cache
def _inferno() -> np.ndarray:
    """(256, 3) uint8: matplotlib's perceptually uniform dark-to-bright map."""
    from matplotlib import colormaps

    return (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255 + 0.5).astype(np.uint8)


def heat(errors: np.ndarray, top: float | None = None) -> np.ndarray:
    """(H, W) errors >= 0 -> (H, W, 3) uint8 heat colours, `top` (default: the largest) brightest."""
    top = float(np.max(errors)) if top is None else top
    level = np.clip(errors / top, 0, 1) if top > 0 else np.zeros_like(errors)
    return _inferno()[(level * 255 + 0.5).astype(np.int64)]


def map_picture(original: np.ndarray, recon: np.ndarray, errors: np.ndarray, title: str, min_side: int = 96):
    """(H, W, 3) uint8 input and reconstruction and (H, W) errors as one labelled Pillow image."""
    h, w = errors.shape
    zoom = max(1, math.ceil(min_side / max(1, min(h, w))))
    tiles = [original, recon, heat(errors)]
    fnt = font(max(12, min(18, w * zoom // 8)))
    line, pad = line_height(fnt), 4
    cw, ch = w * zoom, h * zoom
    width = max(pad + 3 * (cw + pad), 2 * pad + text_width(fnt, title))
    canvas = Image.new("RGB", (width, pad + 2 * line + ch + pad), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, pad), title, font=fnt, fill=INK)
    for i, (label, tile) in enumerate(zip(PANELS, tiles)):
        x = pad + i * (cw + pad)
        draw.text((x + (cw - text_width(fnt, label)) // 2, pad + line), label, font=fnt, fill=MUTED)
        canvas.paste(Image.fromarray(np.ascontiguousarray(tile).repeat(zoom, 0).repeat(zoom, 1)), (x, pad + 2 * line))
    return canvas


def stacked(pictures: list[Image.Image], gap: int = 6) -> Image.Image:
    """Pictures one above the other (the report's sheet of the worst items' maps)."""
    width = max(p.width for p in pictures)
    canvas = Image.new("RGB", (width, sum(p.height for p in pictures) + gap * (len(pictures) - 1)), "white")
    y = 0
    for p in pictures:
        canvas.paste(p, (0, y))
        y += p.height + gap
    return canvas
