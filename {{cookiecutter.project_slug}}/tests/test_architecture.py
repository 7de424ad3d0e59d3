"""The package's shape, read from its source with `ast`: one home per cross-cutting concern.

- no import cycle between its modules (relative imports; importing `a.b` from outside `a` runs
  `a` too). Shown with `pytest tests/test_architecture.py`;
- every error class is defined in errors.py, which imports nothing of the project;
- one module names the files of a run folder (run_files.py), one writes files whole
  (atomic_files.py), and no test module imports another.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import {{ cookiecutter.package_name }} as package

SOURCE = Path(package.__file__).parent
TESTS = Path(__file__).parent
RUN_FILE_NAMES = {"run.json", "metrics.jsonl", "config.yaml", "checkpoints", "last.pt", "best.pt"}


def modules() -> dict[str, ast.Module]:
    """Dotted name (relative to the package: "" is the package itself) -> parsed source."""
    parsed = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        parsed[".".join(parts)] = ast.parse(path.read_text(encoding="utf-8"))
    return parsed


def with_parents(name: str) -> Iterator[str]:
    """`data.images` -> `data.images`, `data`, "": importing a module runs its packages first."""
    parts = name.split(".") if name else []
    for end in range(len(parts), -1, -1):
        yield ".".join(parts[:end])


def import_graph() -> dict[str, set[str]]:
    parsed = modules()
    graph: dict[str, set[str]] = {name: set() for name in parsed}
    for name, tree in parsed.items():
        is_package = name == "" or SOURCE.joinpath(*name.split("."), "__init__.py").is_file()
        here = name.split(".") if name else []
        base = here if is_package else here[:-1]
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.level):
                continue
            anchor = base[: len(base) - (node.level - 1)]
            target = ".".join([*anchor, *([node.module] if node.module else [])])
            targets = [target, *(f"{target}.{alias.name}".strip(".") for alias in node.names)]
            # A package this module is inside is being imported already, not imported again.
            inside = set(with_parents(name))
            for found in targets:
                if found in parsed:
                    graph[name].update(set(with_parents(found)) - inside)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        for imported in graph[module]:
            if imported not in index:
                visit(imported)
                lowest[module] = min(lowest[module], lowest[imported])
            elif imported in stack:
                lowest[module] = min(lowest[module], index[imported])
        if lowest[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert graph["train"] >= {"run_log", "trainer", "training_state"}  # the graph sees imports
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_errors_are_defined_in_errors_py_which_imports_nothing_of_the_project() -> None:
    parsed = modules()
    assert import_graph()["errors"] == set()
    for name, tree in parsed.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and name != "errors":
                bases = {ast.unparse(base) for base in node.bases}
                assert not any(base.endswith(("Error", "Exception")) for base in bases), (
                    f"{name}.py defines the error {node.name}: move it to errors.py"
                )


def string_constants(tree: ast.Module) -> Iterator[ast.Constant]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node


def renames_or_temp_files(tree: ast.Module) -> Iterator[str]:
    """The steps of writing a file whole by hand: a temp file, or a rename over the target
    (`Path.replace(target)` and `.rename(target)` take one argument; `str.replace` takes two)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = ast.unparse(node.func)
        if called.endswith(("mkstemp", "NamedTemporaryFile", "os.replace", "os.rename")):
            yield called
        one_argument = len(node.args) == 1 and not node.keywords
        renames = isinstance(node.func, ast.Attribute) and node.func.attr in ("replace", "rename")
        if one_argument and renames:
            yield called


def test_one_module_names_the_files_of_a_run_folder() -> None:
    for name, tree in modules().items():
        if name != "run_files":
            named = {str(node.value) for node in string_constants(tree)} & RUN_FILE_NAMES
            assert not named, f"{name}.py spells {sorted(named)}: ask run_files.RunFiles"


def test_one_function_writes_a_file_whole() -> None:
    found = {name: list(renames_or_temp_files(tree)) for name, tree in modules().items()}
    assert found.pop("atomic_files") == ["tempfile.mkstemp", "temporary.replace"]
    # A pack is a folder, built privately and then swapped in whole (data/pack.py).
    found.pop("data.pack")
    assert {name: steps for name, steps in found.items() if steps} == {}


def test_no_test_module_imports_another() -> None:
    test_modules = {path.stem for path in TESTS.glob("test_*.py")} | {"conftest"}
    for path in TESTS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            imported = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            assert not set(imported) & test_modules, f"{path.name} imports a test module"
