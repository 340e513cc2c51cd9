"""The house rules that keep the package easy to change, read off the source with ``ast``:
no import cycle between modules (lazy imports inside functions included), no module importing
another module's underscore names, no file over 800 lines, and one concept in one place:

- checkpoint files are read and written only through ``scorematch.training.checkpoint``;
- a run folder's files (``config.yaml`` and the rest) are named and written only by
  ``scorematch.run_dir`` (``RunDir``);
- no module outside ``scorematch.samplers`` calls a time-grid function (``samplers.grids``)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "scorematch"
MAX_LINES = 800
CHECKPOINT_MODULE = "scorematch.training.checkpoint"
RUN_DIR_MODULE = "scorematch.run_dir"
# The names of a run folder's files, as RunDir knows them.
RUN_FOLDER_NAMES = (
    "config.yaml",
    "checkpoints",
    "metrics.csv",
    "selection.json",
    "evaluation.json",
    ".lock",
)
GRIDS_MODULE = "scorematch.samplers.grids"


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


def _code_strings(path: Path) -> list[str]:
    """Every string constant of a module's code (f-string parts too), docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def _calls(path: Path) -> set[str]:
    """Dotted names of everything a module calls (``yaml.safe_dump``, ``np.save``, …)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            parts, f = [], node.func
            while isinstance(f, ast.Attribute):
                parts.append(f.attr)
                f = f.value
            if isinstance(f, ast.Name):
                names.add(".".join([f.id, *reversed(parts)]))
    return names


def _imports_safetensors(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(
            a.name.startswith("safetensors") for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("safetensors"):
            return True
    return False


def test_checkpoint_files_are_read_and_written_only_by_the_checkpoint_module():
    modules, _ = _graph()
    assert _imports_safetensors(modules[CHECKPOINT_MODULE])  # the rule is not vacuous
    bad = []
    for m, path in modules.items():
        if m == CHECKPOINT_MODULE:
            continue
        if _imports_safetensors(path):
            bad.append(f"{m} imports safetensors")
        names = [s for s in _code_strings(path) if s.endswith(".safetensors")]
        if names:
            bad.append(f"{m} names checkpoint files: {names}")
    assert not bad, "\n".join(bad)


def test_run_folder_files_are_named_and_written_only_by_run_dir():
    modules, _ = _graph()
    owner = modules[RUN_DIR_MODULE]  # the rule is not vacuous: RunDir names and writes them
    assert set(RUN_FOLDER_NAMES) <= set(_code_strings(owner)) and "yaml.safe_dump" in _calls(owner)
    bad = []
    for m, path in modules.items():
        if m == RUN_DIR_MODULE:
            continue
        named = sorted({s for s in _code_strings(path) if s in RUN_FOLDER_NAMES})
        if named:
            bad.append(f"{m} names run-folder files {named}: use RunDir")
        dumps = sorted(c for c in _calls(path) if c in ("yaml.safe_dump", "yaml.dump"))
        if dumps:
            bad.append(f"{m} writes YAML ({', '.join(dumps)}): config.yaml is RunDir's")
    assert not bad, "\n".join(bad)


def test_no_module_outside_samplers_calls_a_grid_function():
    modules, graph = _graph()
    grid_names = set()
    for node in ast.parse(modules[GRIDS_MODULE].read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            grid_names.add(node.name)
    assert {"uniform", "edm_rho", "log_snr", "make_grid"} <= grid_names
    bad = []
    for m, imports in graph.items():
        if m == "scorematch.samplers" or m.startswith("scorematch.samplers."):
            continue
        for target, names in imports:
            if target == GRIDS_MODULE:
                bad.append(f"{m} imports {GRIDS_MODULE}")
            elif target == "scorematch.samplers" and grid_names & set(names):
                bad.append(
                    f"{m} imports {sorted(grid_names & set(names))} from scorematch.samplers"
                )
        calls = _calls(modules[m])
        reached = sorted(c for c in calls if ".grids." in f".{c}")
        if reached:
            bad.append(f"{m} calls {reached}")
    assert not bad, "\n".join(bad)


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


def test_the_checker_sees_file_names_and_calls_in_code_but_not_in_docstrings(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        '"""Writes config.yaml."""\nimport yaml\n\n\ndef f(out):\n    """checkpoints"""\n'
        "    yaml.safe_dump({}, open(out / 'config.yaml', 'w'))\n"
        "    return f'{out / \"checkpoints\"}', samplers.grids.uniform(1, 2)\n"
    )
    assert sorted(_code_strings(path)) == ["checkpoints", "config.yaml", "w"]
    assert {"yaml.safe_dump", "open", "samplers.grids.uniform"} <= _calls(path)
