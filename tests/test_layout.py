"""The house rules that keep the package easy to change, read off the source with ``ast``:
no import cycle between modules (lazy imports inside functions included), no module importing
another module's underscore names, and no file over 800 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "scorematch"
MAX_LINES = 800


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = ["scorematch", *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]):
    """(target module, imported names) for every import statement of one module, lazy ones too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("scorematch"):
                    yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("scorematch"):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            if submodules:  # ``from . import grids``: an edge to each submodule
                for sub in submodules:
                    yield sub, []
                rest = [n for n in names if f"{target}.{n}" not in modules]
                if rest:
                    yield target, rest
            else:
                yield target, names


def _graph():
    modules = _modules()
    return modules, {name: list(_imports(name, path, modules)) for name, path in modules.items()}


def test_no_import_cycle():
    modules, graph = _graph()
    edges = {m: {t for t, _ in graph[m] if t in modules and t != m} for m in modules}
    # A package's __init__ importing its own submodules is the normal direction; a submodule
    # importing its package's __init__ closes a loop.
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join([*stack[stack.index(t) :], t]))
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_imports_another_modules_underscore_names():
    _, graph = _graph()
    bad = [
        f"{m} imports {n} from {t}"
        for m, imports in graph.items()
        for t, names in imports
        for n in names
        if n.startswith("_") and not n.startswith("__") and t != m
    ]
    assert not bad, "\n".join(bad)


def test_no_file_over_the_line_limit():
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_the_checker_sees_lazy_imports_and_cycles(tmp_path):
    # The rules above would pass vacuously if the parser missed imports: check it on known code.
    modules = {"scorematch.a": tmp_path / "a.py", "scorematch.b": tmp_path / "b.py"}
    modules["scorematch.a"].write_text("from .b import f\n")
    modules["scorematch.b"].write_text("def f():\n    from .a import _g\n")
    assert list(_imports("scorematch.a", modules["scorematch.a"], modules)) == [
        ("scorematch.b", ["f"])
    ]
    assert list(_imports("scorematch.b", modules["scorematch.b"], modules)) == [
        ("scorematch.a", ["_g"])
    ]
