"""Static rules over src/aekit for code that runs on CPU, CUDA and Apple MPS alike (docs/devices.md).
The CI machine has no GPU, so these read the source (ast) for the patterns that crash on one.

1. `torch.autocast(...)` is entered only by ComputeSettings.autocast and fp32_region (core/compute.py),
   which enter none in fp32: torch before 2.5 refuses `torch.autocast("mps", enabled=False)`.
2. float64 tensors are made on the host only (MPS has no float64). Flagged: `X.double()`,
   `X.to(..., torch.float64 or torch.double ...)`, a tensor method given `dtype=torch.float64`
   (`x.mean(0, dtype=torch.float64)`), and a `torch.*` constructor given float64 with a `device=`
   other than "cpu". Allowed when the chain of calls, attributes and subscripts that X is made of
   contains `.cpu()` (`z.cpu().double()`, `torch.cat(v).cpu().double()`): the value is on the host
   by then, whatever device it came from. `.cpu()` costs nothing on a host tensor, so the rule asks
   for it even where the value is already there. A few places are listed in FLOAT64_ALLOWED with the
   reason they never see an MPS tensor; a listed place that no longer makes float64 fails the test.
3. No `non_blocking=True` written out: a copy to MPS with it can silently corrupt the data
   (pytorch/pytorch#139550), so asynchronous copies are asked for with
   `non_blocking=asynchronous(device)` (core/transfer.py: CUDA only).
"""

from __future__ import annotations

import ast
from pathlib import Path

import aekit

PACKAGE = Path(aekit.__file__).parent


def sources() -> dict[str, ast.Module]:
    return {p.relative_to(PACKAGE).as_posix(): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def dotted(node: ast.AST) -> str:
    """'torch.autocast' for the expression torch.autocast; '' for anything but names and attributes."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def test_autocast_is_entered_only_through_compute_settings():
    found = [
        f"{path}:{node.lineno}"
        for path, tree in sources().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and dotted(node.func) in ("torch.autocast", "torch.amp.autocast")
        and path != "core/compute.py"
    ]
    assert not found, f"use ComputeSettings.autocast() (no context in fp32), not torch.autocast: {found}"


FLOAT64 = ("torch.float64", "torch.double")
FLOAT64_ALLOWED = {
    ("models/pca.py", "fit_pca_flat"): "fits on host rows only: its one caller (training/setup.py) passes a CPU tensor",
    ("training/fit.py", "validate"): "node shards under torchrun only: NCCL or gloo, never MPS (core/distributed.py)",
}


def on_host(node: ast.AST) -> bool:
    """True when the receiver expression `node` passes through a `.cpu()` call."""
    while True:
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "cpu":
                return True
            node = node.func
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        else:
            return False


def makes_float64_off_host(call: ast.Call) -> bool:
    name = dotted(call.func)
    dtypes = [*call.args, *(k.value for k in call.keywords if k.arg == "dtype")]
    wants = any(dotted(a) in FLOAT64 for a in dtypes)
    if name.startswith("torch."):  # a constructor (torch.tensor, torch.zeros, ...): on the device it is given
        device = next((k.value for k in call.keywords if k.arg == "device"), None)
        return wants and device is not None and not (isinstance(device, ast.Constant) and device.value == "cpu")
    if not isinstance(call.func, ast.Attribute):
        return False
    receiver = call.func.value
    if call.func.attr == "double" and not call.args:
        return not on_host(receiver)
    return wants and not on_host(receiver)


def float64_places() -> list[tuple[str, str, int]]:
    """(path, enclosing function, line) of every float64 made off the host."""
    found = []
    for path, tree in sources().items():
        for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and makes_float64_off_host(node):
                    found.append((path, fn.name, node.lineno))
    return sorted(set(found))  # a nested function's calls are also its parent's: both listed


def test_the_float64_rule_reads_as_documented():
    def flags(code: str) -> bool:
        return makes_float64_off_host(ast.parse(code).body[0].value)

    assert flags("z.double()") and flags("x[i].sum(1).double()") and flags("out.z.to(torch.float64)")
    assert flags("x.to(device, dtype=torch.double)") and flags("x.mean(0, dtype=torch.float64)")
    assert flags("torch.tensor([1.0], dtype=torch.float64, device=s.device)")
    assert not flags("z.cpu().double()") and not flags("torch.cat(v).cpu().double().numpy()")
    assert not flags("x.detach().cpu()[0].to(torch.float64)") and not flags("x.float()")
    assert not flags("torch.tensor(stats, dtype=torch.float64)") and not flags("np.asarray(x, np.float64)")
    assert not flags("torch.zeros(3, dtype=torch.float64, device='cpu')")


def test_float64_tensors_are_made_on_the_host():
    found = float64_places()
    places = {(path, fn) for path, fn, _ in found}
    bad = [f"{path}:{line} ({fn})" for path, fn, line in found if (path, fn) not in FLOAT64_ALLOWED]
    assert not bad, f"float64 on a device (MPS has none): move to the CPU first, `x.cpu().double()`: {bad}"
    stale = [k for k in FLOAT64_ALLOWED if k not in places]
    assert not stale, f"FLOAT64_ALLOWED lists places that no longer make float64: {stale}"


def test_non_blocking_copies_are_asked_for_on_cuda_only():
    found = [
        f"{path}:{node.lineno}"
        for path, tree in sources().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword)
        and node.arg == "non_blocking"
        and not (isinstance(node.value, ast.Call) and dotted(node.value.func) == "asynchronous")
    ]
    assert not found, f"non_blocking=asynchronous(device) (CUDA only; MPS corrupts such copies): {found}"
