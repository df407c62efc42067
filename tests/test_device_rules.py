"""Static rules over src/aekit for code that runs on CPU, CUDA and Apple MPS alike (docs/devices.md).
The CI machine has no GPU, so these read the source (ast) for the patterns that crash on one.

1. `torch.autocast(...)` is entered only by ComputeSettings.autocast (core/compute.py), which enters
   none in fp32: torch before 2.5 refuses `torch.autocast("mps", enabled=False)`.
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
