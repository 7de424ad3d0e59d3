"""The guide "Bring your own data and model" shows exactly what the generated project's
tests/test_bring_your_own.py runs: the same commands and the same code, block for block."""

from __future__ import annotations

import ast
import re

from tests.baking import TEMPLATE_ROOT

GUIDE = TEMPLATE_ROOT / "docs" / "content" / "bring-your-own-data.md"
GUIDE_TEST = TEMPLATE_ROOT / "{{cookiecutter.project_slug}}" / "tests" / "test_bring_your_own.py"
PACKAGE = "my_torch_project"  # the default bake's, as the guide writes it


def guide_test_constants() -> dict[str, object]:
    """The test's module-level constants, with the package as a default bake names it."""
    source = GUIDE_TEST.read_text(encoding="utf-8")
    tree = ast.parse(source.replace("{{ cookiecutter.package_name }}", PACKAGE))
    constants: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
            names = [e.id for e in getattr(value, "elts", []) if isinstance(e, ast.Name)]
            if isinstance(value, ast.Tuple) and names and len(names) == len(value.elts):
                constants[name] = tuple(constants[other] for other in names)  # a tuple of tuples
                continue
            try:
                constants[name] = ast.literal_eval(value)
            except ValueError:
                continue  # not a constant
    return constants


def guide_blocks(language: str) -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_the_guide_shows_the_code_its_test_runs() -> None:
    code = {v for v in guide_test_constants().values() if isinstance(v, str) and "\n" in v}
    assert set(guide_blocks("python")) == code


def test_the_guide_shows_the_commands_its_test_runs() -> None:
    commands = guide_test_constants()["GUIDE_COMMANDS"]
    assert isinstance(commands, tuple)
    tested = {" ".join(["python", "-m", f"{PACKAGE}.{module}", *a]) for module, *a in commands}
    shown = {
        line.split("  #")[0].strip()
        for block in guide_blocks("bash")
        for line in block.splitlines()
        if line.startswith("python -m ")
    }
    assert shown == tested
