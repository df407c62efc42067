"""`aekit export`: the model as one ONNX or TorchScript file that runs without aekit.

The normalisation is inside the graph: float32 (N, C, H, W) in the data's own units goes in
(0-255 for 8-bit images, 0-65535 for 16-bit, raw values for float data), and reconstructions
come out in the same units, clamped to the valid range for integer data, exactly as
`aekit.load(run).reconstruct` computes them before rounding. The batch size is dynamic. A
sidecar `FILE.json` says what goes in and out, the normalisation, the anomaly threshold and how
to run the file.

ONNX uses the torch.export-based exporter (`dynamo=True`, the default since torch 2.9; the
TorchScript-based one is deprecated and warns that it will be removed): the batch dimension is
declared symbolic with `dynamic_shapes`, so export fails loudly instead of baking in the example's
batch size. Every exported file is run once more at batch sizes 1 and 3 against PyTorch before it
is kept (ONNX: when onnxruntime is installed).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aekit.config.choices import EXPORT_FORMATS, EXPORT_PARTS
from aekit.config.commands import ExportOptions
from aekit.core.errors import AekitError
from aekit.core.rundir import atomic_write, check_creatable, check_output_file, resolve_run, write_json
from aekit.data.normalize import Normalizer
from aekit.measures.ensemble import scorer_of
from aekit.measures.item_errors import item_errors
from aekit.measures.thresholds import stored_threshold
from aekit.models.checkpoint import load_model, load_references
from aekit.version import __version__

NAMES = {"onnx": "ONNX", "torchscript": "TorchScript"}
EXAMPLE_BATCH = 2  # an example batch of 1 would let torch.export specialise N to 1
CHECK_BATCHES = (1, 3)
CHECK_TOLERANCE = 1e-3  # max error relative to the output's range; fp32 reorderings give ~1e-6
ONNX_LIMIT_BYTES = 2_000_000_000  # protobuf's 2 GB limit on a single .onnx file


class Exportable(nn.Module):
    """A trained model with its normalisation inside: raw units in, raw units out.

    full: images (N, C, H, W) -> reconstruction (N, C, H, W), score (N,)
    encoder: images (N, C, H, W) -> latent (N, latent_dim)
    decoder: latent (N, latent_dim) -> images (N, C, H, W)"""

    def __init__(
        self,
        model: nn.Module,
        normalizer: Normalizer,
        part: str,
        shape: tuple[int, int, int],
        latent: int,
        table: bool = False,
        scorer: nn.Module | None = None,
    ):
        super().__init__()
        self.model, self.normalizer, self.part, self.table = model, normalizer, part, table
        self.shape, self.latent_dim = shape, latent
        self.scale = float(normalizer.scale)
        self.clamp = self.scale > 1  # integer images cannot leave [0, scale]
        self.scorer = scorer  # the run's ensemble score (measures/ensemble.py), with its references inside

    def example(self, n: int, seed: int = 0) -> torch.Tensor:
        """A seeded input batch of n: images uniform over the data's range, or normal latent codes."""
        g = torch.Generator().manual_seed(seed)
        if self.part == "decoder":
            return torch.randn(n, self.latent_dim, generator=g)
        return torch.rand(n, *self.shape, generator=g) * self.scale

    def forward(self, x: torch.Tensor):
        n = self.normalizer
        if self.part == "encoder":
            return self.model.encode(n.normalize(x))  # (N, latent)
        if self.part == "decoder":
            return n.to_unit(self.model.decode(x), clamp=self.clamp) * n.scale  # (N, C, H, W)
        xn = n.normalize(x)
        out = self.model(xn)
        unit = n.to_unit(out.recon, clamp=self.clamp)  # (N, C, H, W) in [0, 1] units
        recon, target = (out.recon, xn) if self.table else (unit, x / n.scale)  # tables: standardised units
        if self.scorer is not None:  # (N,) as Autoencoder.score(): the run's default score and threshold
            return unit * n.scale, self.scorer(out.z, recon, target, xn)
        return unit * n.scale, item_errors(recon, target, "mse")  # runs without an ensemble: the MSE


def format_for(output: str | Path) -> str:
    """The format an output name implies (.onnx -> onnx, .pt/.ts -> torchscript)."""
    if Path(output).is_dir():
        check_output_file(Path(output), "model.onnx")
    ext = Path(output).suffix.lower()
    for fmt, exts in EXPORT_FORMATS.items():
        if ext in exts:
            return fmt
    raise AekitError(f"cannot tell the format from {output}; end it in .onnx or .pt/.ts, or pass --format")


def check_output(output: str | Path, fmt: str) -> Path:
    """Fail before any work on an unknown format or a path that cannot take the file."""
    if fmt not in EXPORT_FORMATS:
        raise AekitError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    p = Path(output)
    exts = EXPORT_FORMATS[fmt]
    if p.is_dir():  # before the extension: a folder is the likelier mistake
        check_output_file(p, "model" + exts[0])
    if p.suffix.lower() not in exts:
        other = next((f for f, e in EXPORT_FORMATS.items() if p.suffix.lower() in e), None)
        hint = f" ({p.suffix} is for --format {other})" if other else ""
        name = f"{p.stem or 'model'}{exts[0]}"
        raise AekitError(f"{NAMES[fmt]} files end in {' or '.join(exts)}{hint}; pass e.g. -o {p.with_name(name)}")
    check_creatable(p)
    return p


def sidecar_path(output: str | Path) -> Path:
    """`model.onnx` -> `model.onnx.json`."""
    return Path(f"{output}.json")


def export(o: ExportOptions) -> Path:
    """Write the model in `o.run` as one ONNX or TorchScript file (CPU, fp32, any batch size) and a
    sidecar `output + ".json"` describing it; returns the path of the model file. `o.output`
    defaults to RUN/model.onnx (RUN/encoder.onnx, RUN/decoder.onnx for a part; .pt for
    TorchScript); `o.format` to the one its extension names, else onnx."""
    part = o.part
    if part not in EXPORT_PARTS:
        raise AekitError(f"unknown part {part!r}; choose one of {', '.join(EXPORT_PARTS)}")
    format = o.format or (format_for(o.output) if o.output is not None else "onnx")
    path = check_output(o.output, format) if o.output is not None else None  # a bad path fails before any work
    run_dir = resolve_run(o.run)
    if path is None:
        path = check_output(run_dir / f"{'model' if part == 'full' else part}{EXPORT_FORMATS[format][0]}", format)
    if format == "onnx":
        _require_onnx()
    model, normalizer, meta = load_model(run_dir)  # on the CPU, in eval mode
    shape = (meta["input"]["channels"], meta["input"]["height"], meta["input"]["width"])
    # no gradients: a traced model would otherwise hand its users outputs that require grad
    scorer = None
    if part == "full" and meta.get("ensemble"):  # the default score, its references inside the file
        scorer = scorer_of(meta, load_references(run_dir, meta))
    table = bool(meta.get("table"))
    module = Exportable(model, normalizer, part, shape, meta["latent_dim"], table=table, scorer=scorer)
    module = module.eval().requires_grad_(False)
    example = module.example(EXAMPLE_BATCH)
    with _quiet(), torch.no_grad():
        if format == "onnx":
            opset, check = _write_onnx(module, example, path)
        else:
            opset, check = None, _write_torchscript(module, example, path)
    write_json(sidecar_path(path), describe(meta, run_dir, path, format, part, opset, check))
    return path


# -- ONNX ---------------------------------------------------------------------------------------
def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401  (torch.onnx's exporter is built on it)
    except ImportError as e:
        raise AekitError(f"ONNX export needs onnx and onnxscript ({e}): pip install 'aekit[export]'") from None
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 6):
        raise AekitError(f"ONNX export needs torch>=2.6 (found {torch.__version__}); upgrade torch or use torchscript")


def _write_onnx(module: Exportable, example: torch.Tensor, path: Path) -> tuple[int, dict | None]:
    size = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    if size > ONNX_LIMIT_BYTES:
        raise AekitError(f"the weights take {size / 1e9:.1f} GB, over ONNX's 2 GB file limit; use --format torchscript")
    inputs, outputs = io_names(module.part)
    try:
        program = torch.onnx.export(
            module,
            (example,),
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes={"x": {0: torch.export.Dim("N")}},
            dynamo=True,
            verbose=False,
        )
    except Exception as e:  # an architecture the exporter cannot take: say so in one line
        first = (str(e).splitlines() or [""])[0]
        raise AekitError(f"ONNX export failed ({type(e).__name__}: {first}); try --format torchscript") from e
    opset = next(o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx"))

    def open_onnx(p: Path):
        try:
            import onnxruntime as ort
        except ImportError:
            return None  # the file is still written; it is checked where onnxruntime is installed
        session = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {inputs[0]: x.numpy()}), "onnxruntime"

    return opset, _save_checked(path, lambda p: program.save(p, external_data=False), open_onnx, module)


# -- TorchScript --------------------------------------------------------------------------------
def _write_torchscript(module: Exportable, example: torch.Tensor, path: Path) -> dict | None:
    if not hasattr(torch, "jit") or not hasattr(torch.jit, "trace"):
        raise AekitError(f"this torch ({torch.__version__}) has no TorchScript; use --format onnx")
    # tracing records the ops run on the example; the batch size stays free because the models
    # reshape with -1. `_check` runs other batch sizes, a stricter test than trace's own check
    # (which re-runs the example and imports torch.distributed: seconds)
    traced = torch.jit.trace(module, (example,), check_trace=False)

    def open_torchscript(p: Path):
        loaded = torch.jit.load(str(p), map_location="cpu")
        return lambda x: loaded(x), "torch.jit"

    return _save_checked(path, lambda p: torch.jit.save(traced, str(p)), open_torchscript, module)


# -- checks and description ---------------------------------------------------------------------
def _save_checked(path: Path, save: Callable[[Path], None], open_file: Callable, module: Exportable) -> dict | None:
    """save(temporary file), run it next to PyTorch, then rename it to `path`: a file that
    disagrees with PyTorch is never left behind. `open_file(p)` gives (run, runtime) or None."""
    check: dict = {}

    def write(p: Path) -> None:
        save(p)
        runner = open_file(p)
        if runner is not None:
            check.update(_check(module, *runner))

    atomic_write(path, write)
    return check or None


def _check(module: Exportable, run, runtime: str) -> dict:
    """Run the exported file at other batch sizes next to PyTorch: a wrong dynamic batch or a
    mistranslated op is caught here, not in the user's deployment."""
    worst = 0.0
    for n in CHECK_BATCHES:
        x = module.example(n, seed=n)
        want, got = _as_tuple(module(x)), _as_tuple(run(x))
        if len(want) != len(got):
            raise AekitError(f"exported model gives {len(got)} outputs, PyTorch {len(want)}; please report")
        for a, b in zip(want, got):
            a, b = a.numpy(), np.asarray(b)
            if a.shape != b.shape:
                raise AekitError(f"exported model gives shape {b.shape} at batch {n}, PyTorch {a.shape}; please report")
            err = float(np.abs(a - b).max() / max(float(np.abs(a).max()), 1e-12))
            worst = max(worst, err)
    if worst > CHECK_TOLERANCE:
        raise AekitError(f"exported model differs from PyTorch by {worst:.2g} (relative) in {runtime}; please report")
    return {"runtime": runtime, "batch_sizes": list(CHECK_BATCHES), "max_relative_error": worst}


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def io_names(part: str) -> tuple[list[str], list[str]]:
    return {
        "full": (["images"], ["reconstruction", "score"]),
        "encoder": (["images"], ["latent"]),
        "decoder": (["latent"], ["images"]),
    }[part]


def units(scale: float) -> str:
    if scale == 1.0:
        return "raw values in the training data's units (float data, not rescaled)"
    return f"pixel values 0-{scale:g}"


def describe(meta: dict, run_dir: Path, path: Path, fmt: str, part: str, opset: int | None, check: dict | None) -> dict:
    """The sidecar: everything a user of the file needs, without aekit."""
    inp = meta["input"]
    c, h, w, latent = inp["channels"], inp["height"], inp["width"], meta["latent_dim"]
    norm = meta["normalization"]
    raw = units(float(norm["scale"]))
    image = {"dtype": "float32", "shape": ["N", c, h, w], "units": raw}
    code = {"dtype": "float32", "shape": ["N", latent], "units": "latent codes, as aekit encode writes them"}
    clamped = f", clamped to [0, {norm['scale']:g}]" if float(norm["scale"]) > 1 else ""
    threshold = meta.get("threshold")
    metric = "ensemble" if meta.get("ensemble") else "mse"  # what the file's score computes
    if threshold and threshold.get("metric") != metric:  # a run whose default was mse+latent: the MSE's
        threshold = stored_threshold(meta, metric)
    above = f"above {threshold['value']:.6g} (threshold.value)" if threshold else "above a threshold of your choice"
    meaning = (
        "per-item anomaly score, as aekit score computes it (the ensemble of the reconstruction error and the "
        "distances from the training items, its references inside the file)"
        if metric == "ensemble"
        else "per-item reconstruction MSE (pixels in [0, 1]), as aekit score --metric mse"
    )
    if part == "full":
        inputs = [{"name": "images", **image}]
        outputs = [
            {"name": "reconstruction", **image, "meaning": f"the reconstruction, in the input's units{clamped}"},
            {
                "name": "score",
                "dtype": "float32",
                "shape": ["N"],
                "meaning": f"{meaning}; anomalous when {above}",
            },
        ]
    elif part == "encoder":
        inputs = [{"name": "images", **image}]
        outputs = [{"name": "latent", **code, "meaning": "latent codes"}]
    else:
        inputs = [{"name": "latent", **code}]
        outputs = [{"name": "images", **image, "meaning": f"decoded images{clamped}"}]
    return {
        "format": fmt,
        "part": part,
        "file": path.name,
        "inputs": inputs,
        "outputs": outputs,
        "channels": c,
        "height": h,
        "width": w,
        "latent_dim": latent,
        "normalization": {
            **norm,
            "applied": "inside the model: (x / scale - mean) / std per channel; no preprocessing needed",
        },
        "training_dtype": inp.get("dtype"),
        "arch": meta.get("arch"),
        "threshold": threshold,
        "aekit_version": __version__,
        "torch_version": torch.__version__,
        "source_run": str(run_dir.resolve()),
        "opset": opset,
        "check": check,
        "usage": usage(fmt, path.name, inputs[0], [o["name"] for o in outputs]),
    }


def usage(fmt: str, name: str, inp: dict, outputs: list[str]) -> list[str]:
    """Three lines that run the file on a numpy array `x`."""
    shape = ",".join(str(s) for s in inp["shape"])
    result = ", ".join(outputs)
    comment = f"# x: {shape}, {inp['units']}"
    if fmt == "onnx":
        first = "" if len(outputs) > 1 else "[0]"  # session.run returns a list of outputs
        return [
            "import onnxruntime as ort",
            f'session = ort.InferenceSession("{name}", providers=["CPUExecutionProvider"])',
            f'{result} = session.run(None, {{"{inp["name"]}": x.astype("float32")}}){first}  {comment}',
        ]
    return [
        "import torch",
        f'model = torch.jit.load("{name}")',
        f"{result} = model(torch.as_tensor(x, dtype=torch.float32))  {comment}",
    ]


@contextlib.contextmanager
def _quiet():
    """Hide the exporters' deprecation warnings and log lines: nothing the user can act on."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
