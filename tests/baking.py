"""The one way tests and nox sessions bake the template: cookiecutter's Python API, no prompts.

`python -m tests.baking OUTPUT_DIR [key=value ...]` bakes from the command line and prints the
project path (nox sessions use this; values `yes`/`no` become booleans).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

TEMPLATE_ROOT = Path(__file__).resolve().parents[1]
# `{{ cookiecutter.x }}`, `{% ... %}` and `{# ... #}` must all be gone after rendering; GitHub's
# `${{ github.x }}` expressions are legitimate and do not match (no `cookiecutter.` inside).
LEFTOVER_TEMPLATE_SYNTAX = re.compile(r"\{\{-?\s*cookiecutter\.|\{%-?\s|\{#-?\s")
Answer = str | bool


def template_keys(template: Path = TEMPLATE_ROOT) -> list[str]:
    context = json.loads((template / "cookiecutter.json").read_text(encoding="utf-8"))
    return [key for key in context if not key.startswith("_")]


def bake(output_dir: Path, template: Path = TEMPLATE_ROOT, /, **answers: Answer) -> Path:
    """Bake into `output_dir` with `answers` over the defaults; returns the project directory.

    Unknown keys are an error here because cookiecutter silently ignores them, which would let a
    test believe it covered an option it never set.
    """
    # Imported here: noxfile.py imports this module into nox's own environment, which has no
    # cookiecutter.
    from cookiecutter.main import cookiecutter

    unknown = sorted(set(answers) - set(template_keys(template)))
    if unknown:
        raise KeyError(f"not keys of cookiecutter.json: {unknown}")
    project = cookiecutter(
        str(template), no_input=True, output_dir=str(output_dir), extra_context=answers
    )
    return Path(project)


def rendered_answers(template: Path = TEMPLATE_ROOT, /, **answers: Answer) -> dict[str, object]:
    """The answers as cookiecutter hands them to the hooks (defaults rendered, `answers` over
    them), made by cookiecutter's own functions without writing a file: what the hooks' checks
    are called with in-process."""
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    unknown = sorted(set(answers) - set(template_keys(template)))
    if unknown:
        raise KeyError(f"not keys of cookiecutter.json: {unknown}")
    context = generate_context(str(template / "cookiecutter.json"), extra_context=answers)
    rendered: dict[str, object] = dict(prompt_for_config(context, no_input=True))
    return rendered


def package_name(project: Path) -> str:
    """The import name a baked project was given (its only folder under src/)."""
    return next(path.name for path in (project / "src").iterdir() if path.is_dir())


def text_files(project: Path) -> Iterator[Path]:
    for path in sorted(project.rglob("*")):
        if path.is_file() and ".git" not in path.relative_to(project).parts:
            try:
                path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            yield path


def leftover_template_syntax(project: Path) -> list[str]:
    """`path:line: text` for every line still holding template syntax."""
    found = []
    for path in text_files(project):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if LEFTOVER_TEMPLATE_SYNTAX.search(line):
                found.append(f"{path.relative_to(project)}:{number}: {line.strip()}")
    return found


def parse_answer(raw: str) -> Answer:
    return {"yes": True, "no": False}.get(raw, raw)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m tests.baking OUTPUT_DIR [key=value ...]", file=sys.stderr)
        return 2
    output_dir, *pairs = argv
    answers = {key: parse_answer(value) for key, _, value in (p.partition("=") for p in pairs)}
    print(bake(Path(output_dir), **answers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
