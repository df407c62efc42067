"""aekit export: ONNX and TorchScript files agree with `aekit.load(run)` at any batch size."""

import json
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

import aekit
import aekit.exporting as export_module
from aekit.cli.main import build_parser, main
from aekit.inference.model import Autoencoder
from tests.conftest import smooth_images

TINY = {"epochs": 1, "latent_dim": 4, "batch_size": 8, "verbose": False, "cache_dir": None}
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
RTOL = 1e-4  # max |exported - PyTorch| relative to max |PyTorch|, the target of the issue


def float_data() -> np.ndarray:
    """Float data in its own units (not pixels): negative values too, nothing to clamp."""
    return smooth_images(16, 12, 12, 1, seed=3)[..., 0].astype(np.float32) / 255 * 10 - 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny trained runs: odd sizes, both architectures, 8-bit and float data."""
    base = tmp_path_factory.mktemp("runs")
    return {
        "conv 4x17x23": aekit.train(smooth_images(16, 17, 23, 4), out=base / "conv4", **TINY).path,
        "basic 1x28x28": aekit.train(smooth_images(16, 28, 28, 1), out=base / "basic1", arch="basic", **TINY).path,
        "conv float 1x12x12": aekit.train(float_data(), out=base / "float", **TINY).path,
    }


def raw_batch(model: Autoencoder, n: int, seed: int) -> np.ndarray:
    """float32 (n, C, H, W) in the model's raw units, as a deployment would feed it."""
    rng = np.random.default_rng(seed)
    c, h, w = model.input_shape
    if model.scale == 1.0:
        return rng.uniform(-2, 8, (n, c, h, w)).astype(np.float32)
    return rng.uniform(0, model.scale, (n, c, h, w)).astype(np.float32)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape and got.dtype == np.float32
    return float(np.abs(got - want).max() / np.abs(want).max())


def open_exported(path, fmt):
    """A function running the exported file on numpy inputs, returning a list of numpy outputs."""
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].shape[0] == "N"  # a symbolic, dynamic batch
        return lambda x: session.run(None, {session.get_inputs()[0].name: x})
    loaded = torch.jit.load(str(path))

    def infer(x):
        out = loaded(torch.from_numpy(x))  # no torch.no_grad(): the outputs must not require grad
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]

    return infer


def check_usage_lines(path, infer):
    """The sidecar's usage lines run as they are, next to the file, and give the file's outputs."""
    side = json.loads(path.with_name(path.name + ".json").read_text())
    shape = [2 if s == "N" else s for s in side["inputs"][0]["shape"]]
    scope = {"x": np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(path.parent)
        exec("\n".join(side["usage"]), scope)
    for got, want in zip([scope[o["name"]] for o in side["outputs"]], infer(scope["x"]), strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("fmt, ext", [("onnx", ".onnx"), ("torchscript", ".pt")])
@pytest.mark.parametrize("name", ["conv 4x17x23", "basic 1x28x28", "conv float 1x12x12"])
def test_exported_parts_match_pytorch(runs, name, fmt, ext, tmp_path):
    run = runs[name]
    model = aekit.load(run, device="cpu")
    # every part of the default model; for the others, the full model covers their encoder and
    # decoder (TorchScript is cheap: every part)
    parts = ("full", "encoder", "decoder") if name == "conv 4x17x23" or fmt == "torchscript" else ("full",)
    errors = {}
    for part in parts:
        path = aekit.export(run, tmp_path / f"{part}{ext}", format=fmt, part=part)
        infer = open_exported(path, fmt)
        check_usage_lines(path, infer)
        for n in (1, 5):  # two batch sizes through the same session
            x = raw_batch(model, n, seed=n)
            if part == "full":
                recon, score = infer(x)
                want = model.reconstruct(x, layout="NCHW")
                errors[part, n] = relative_error(recon, want)
                # the exported score is aekit score's default (the ensemble, its references in the file)
                errors["score", n] = relative_error(score, model.score(x, layout="NCHW").astype(np.float32))
                if model.scale > 1:  # integer data: clamped to the valid range, as reconstruct does
                    assert recon.min() >= 0 and recon.max() <= model.scale
                else:
                    assert recon.min() < 0  # float data is not clamped
            elif part == "encoder":
                (z,) = infer(x)
                errors[part, n] = relative_error(z, model.encode(x, layout="NCHW"))
            else:
                z = np.random.default_rng(n).normal(size=(n, model.latent_dim)).astype(np.float32)
                (images,) = infer(z)
                errors[part, n] = relative_error(images, model.decode(z))
    print(f"{name} {fmt}: max relative error {max(errors.values()):.2e}")
    assert max(errors.values()) < RTOL, errors


def test_sidecar_describes_inputs_outputs_and_threshold(runs, tmp_path):
    run = runs["conv 4x17x23"]
    meta = json.loads((run / "model.json").read_text())
    out = aekit.export(run, tmp_path / "m.onnx")
    side = json.loads((tmp_path / "m.onnx.json").read_text())
    assert side["format"] == "onnx" and side["part"] == "full" and side["file"] == "m.onnx"
    assert side["inputs"] == [
        {"name": "images", "dtype": "float32", "shape": ["N", 4, 17, 23], "units": "pixel values 0-255"}
    ]
    assert [o["name"] for o in side["outputs"]] == ["reconstruction", "score"]
    assert side["outputs"][0]["shape"] == ["N", 4, 17, 23] and side["outputs"][1]["shape"] == ["N"]
    assert (side["channels"], side["height"], side["width"], side["latent_dim"]) == (4, 17, 23, 4)
    for key in ("scale", "mean", "std"):
        assert side["normalization"][key] == meta["normalization"][key]
    assert side["aekit_version"] == aekit.__version__ and side["source_run"] == str(run.resolve())
    assert side["threshold"] == meta["threshold"] and side["threshold"]["metric"] == "ensemble"  # set at training
    assert f"{meta['threshold']['value']:.6g}" in side["outputs"][1]["meaning"]
    assert side["check"]["runtime"] == "onnxruntime" and side["check"]["max_relative_error"] < RTOL
    # the usage lines run as they are, next to the file
    assert len(side["usage"]) == 3
    x = raw_batch(aekit.load(run, device="cpu"), 2, seed=0)
    scope = {"x": x}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(out.parent)
        exec("\n".join(side["usage"]), scope)
    assert scope["reconstruction"].shape == (2, 4, 17, 23) and scope["score"].shape == (2,)

    # a run from before thresholds, an encoder in TorchScript
    run = shutil.copytree(run, tmp_path / "run")
    del meta["threshold"]
    (run / "model.json").write_text(json.dumps(meta))
    aekit.export(run, tmp_path / "enc.ts", format="torchscript", part="encoder")
    side = json.loads((tmp_path / "enc.ts.json").read_text())
    assert side["threshold"] is None and side["opset"] is None
    assert side["outputs"][0]["name"] == "latent" and side["outputs"][0]["shape"] == ["N", 4]
    scope = {"x": x}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        exec("\n".join(side["usage"]), scope)
    assert scope["latent"].shape == (2, 4)


def test_float_data_units_in_sidecar(runs, tmp_path):
    aekit.export(runs["conv float 1x12x12"], tmp_path / "d.pt", format="torchscript", part="decoder")
    side = json.loads((tmp_path / "d.pt.json").read_text())
    assert side["inputs"][0]["name"] == "latent" and side["inputs"][0]["shape"] == ["N", 4]
    assert "not rescaled" in side["outputs"][0]["units"] and "clamped" not in side["outputs"][0]["meaning"]


def test_cli_end_to_end(runs, tmp_path, capsys):
    run = str(runs["basic 1x28x28"])
    out = tmp_path / "sub" / "model.onnx"
    assert main(["export", run, "-o", str(out)]) == 0  # format from the extension
    err = capsys.readouterr().err
    assert out.is_file() and (tmp_path / "sub" / "model.onnx.json").is_file()
    assert str(out) in err and "MB" in err and "model.onnx.json" in err
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left
    ts = tmp_path / "dec.ts"
    assert main(["export", run, "--format", "torchscript", "--part", "decoder", "-o", str(ts), "--quiet"]) == 0
    assert capsys.readouterr().err == "" and ts.is_file()
    assert json.loads((tmp_path / "dec.ts.json").read_text())["part"] == "decoder"
    # the CLI's choices are the library's
    sub = build_parser().subparsers["export"]
    choices = {a.dest: a.choices for a in sub._actions if a.choices}
    assert list(choices["format"]) == list(export_module.EXPORT_FORMATS)
    assert tuple(choices["part"]) == export_module.EXPORT_PARTS


def test_without_o_the_model_is_written_into_the_run(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs["basic 1x28x28"], run)
    assert main(["export", str(run)]) == 0
    assert (run / "model.onnx").is_file() and (run / "model.onnx.json").is_file()
    assert str(run / "model.onnx") in capsys.readouterr().err
    assert main(["export", str(run), "--part", "encoder", "--format", "torchscript", "--quiet"]) == 0
    assert (run / "encoder.pt").is_file() and aekit.export(run, part="decoder") == run / "decoder.onnx"


def test_aekit_export_is_the_api_function(runs, tmp_path):
    path = aekit.export(runs["basic 1x28x28"], tmp_path / "m.pt", format="torchscript", part="encoder")
    assert path.is_file()


def bad_cases(tmp_path, run):
    folder = tmp_path / "a.onnx"
    folder.mkdir()
    afile = tmp_path / "afile"
    afile.write_text("x")
    onnx, pt, txt = (str(tmp_path / name) for name in ("m.onnx", "m.pt", "m.txt"))
    return {
        "bad format": (["export", run, "--format", "tflite", "-o", onnx], "invalid choice"),
        "bad part": (["export", run, "--part", "middle", "-o", onnx], "invalid choice"),
        "onnx to .pt": (
            ["export", run, "--format", "onnx", "-o", pt],
            f"is for --format torchscript); pass e.g. -o {onnx}",
        ),
        "torchscript to .onnx": (["export", run, "--format", "torchscript", "-o", onnx], ".pt or .ts"),
        "unknown extension": (["export", run, "-o", txt], "cannot tell the format"),
        "output is a folder": (["export", run, "-o", str(folder)], "is a folder"),
        "output is a folder, no extension": (["export", run, "-o", str(tmp_path)], "is a folder"),
        "output under a file": (["export", run, "-o", str(afile / "m.onnx")], "is a file"),
        "not a run": (["export", str(tmp_path), "-o", onnx], "model.json"),
    }


BAD_CASES = [
    "bad format",
    "bad part",
    "onnx to .pt",
    "torchscript to .onnx",
    "unknown extension",
    "output is a folder",
    "output is a folder, no extension",
    "output under a file",
    "not a run",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_exit_2(case, runs, tmp_path, capsys):
    argv, needle = bad_cases(tmp_path, str(runs["conv 4x17x23"]))[case]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert needle in err and "error" in err, err
    assert not any((tmp_path / name).exists() for name in ("m.onnx", "m.pt", "m.txt", "m.onnx.json"))


def test_missing_onnx_says_how_to_install(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    with pytest.raises(aekit.core.errors.AekitError, match=r"pip install 'aekit\[export\]'"):
        aekit.export(runs["conv 4x17x23"], tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    # TorchScript needs nothing extra
    assert aekit.export(runs["conv 4x17x23"], tmp_path / "m.pt", format="torchscript").is_file()


def test_a_file_that_disagrees_with_pytorch_is_not_kept(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "CHECK_TOLERANCE", -1.0)  # any difference, even 0, is too much
    with pytest.raises(aekit.core.errors.AekitError, match="differs from PyTorch"):
        aekit.export(runs["conv 4x17x23"], tmp_path / "m.pt", format="torchscript")
    assert list(tmp_path.iterdir()) == []


def test_api_rejects_unknown_format_and_part(runs, tmp_path):
    with pytest.raises(aekit.core.errors.AekitError, match="unknown export format"):
        aekit.export(runs["conv 4x17x23"], tmp_path / "m.onnx", format="tflite")
    with pytest.raises(aekit.core.errors.AekitError, match="unknown part"):
        aekit.export(runs["conv 4x17x23"], tmp_path / "m.onnx", part="middle")


def test_exposing_export_does_not_import_torch():
    code = "import sys, aekit, aekit.cli.main; assert 'export' in aekit.__all__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_table_models_file_scores_as_aekit_score_and_an_older_runs_gives_the_mse(tmp_path):
    """A table run's file outputs its default score (the ensemble) with its threshold; a run of an
    earlier aekit, whose default was mse+latent and which has no ensemble, outputs the MSE with the
    MSE's threshold."""
    rows = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)
    run = aekit.train(rows, out=tmp_path / "run", epochs=1, latent_dim=2, verbose=False).path
    meta = json.loads((run / "model.json").read_text())
    assert meta["threshold"]["metric"] == "ensemble"
    aekit.export(run, tmp_path / "m.onnx")
    side = json.loads((tmp_path / "m.onnx.json").read_text())
    assert side["threshold"] == meta["threshold"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    _, score = session.run(None, {session.get_inputs()[0].name: rows[:5, :, None, None]})
    np.testing.assert_allclose(score, aekit.load(run).score(rows[:5]), rtol=1e-4, atol=1e-6)

    older = {**meta, "score_metric": "mse+latent"}
    del older["ensemble"]
    rules = meta["threshold"]["by_metric"]
    older["threshold"] = {**rules["mse+latent"], "by_metric": {"mse": rules["mse"], "mae": rules["mae"]}}
    (run / "model.json").write_text(json.dumps(older))
    aekit.export(run, tmp_path / "old.onnx")
    side = json.loads((tmp_path / "old.onnx.json").read_text())
    assert side["threshold"]["metric"] == "mse"
    assert side["threshold"]["value"] == meta["threshold"]["by_metric"]["mse"]["value"]
    session = ort.InferenceSession(str(tmp_path / "old.onnx"))
    _, score = session.run(None, {session.get_inputs()[0].name: rows[:5, :, None, None]})
    np.testing.assert_allclose(score, aekit.load(run).score(rows[:5], metric="mse"), rtol=1e-4, atol=1e-6)
