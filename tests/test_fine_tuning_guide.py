"""The "Fine-tuning" page shows exactly the recipe that the generated project's
tests/test_fine_tuning.py runs (its RECIPE), command for command."""

from __future__ import annotations

import ast
import re

from tests.baking import TEMPLATE_ROOT

PAGE = TEMPLATE_ROOT / "docs" / "content" / "fine-tuning.md"
RECIPE_TEST = TEMPLATE_ROOT / "{{cookiecutter.project_slug}}" / "tests" / "test_fine_tuning.py"
PACKAGE = "my_torch_project"  # the default bake's, as the page writes it


def tuple_constants() -> dict[str, tuple[object, ...]]:
    """The test's module-level tuples, with `*NAME` and `NAME` elements resolved."""
    constants: dict[str, tuple[object, ...]] = {}
    source = RECIPE_TEST.read_text(encoding="utf-8")
    for node in ast.parse(source.replace("{{ cookiecutter.package_name }}", PACKAGE)).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple)):
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name):
            continue
        items: list[object] = []
        for element in node.value.elts:
            if isinstance(element, ast.Starred) and isinstance(element.value, ast.Name):
                items.extend(constants[element.value.id])
            elif isinstance(element, ast.Name):
                items.append(constants[element.id])
            else:
                items.append(ast.literal_eval(element))
        constants[target.id] = tuple(items)
    return constants


def test_the_page_shows_the_recipe_its_test_runs() -> None:
    recipe = tuple_constants()["RECIPE"]
    commands = [command for command in recipe if isinstance(command, tuple)]
    tested = {" ".join(["python", "-m", f"{PACKAGE}.{m}", *rest]) for m, *rest in commands}
    assert len(tested) == len(recipe) == 6
    text = PAGE.read_text(encoding="utf-8")
    shown = {
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
        for line in block.splitlines()
        if line.startswith("python -m ")
    }
    assert shown == tested
