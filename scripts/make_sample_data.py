"""Make the sample dataset embedded in aekit (src/aekit/data/sample/): handwriting-like digits.

Each image is one digit 0-9 drawn with Pillow's built-in scalable font (Pillow >= 10.1 with
FreeType) at a random size, stroke width, slant, rotation and position, then reduced to 28x28
gray: MNIST-like data with a clear nonlinear structure (shapes that move), where an autoencoder
beats PCA by a wide margin. One sub-folder per digit. Nothing is downloaded. Run it from the
repository root:

    python scripts/make_sample_data.py [--n 2000] [--size 28] [--seed 0] [--out DIR]

The output is deterministic for a given seed and Pillow version; the committed folder is what
`aekit demo` trains on. The time-to-quality benchmark writes larger sets with --out.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def digit_image(rng: np.random.Generator, digit: int, size: int = 28) -> Image.Image:
    """One digit, drawn at 4x the size and reduced (anti-aliased)."""
    big = 4 * size
    canvas = Image.new("L", (big, big), 0)
    font = ImageFont.load_default(size=int(rng.uniform(0.55, 0.8) * big))
    stroke = int(rng.integers(0, 6))
    ImageDraw.Draw(canvas).text(
        (big / 2, big / 2), str(digit), fill=255, font=font, anchor="mm", stroke_width=stroke, stroke_fill=255
    )
    slant = (1, rng.uniform(-0.3, 0.3), 0, 0, 1, 0)
    canvas = canvas.transform((big, big), Image.Transform.AFFINE, slant, resample=Image.Resampling.BILINEAR)
    shift = (rng.uniform(-8, 8), rng.uniform(-8, 8))
    canvas = canvas.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR, translate=shift)
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def write_digits(out: Path, n: int, size: int = 28, seed: int = 0) -> None:
    """n images, digits 0-9 in turn, as out/<digit>/<index>.png; replaces `out`."""
    rng = np.random.default_rng(seed)
    if out.exists():
        shutil.rmtree(out)
    for i in range(n):
        folder = out / str(i % 10)
        folder.mkdir(parents=True, exist_ok=True)
        digit_image(rng, i % 10, size).save(folder / f"{i:05d}.png", optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of images (default: 2000)")
    parser.add_argument("--size", type=int, default=28, help="image side in pixels (default: 28)")
    parser.add_argument("--seed", type=int, default=0)
    default_out = Path(__file__).resolve().parents[1] / "src" / "aekit" / "data" / "sample"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    write_digits(args.out, args.n, args.size, args.seed)
    print(f"wrote {args.n} digit images of {args.size}x{args.size} to {args.out}")


if __name__ == "__main__":
    main()
