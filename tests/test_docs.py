"""The documentation stays true: every option is documented, every Quickstart command is run."""

from __future__ import annotations

import re

from tests.baking import TEMPLATE_ROOT, template_keys

DOCS = TEMPLATE_ROOT / "docs" / "content"

# Each Quickstart command, and where the test suite or a nox session runs it (file, text there).
EXERCISED = {
    "pip install cookiecutter": ("pyproject.toml", '"cookiecutter>=2.6,<3"'),
    "cookiecutter gh:your-org/torch-template": ("tests/test_hooks.py", '"-m", "cookiecutter"'),
    "bash scripts/setup_dev.sh": ("noxfile.py", '"bash", "scripts/setup_dev.sh"'),
    "python -m my_torch_project.train --config configs/smoke.yaml": (
        "noxfile.py", 'for config in ("configs/smoke.yaml", "configs/default.yaml")'
    ),
    "python -m my_torch_project.train --config configs/default.yaml": (
        "noxfile.py", 'for config in ("configs/smoke.yaml", "configs/default.yaml")'
    ),
    "nox": ("noxfile.py", 'session.run("nox", "--non-interactive", env=env)'),
    'git commit -am "feat(models): widen the CNN to 64 channels"': (
        "tests/test_generated_tooling.py", '"git", "commit", "--allow-empty", "-m"'
    ),
}  # fmt: skip
# Plain shell and git plumbing around them, which no test needs to run (push needs a remote).
NOT_RUN = {
    "cd my-torch-project",
    "source .venv/bin/activate",
    "git switch -c feature/wider-cnn",
    "git push -u origin feature/wider-cnn",
}


def quickstart_commands() -> set[str]:
    text = (DOCS / "quickstart.md").read_text(encoding="utf-8")
    commands = set()
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command:
                commands.add(command)
    return commands


def test_every_quickstart_command_is_exercised() -> None:
    commands = quickstart_commands()
    assert commands - NOT_RUN == set(EXERCISED), "add the new command to EXERCISED with its test"
    for command, (relative, needle) in EXERCISED.items():
        assert needle in (TEMPLATE_ROOT / relative).read_text(encoding="utf-8"), command


def test_options_reference_documents_exactly_the_template_keys() -> None:
    text = (DOCS / "options.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    assert documented == set(template_keys())


def test_nav_lists_every_page() -> None:
    config = (TEMPLATE_ROOT / "docs" / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages == set(re.findall(r": ([\w/.-]+\.md)$", config, flags=re.MULTILINE))


def test_the_example_report_and_its_plots_are_published() -> None:
    """`nox -s example-report` wrote them; the Comparing experiments page shows them."""
    example = DOCS / "comparing-experiments"
    report = (example / "report.md").read_text(encoding="utf-8")
    assert "## By configuration (mean ± standard deviation over seeds)" in report
    for image in ("loss.png", "validation.png"):
        assert f"]({image})" in report
        assert (example / image).read_bytes().startswith(b"\x89PNG")
