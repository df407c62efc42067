"""VAE on grayscale digits (issue #7 targets): active units, samples, MSE next to a plain AE.

Trains `aekit train --model ae` and `--model vae` with latent 16 and otherwise default settings on
the 1797 8x8 digits that scikit-learn ships (0-16 scaled to 0-255), for the same number of epochs,
then writes the VAE's samples and an interpolation with `aekit sample` / `aekit interpolate` into
docs/images/ (the pictures the README shows). Needs scikit-learn (the dev extra).

    python benchmarks/vae_digits.py [--epochs 30] [--json benchmarks/results/vae_digits.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parents[1]


def aekit(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "aekit", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--images", type=Path, default=ROOT / "docs" / "images")
    args = ap.parse_args()
    digits = load_digits()
    x = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    res: dict = {"data": "sklearn digits, 1797 x 8x8 gray", "epochs": args.epochs, "latent_dim": 16}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "digits.npy", x)
        for model in ("ae", "vae"):
            out = tmp / model
            aekit("train", str(tmp / "digits.npy"), "--model", model, "--latent-dim", "16",
                  "--epochs", str(args.epochs), "--out", str(out), "--quiet")  # fmt: skip
            s = json.loads((out / "summary.json").read_text())
            res[model] = {k: s.get(k) for k in ("val_mse", "pca_val_mse", "active_units", "kl_per_dim", "seconds")}
        res["vae_mse_vs_ae"] = res["vae"]["val_mse"] / res["ae"]["val_mse"]
        args.images.mkdir(parents=True, exist_ok=True)
        aekit("sample", str(tmp / "vae"), "-n", "64", "-o", str(args.images / "vae_samples.png"), "--quiet")
        a, b = tmp / "a.png", tmp / "b.png"
        Image.fromarray(x[0]).save(a)  # a 0
        Image.fromarray(x[7]).save(b)  # a 7
        aekit("interpolate", str(tmp / "vae"), str(a), str(b), "-n", "8",
              "-o", str(args.images / "vae_interpolation.png"), "--quiet")  # fmt: skip
        real = x[np.random.default_rng(0).permutation(len(x))[:64]][:, None].astype(np.float32) / 255
        sys.path.insert(0, str(ROOT / "src"))
        from aekit.core.plots import tile_grid

        tile_grid(real, args.images / "digits_real.png")
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
