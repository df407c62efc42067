"""Make the documentation's pictures (docs/images/) by running aekit on small seeded data.

    .venv/bin/python scripts/make_doc_images.py [NAME ...]   # NAME: digits anomaly table raster array stream report

Every picture comes from a real run: the sample digits shipped with aekit, a synthetic table, a
synthetic 6-band GeoTIFF made with rasterio, a numpy array of shapes, tar shards of the digits.
A few minutes on 2 quiet CPU cores; the runs are kept under build/doc-images/ for a look at them.
The report screenshot needs Chromium (`apt-get install chromium`); without it that picture is skipped.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
from PIL import Image

import aekit

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
WORK = ROOT / "build" / "doc-images"
DIGITS = Path(str(files("aekit") / "data" / "sample"))


def save(src: Path, name: str, width: int | None = None, palette: bool = True) -> None:
    """Copy a picture into docs/images, as a small palette PNG unless it has smooth shades."""
    im = Image.open(src).convert("RGB")
    if width and im.width > width:
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    if palette:
        im = im.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    im.save(IMAGES / name, optimize=True)
    print(f"docs/images/{name}: {im.width}x{im.height}, {(IMAGES / name).stat().st_size // 1024} KB")


def fresh(name: str) -> Path:
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def digits() -> None:
    """The demo: the sample digits, aekit demo's budget."""
    run = aekit.train(DIGITS, max_steps=600, out=fresh("digits") / "run", seed=0)
    save(run.path / "recon.png", "digits_recon.png")
    save(run.path / "loss.png", "digits_loss.png", width=640)
    from aekit.reporting.report import embedding_png

    with open(run.path / "embeddings_2d.csv") as f:
        rows = list(csv.DictReader(f))
    xy = np.array([[float(r["x"]), float(r["y"])] for r in rows])
    (WORK / "digits" / "map.png").write_bytes(embedding_png([r["group"] for r in rows], xy))
    save(WORK / "digits" / "map.png", "digits_embedding_map.png", width=640)


def anomaly() -> None:
    """Train on digits 0-2, score and evaluate on held-out 0-2 (normal) and 3-9 (anomalous)."""
    work = fresh("anomaly")
    for d in range(10):
        pngs = sorted((DIGITS / str(d)).glob("*.png"))
        parts = {"train": pngs[:150], "normal": pngs[150:]} if d < 3 else {"anomalous": pngs[:25]}
        for part, chosen in parts.items():
            (work / part / str(d)).mkdir(parents=True)
            for p in chosen:
                shutil.copy(p, work / part / str(d) / p.name)
    run = aekit.train(work / "train", latent_dim=16, max_steps=500, out=work / "run", seed=0)
    aekit.score(run.path, work / "anomalous", work / "scores.csv")
    save(work / "scores_worst.png", "anomaly_worst.png")
    aekit.evaluate(run.path, normal=work / "normal", anomalous=work / "anomalous", output=work / "det.json")
    save(work / "det_curves.png", "anomaly_curves.png", width=720)
    from aekit.reporting.report import SCORE_AXIS, scores_png

    model = aekit.load(run.path)
    with open(run.path / "validation_scores.csv") as f:  # the run's default score, which the threshold is of
        scores = [float(r[model.score_metric]) for r in csv.DictReader(f)]
    (work / "hist.png").write_bytes(scores_png(scores, model.threshold, SCORE_AXIS[model.score_metric]))
    save(work / "hist.png", "anomaly_histogram.png", width=640)
    aekit.report(run.path)


def table() -> None:
    """800 rows of 7 columns, nonlinear functions of 2 hidden factors."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, (2, 800))
    cols = [a, b, a * b, np.sin(3 * a), np.cos(2 * b), a**2 - b, np.exp(a) + 0.1 * b]
    x = np.stack(cols, 1) + 0.02 * rng.normal(size=(800, 7))
    path = fresh("table") / "readings.csv"
    header = "id,temp,pressure,flow,vibration,current,voltage,power"
    rows = [f"r{i:04d}," + ",".join(f"{v:.4f}" for v in row) for i, row in enumerate(x)]
    path.write_text("\n".join([header, *rows]) + "\n")
    run = aekit.train(path, out=path.parent / "run", seed=0)
    save(run.path / "recon.png", "table_recon.png", width=720)


def _scene(rng: np.random.Generator, size: int, anomaly: bool) -> np.ndarray:
    """6 bands of smooth fields and fine texture in reflectance-like uint16, a nodata corner."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    fields = [np.sin(6 * xx + 2 * k) * np.cos(5 * yy - k) for k in range(3)]
    bands = []
    for k in range(6):
        v = 3000 + 1500 * fields[k % 3] + 600 * fields[(k + 1) % 3] * (k / 5) + 60 * rng.normal(size=(size, size))
        bands.append(v)
    x = np.clip(np.stack(bands), 1, 65535).astype(np.uint16)
    if anomaly:  # a bright rectangle unlike anything in training (a new roof, a burn scar ...)
        x[:, 180:215, 60:110] = np.array([9000, 2000, 9000, 500, 7000, 1000], np.uint16)[:, None, None]
    x[:, : size // 5, : size // 4] = 0  # nodata: outside the swath
    return x


def raster() -> None:
    """Train on one synthetic 6-band GeoTIFF, reconstruct and map the errors of another."""
    import rasterio
    from rasterio.transform import from_origin

    work = fresh("raster")
    rng = np.random.default_rng(0)
    profile = dict(driver="GTiff", width=256, height=256, count=6, dtype="uint16", nodata=0, crs="EPSG:32633")
    profile["transform"] = from_origin(500000, 4600000, 10, 10)
    for name, anomaly in (("scene_a.tif", False), ("scene_b.tif", True)):
        with rasterio.open(work / name, "w", **profile) as dst:
            dst.write(_scene(rng, 256, anomaly))
    run = aekit.train(work / "scene_a.tif", patch_size=32, rgb_bands=[3, 2, 1], max_steps=500, out=work / "run")
    save(run.path / "recon.png", "raster_recon.png")
    aekit.reconstruct(run.path, work / "scene_b.tif", work / "recon")
    aekit.score(run.path, work / "scene_b.tif", work / "errors.tif")

    from aekit.core.plots import pyplot

    plt = pyplot()
    with rasterio.open(work / "scene_b.tif") as src, rasterio.open(work / "recon" / "scene_b.tif") as rec:
        orig, recon, valid = src.read([3, 2, 1]), rec.read([3, 2, 1]), src.read_masks(1) > 0
    with rasterio.open(work / "errors.tif") as err:
        errors = err.read(1)
    lo, hi = np.percentile(orig[:, valid].astype(np.float32), [2, 98], axis=1)  # per band, valid pixels

    def rgb(x: np.ndarray) -> np.ndarray:
        out = np.clip((x.astype(np.float32) - lo[:, None, None]) / (hi - lo)[:, None, None], 0, 1)
        out[:, ~valid] = 0.5
        return out.transpose(1, 2, 0)

    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.7))
    for ax, pic, title in zip(
        axes, (rgb(orig), rgb(recon), None), ("scene_b.tif (bands 3,2,1)", "recon/scene_b.tif", "errors.tif")
    ):
        if pic is None:
            shown = ax.imshow(np.ma.masked_invalid(errors), cmap="magma")
            fig.colorbar(shown, ax=ax, fraction=0.046, label="squared error (normalised units)")
        else:
            ax.imshow(pic)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(work / "panels.png", dpi=75)
    save(work / "panels.png", "raster_panels.png", palette=False)


def array() -> None:
    """A numpy array of 32x32 shapes: discs and squares of random size and position."""
    rng = np.random.default_rng(0)
    n, size = 1500, 32
    yy, xx = np.mgrid[0:size, 0:size]
    x = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx, r = rng.uniform(8, 24), rng.uniform(8, 24), rng.uniform(3, 8)
        if i % 2:
            x[i][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(120, 256)
        else:
            x[i][(abs(yy - cy) < r) & (abs(xx - cx) < r)] = rng.integers(120, 256)
    np.save(fresh("array") / "shapes.npy", x)
    run = aekit.train(x, latent_dim=8, max_steps=400, out=WORK / "array" / "run", seed=0)
    save(run.path / "recon.png", "array_recon.png")


def stream() -> None:
    """The digits as tar shards, streamed."""
    from aekit.data.stream import write_shards

    work = fresh("stream")
    write_shards(DIGITS, work / "shards", 250, "data")
    run = aekit.train(work / "shards", max_steps=300, out=work / "run", seed=0)
    save(run.path / "recon.png", "stream_recon.png")


def report() -> None:
    """A screenshot of the anomaly run's report.html (run `anomaly` first)."""
    page = WORK / "anomaly" / "run" / "report.html"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not page.exists():
        print("report: skipped (needs chromium and the anomaly run)")
        return
    shot = WORK / "report.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1000,1500"]
        + [page.as_uri()],
        check=True,
        capture_output=True,
    )
    save(shot, "report.png", width=800)


STEPS = {"digits": digits, "anomaly": anomaly, "table": table, "raster": raster, "array": array}
STEPS.update(stream=stream, report=report)

if __name__ == "__main__":
    for name in sys.argv[1:] or list(STEPS):
        print(f"== {name}")
        STEPS[name]()
