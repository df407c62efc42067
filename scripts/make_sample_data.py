"""Make the sample dataset embedded in aekit (src/aekit/data/sample/).

Cuts square RGB patches from public-domain photographs that scikit-image and
scikit-learn ship, one sub-folder per source photo, as PNG files. Run it from the
repository root with the dev extras installed:

    python scripts/make_sample_data.py [--n 600] [--size 48] [--seed 0]

The output is deterministic for a given seed and package versions; the committed
folder is what `aekit demo` trains on.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SOURCES = {
    "astronaut": ("skimage", "astronaut.png"),
    "chelsea": ("skimage", "chelsea.png"),
    "coffee": ("skimage", "coffee.png"),
    "rocket": ("skimage", "rocket.jpg"),
    "hubble": ("skimage", "hubble_deep_field.jpg"),
    "motorcycle": ("skimage", "motorcycle_left.png"),
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
}


def source_path(package: str, name: str) -> Path:
    if package == "skimage":
        import skimage

        return Path(skimage.__file__).parent / "data" / name
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "images" / name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600, help="number of patches")
    parser.add_argument("--size", type=int, default=48, help="patch side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    default_out = Path(__file__).resolve().parents[1] / "src" / "aekit" / "data" / "sample"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    photos = {k: np.asarray(Image.open(source_path(*v)).convert("RGB")) for k, v in SOURCES.items()}
    names = sorted(photos)
    if args.out.exists():
        shutil.rmtree(args.out)
    for i in range(args.n):
        name = names[i % len(names)]
        im = photos[name]
        h, w = im.shape[:2]
        y, x = rng.integers(h - args.size), rng.integers(w - args.size)
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        patch = Image.fromarray(im[y : y + args.size, x : x + args.size])
        patch.save(folder / f"{i:04d}.png", optimize=True)
    print(f"wrote {args.n} patches of {args.size}x{args.size} to {args.out}")


if __name__ == "__main__":
    main()
