"""The package's layers: each folder imports only from the layers below it, and no module imports
itself back through others (function-local imports count too). See docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

import aekit

PACKAGE = Path(aekit.__file__).parent

# lowest first; a module may import its own layer and the ones below
LAYERS = {
    "version": 0,
    "core": 0,
    "config": 1,
    "data": 2,
    "models": 3,
    "measures": 4,
    "inference": 5,
    "exporting": 6,
    "reporting": 6,
    "training": 7,
    "sweeps": 8,
    "api": 9,
    "detector": 9,
    "cli": 10,
    "__main__": 11,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The aekit modules that `name` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from aekit.x import y" imports the module aekit.x.y when there is one
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def layer(name: str) -> int | None:
    parts = name.split(".")
    return None if len(parts) == 1 else LAYERS[parts[1]]


def test_every_module_has_a_layer():
    unknown = sorted({n.split(".")[1] for n in modules() if "." in n} - set(LAYERS))
    assert not unknown, f"add these folders to LAYERS (and the layer diagram in docs/architecture.md): {unknown}"


def test_no_import_goes_up_a_layer():
    upward = [
        f"{a} ({layer(a)}) imports {b} ({layer(b)})"
        for a, deps in graph().items()
        for b in deps
        if layer(a) is not None and layer(b) is not None and layer(b) > layer(a)
    ]
    assert not upward, "imports that go up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    g = graph()
    g["aekit"] = set()  # the root only re-exports the API lazily (aekit.__getattr__)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for start in sorted(g):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path):
    """The checks above are only worth something if they can fail."""
    (tmp_path / "a.py").write_text("def f():\n    from aekit.training.fit import fit\n")
    found = imports_of("aekit.core.a", tmp_path / "a.py", {"aekit.training.fit", "aekit.training"})
    assert found == {"aekit.training.fit"}
    assert layer("aekit.training.fit") > layer("aekit.core.a")
    (tmp_path / "b.py").write_text("from . import fit\n")
    assert imports_of("aekit.training.b", tmp_path / "b.py", {"aekit.training.fit"}) == {"aekit.training.fit"}


MAX_FUNCTION_LINES = 80  # a function is read in one screen
MAX_LOOP_FILE_LINES = 300  # the training loop (training/fit.py) is read in one sitting


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """(name, lines) of the functions and methods of `source` longer than `limit` lines."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit
    ]


def test_no_function_is_longer_than_a_screen_and_the_loop_reads_in_one_sitting():
    long = {name: found for name, path in modules().items() if (found := long_functions(path.read_text()))}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
    fit = PACKAGE / "training" / "fit.py"
    assert len(fit.read_text().splitlines()) <= MAX_LOOP_FILE_LINES, "training/fit.py grew past one sitting"
    assert long_functions("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES) == [("f", MAX_FUNCTION_LINES + 1)]
