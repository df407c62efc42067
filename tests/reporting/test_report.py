"""aekit report: the HTML page, the embedding map written at train time, and the page in a real browser."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import aekit
from aekit.cli.main import main
from aekit.data import load_data
from aekit.measures.compare import say_verdict
from aekit.reporting.embedding_map import group_of, project_2d
from aekit.reporting.report import MAX_GROUPS, OTHER, legend_groups
from tests.conftest import smooth_images, write_pngs

FAST = {"epochs": 2, "batch_size": 8, "latent_dim": 4, "width": 8, "verbose": False, "cache_dir": None}
SECTIONS = ("metrics", "loss", "reconstructions", "scores", "embeddings", "data", "config")
IMG_RE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"')


def make_folder(root: Path) -> Path:
    """Two sub-folders, loose files at the top and one broken file (a skipped entry)."""
    imgs = smooth_images(30, 16, 16, 3, seed=4)
    write_pngs(root / "cats", imgs[:12])
    write_pngs(root / "dogs", imgs[12:24])
    write_pngs(root, imgs[24:], prefix="top")
    (root / "broken.png").write_bytes(b"not a png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder with a complete report, data folder); trained once for the module."""
    base = tmp_path_factory.mktemp("report")
    folder = make_folder(base / "data")
    run = aekit.train(folder, out=base / "run", **FAST)
    assert (run.path / "report.html").is_file()  # written by training itself
    assert (run.path / "validation_scores.csv").is_file()  # what the histogram is drawn from
    return run.path, folder


def page_images(page: str) -> dict[str, Image.Image]:
    out = {}
    for data, alt in IMG_RE.findall(page):
        im = Image.open(io.BytesIO(base64.b64decode(data)))
        im.load()
        out[alt] = im
    return out


def test_training_writes_the_embedding_map(trained):
    run_dir, folder = trained
    with open(run_dir / "embeddings_2d.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "group", "x", "y"]
    assert Counter(r["group"] for r in rows) == {"cats": 12, "dogs": 12, "(root)": 6}
    # the coordinates are the model's codes of those very images on their two principal axes
    data = load_data(folder, channels=3, image_size=[16, 16], show_progress=False, cache_dir=None)
    index = {item: i for i, item in enumerate(data.ids)}
    x = data.array[[index[r["id"]] for r in rows]]
    expected = project_2d(aekit.load(run_dir).encode(x, layout="NCHW"))
    got = np.array([(float(r["x"]), float(r["y"])) for r in rows])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert got[:, 1].std() > 0  # a real second axis


def test_report_is_self_contained_with_every_section(trained):
    run_dir, _ = trained
    page = (run_dir / "report.html").read_text()
    for key in SECTIONS:
        assert f'<section id="{key}">' in page
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "url(" not in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    images = page_images(page)
    assert set(images) == {
        "loss curves",
        "validation images above their reconstructions",
        "histogram of anomaly scores",
        "error maps of the highest-scoring validation items",
        "map of the embeddings",
    }
    assert all(im.width > 100 and im.height > 50 for im in images.values())
    assert (
        images["validation images above their reconstructions"].tobytes()
        == Image.open(run_dir / "recon.png")
        .convert(images["validation images above their reconstructions"].mode)
        .tobytes()
    )
    s = json.loads((run_dir / "summary.json").read_text())
    assert f"{s['val_mse']:.6f}" in page and f"{s['pca_val_mse']:.6f}" in page
    assert f'<p class="verdict {s["vs_pca"]}">{html.escape(say_verdict(s["metrics"]))}</p>' in page
    assert "<code>broken.png</code>: " in page and "3 sub-folders" in page
    threshold = json.loads((run_dir / "model.json").read_text())["threshold"]
    assert html.escape(threshold["explanation"]) in page
    assert "no validation scores" not in page and "no embedding map" not in page


def test_cli_report_on_an_older_run_shows_notes(trained, tmp_path, capsys):
    run_dir, _ = trained
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    for name in ("validation_scores.csv", "embeddings_2d.csv", "report.html"):
        (old / name).unlink()
    meta = json.loads((old / "model.json").read_text())
    meta.pop("threshold")
    (old / "model.json").write_text(json.dumps(meta))
    assert main(["report", str(old)]) == 0
    assert capsys.readouterr().out.strip() == str(old / "report.html")
    page = (old / "report.html").read_text()
    assert "no validation scores" in page and "no embedding map" in page
    assert set(page_images(page)) == {"loss curves", "validation images above their reconstructions"}
    for key in SECTIONS:
        assert f'<section id="{key}">' in page


def test_scores_without_a_threshold_still_get_their_histogram(trained, tmp_path):
    run_dir, _ = trained
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    meta = json.loads((run / "model.json").read_text())
    meta.pop("threshold")
    (run / "model.json").write_text(json.dumps(meta))
    page = aekit.report(run).read_text()
    assert "histogram of anomaly scores" in page_images(page) and "has no threshold" in page


def test_skipped_files_are_capped_and_escaped(trained, tmp_path):
    run_dir, _ = trained
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    s = json.loads((run / "summary.json").read_text())
    s["skipped"] = [{"path": f"bad{i}<b>.png", "reason": "not an image"} for i in range(27)]
    (run / "summary.json").write_text(json.dumps(s))
    page = aekit.report(run).read_text()
    assert "bad9&lt;b&gt;.png" in page and "bad10" not in page and "<b>.png" not in page
    assert "and 17 more" in page and "27 file(s)" in page


def test_text_from_the_run_folder_is_escaped_by_the_template(trained, tmp_path):
    run_dir, _ = trained
    run = tmp_path / "run<b>x"  # the folder's name is on the page too
    shutil.copytree(run_dir, run)
    s = json.loads((run / "summary.json").read_text())
    s["data"] = "<script>alert(1)</script>"
    s["compute"] = '"><img src=x onerror=alert(2)>'
    s["skipped"] = [{"path": "<i>x</i>.png", "reason": "a & b"}]
    (run / "summary.json").write_text(json.dumps(s))
    with open(run / "config.yaml", "a") as f:
        f.write('"<u>key</u>": "<style>*{display:none}</style>"\n')
    page = aekit.report(run).read_text()
    assert "<script" not in page and "<img src=x" not in page and "<u>" not in page and "<i>" not in page
    assert "<style>*" not in page and "<b>x" not in page
    assert "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>" in page  # shown as text
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<code>&lt;i&gt;x&lt;/i&gt;.png</code>: a &amp; b" in page
    assert "<dt>&lt;u&gt;key&lt;/u&gt;</dt><dd>&lt;style&gt;*{display:none}&lt;/style&gt;</dd>" in page
    assert "<title>aekit report: run&lt;b&gt;x</title>" in page
    assert len(page_images(page)) == 5  # the figures are still there (data URIs, marked safe)


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_a_failed_report_keeps_the_trained_run(tmp_path, monkeypatch):
    import aekit.reporting.report

    def boom(run):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(aekit.reporting.report, "report", boom)
    x = smooth_images(12, 8, 8, 1, seed=2)
    with pytest.warns(UserWarning, match="could not write the report .*disk on fire"):
        run = aekit.train(x, out=tmp_path / "run", **FAST)
    assert not (run.path / "report.html").exists() and (run.path / "summary.json").is_file()
    assert aekit.load(run.path).encode(x).shape == (12, 4)
    monkeypatch.undo()
    assert aekit.report(run.path) == run.path / "report.html"  # and it can be written later
    assert callable(aekit.report)  # the module did not shadow the function


def test_groups_projection_and_legend_cap():
    assert group_of("cats/img001.png") == "cats" and group_of("a/b/c.png") == "a"
    assert group_of("img001.png") == "(root)" and group_of("17") == "(root)"
    groups = [f"g{i:02d}" for i in range(15) for _ in range(i + 1)]  # g14 is the largest
    labels = legend_groups(groups)
    kept = set(labels) - {OTHER}
    assert len(kept) == MAX_GROUPS - 1 and kept == {f"g{i:02d}" for i in range(4, 15)}
    assert labels.count(OTHER) == 1 + 2 + 3 + 4
    assert legend_groups(["a", "b"]) == ["a", "b"]
    z = np.random.default_rng(0).normal(size=(50, 6)) * [5, 3, 1, 0.1, 0.1, 0.1]
    xy = project_2d(z)
    assert abs(np.corrcoef(xy[:, 0], z[:, 0])[0, 1]) > 0.95 and abs(np.corrcoef(xy[:, 1], z[:, 1])[0, 1]) > 0.9
    np.testing.assert_array_equal(project_2d(z[:1]), [[0.0, 0.0]])  # one item: the origin
    assert project_2d(z[:, :1]).shape == (50, 2)  # a single latent: y is 0


# -- in a real browser --------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# the machine may have no network: nothing may try to reach out
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1100,900",
]


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="headless Chromium not installed (Debian: apt-get install chromium chromium-driver)",
)
def test_report_shows_its_figures_in_chromium(trained, tmp_path, monkeypatch):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install selenium)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not look for downloads
    run_dir, _ = trained
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        driver.get((run_dir / "report.html").resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
            "natural: i.naturalWidth, shown: i.getBoundingClientRect().width}))"
        )
        sections = driver.execute_script(
            "return Array.from(document.querySelectorAll('section')).map(s => [s.id, s.querySelector('h2').innerText])"
        )
        requests = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        title = driver.title
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L")
    finally:
        driver.quit()
    assert title == f"aekit report: {run_dir.resolve().name}"
    assert len(images) == 5, images
    for im in images:
        assert im["complete"] and im["natural"] > 0, f"image {im['alt']!r} did not load"
        assert im["shown"] > 150, f"image {im['alt']!r} is drawn {im['shown']} px wide"
    assert [s[0] for s in sections] == list(SECTIONS)
    assert all(title for _, title in sections)
    assert not [r for r in requests if not r.startswith("data:")]
    pixels = np.asarray(shot)
    assert pixels.std() > 10 and len(np.unique(pixels)) > 50  # text and a figure, not a blank page


def test_table_runs_get_a_report_without_image_metrics(tmp_path):
    import warnings

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(200, 3)) @ rng.normal(size=(3, 8))).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a report that fails would warn
        run = aekit.train(x, epochs=2, verbose=False, out=tmp_path / "run")
    page = (run.path / "report.html").read_text()
    assert "standardised" in page and "n/a" in page
