"""`cruft update` end to end: a template repository that moves on, a project a user has edited.

The template's working tree is committed into a temporary git repository (remote repositories are
out of reach and would not test this checkout anyway); `cookiecutter`, `cruft create` and
`cruft update` run as real commands. A "published" template is a bare clone reached through
cookiecutter's `gh:` abbreviation, pointed at a file:// folder by a cookiecutter config file.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.baking import TEMPLATE_ROOT
from tests.helpers import (
    CNN,
    NOT_TEMPLATE,
    README,
    RUN_LOG,
    bake_the_readme_way,
    commit,
    cruft_state,
    edit,
    publish,
    run,
    snapshot,
    template_version,
    tool,
)

# The first template commit whose post-gen hook keeps git out of cruft's renders (CHANGELOG.md,
# 0.1.0's upgrade notes): projects made from it or later must keep updating.
OLDEST_UPDATABLE = "b8eaf8b5fc74ce941fd3491964f40be493af1adf"
RELEASE_HEADING = re.compile(r"^## (\d+\.\d+\.\d+) — \d{4}-\d{2}-\d{2}$", re.MULTILINE)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    return snapshot(tmp_path / "template")


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Path:
    """A project made with `cruft create`, committed, then edited by its users."""
    created = run(tool("cruft"), "create", "--no-input", str(template),
                  "--output-dir", str(tmp_path / "work"), cwd=tmp_path)  # fmt: skip
    assert "git was left alone" in created.stdout  # cruft renders without cookiecutter's front end
    project = tmp_path / "work" / "my-torch-project"
    assert not (project / ".git").exists()
    run("git", "init", "-q", "-b", "main", cwd=project)
    commit(project, "chore: generate project from torch-template")
    edit(project / "README.md", "## Train\n", "## Train\n\nOur team trains on the big box.\n")
    edit(project / "configs" / "default.yaml", "epochs: 10", "epochs: 40")
    cnn = project / "src" / "my_torch_project" / "models" / "cnn.py"
    edit(cnn, "POOLED_SIZE = 4", "POOLED_SIZE = 2  # our images are small")
    commit(project, "feat: our edits")
    return project


def test_update_brings_template_changes_and_keeps_user_edits(template: Path, project: Path) -> None:
    with (template / RUN_LOG).open("a", encoding="utf-8") as run_log:
        run_log.write("# (template v2)\n")
    edit(template / README, "## Test\n", "## Test (template v2)\n")
    edit(template / CNN, "POOLED_SIZE = 4", "POOLED_SIZE = 8")  # a path the project skips
    commit(template, "template v2")
    assert run(tool("cruft"), "check", cwd=project, check=False).returncode != 0

    run(tool("cruft"), "update", "--skip-apply-ask", cwd=project)

    package = project / "src" / "my_torch_project"
    assert "(template v2)" in (package / "run_log.py").read_text(encoding="utf-8")
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert "## Test (template v2)" in readme  # the template's change arrived
    assert "Our team trains on the big box." in readme  # beside the user's edit
    assert "POOLED_SIZE = 2  # our images are small" in (package / "models" / "cnn.py").read_text()
    assert "epochs: 40" in (project / "configs" / "default.yaml").read_text(encoding="utf-8")
    assert not list(project.rglob("*.rej"))
    nested = [p for p in project.rglob(".git") if p != project / ".git"]
    assert nested == []  # the post-gen hook made no repository inside the update
    assert run(tool("cruft"), "check", cwd=project, check=False).returncode == 0


def test_a_conflicting_update_is_visible_and_blocked_by_pre_commit(
    template: Path, project: Path
) -> None:
    # Both sides rewrite the same line, differently: a real conflict.
    edit(project / "README.md", "## Test\n", "## Checks we run\n")
    commit(project, "docs: rename the test section")
    edit(template / README, "## Test\n", "## Test (template v2)\n")
    commit(template, "template v2")

    run(tool("cruft"), "update", "--skip-apply-ask", cwd=project, check=False)

    leftovers = list(project.rglob("*.rej"))
    markers = "<<<<<<<" in (project / "README.md").read_text(encoding="utf-8")
    assert leftovers or markers, "the conflict was dropped silently"
    run("git", "add", "-A", cwd=project)
    guards = [
        run(tool("pre-commit"), "run", hook, "--all-files", cwd=project, check=False)
        for hook in ("no-update-leftovers", "check-merge-conflict")
    ]
    assert any(guard.returncode != 0 for guard in guards)


def test_a_readme_bake_is_linked_exactly_as_cruft_create_links(
    template: Path, tmp_path: Path
) -> None:
    config = publish(template, tmp_path / "github")
    project = bake_the_readme_way(config, tmp_path / "plain")
    url = f"file://{tmp_path}/github/your-org/torch-template.git"  # `gh:` expanded
    run(tool("cruft"), "create", "--no-input", url, "--output-dir", str(tmp_path / "cruft"),
        cwd=tmp_path)  # fmt: skip

    ours, cruft_own = cruft_state(project), cruft_state(tmp_path / "cruft" / "my-torch-project")
    assert ours["template"] == ours["context"]["cookiecutter"]["_template"] == url
    for state in (ours, cruft_own):  # cruft turns a file:// URL (never an https:// one) into a path
        del state["template"], state["context"]["cookiecutter"]["_template"]
    assert ours == cruft_own
    assert ".cruft.json" in run("git", "ls-files", cwd=project).stdout.split()  # first commit
    assert run(tool("cruft"), "check", cwd=project).returncode == 0


def test_a_bake_from_a_local_checkout_records_its_absolute_path(
    template: Path, tmp_path: Path
) -> None:
    # `cookiecutter .` inside the checkout: the hook, run in the new project, gets a relative path.
    run(tool("cookiecutter"), "--no-input", ".", "--output-dir", str(tmp_path / "out"),
        cwd=template)  # fmt: skip
    state = cruft_state(tmp_path / "out" / "my-torch-project")
    assert state["template"] == str(template.resolve())
    assert state["commit"] == run("git", "rev-parse", "HEAD", cwd=template).stdout.strip()


def test_a_bake_from_a_plain_folder_says_updates_need_a_git_url(tmp_path: Path) -> None:
    folder = tmp_path / "template-copy"
    shutil.copytree(TEMPLATE_ROOT, folder, ignore=NOT_TEMPLATE)
    baked = run(tool("cookiecutter"), "--no-input", str(folder), "--output-dir",
                str(tmp_path / "out"), cwd=tmp_path)  # fmt: skip
    assert "is not a git repository, so this project cannot take template updates" in baked.stdout
    assert "cruft link" in baked.stdout
    project = tmp_path / "out" / "my-torch-project"
    assert (project / "pyproject.toml").is_file()
    assert not (project / ".cruft.json").exists()  # no link that `cruft update` would choke on


def test_a_project_from_the_oldest_updatable_commit_updates_to_this_checkout(
    tmp_path: Path,
) -> None:
    history = tmp_path / "history"
    run("git", "clone", "-q", str(TEMPLATE_ROOT), str(history), cwd=tmp_path)
    if run("git", "cat-file", "-e", f"{OLDEST_UPDATABLE}^{{commit}}", cwd=history,
           check=False).returncode != 0:  # fmt: skip
        pytest.skip("needs the template's git history (a full clone)")
    # On `main` whatever this checkout's HEAD is (a worktree's branch, CI's detached merge commit):
    # the update below asks for `main`.
    run("git", "switch", "-q", "-C", "main", cwd=history)
    run("git", "rm", "-rq", ".", cwd=history)
    shutil.copytree(TEMPLATE_ROOT, history, ignore=NOT_TEMPLATE, dirs_exist_ok=True)
    commit(history, "this checkout's working tree")
    run(tool("cruft"), "create", "--no-input", str(history), "--checkout", OLDEST_UPDATABLE,
        "--output-dir", str(tmp_path / "work"), cwd=tmp_path)  # fmt: skip
    project = tmp_path / "work" / "my-torch-project"
    run("git", "init", "-q", "-b", "main", cwd=project)
    commit(project, "chore: generate project from torch-template")
    edit(project / "README.md", "## Train\n", "## Train\n\nOur team trains on the big box.\n")
    commit(project, "docs: our edit")

    run(tool("cruft"), "update", "--skip-apply-ask", "--checkout", "main", cwd=project)

    assert not list(project.rglob("*.rej"))
    assert "Our team trains on the big box." in (project / "README.md").read_text(encoding="utf-8")
    assert (project / "scripts" / "template_update.py").is_file()  # a file added since arrived
    context = cruft_state(project)["context"]["cookiecutter"]
    assert context["_template_version"] == template_version(TEMPLATE_ROOT)


def test_the_changelog_names_the_version_that_bakes_record() -> None:
    changelog = (TEMPLATE_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    released = RELEASE_HEADING.findall(changelog)
    assert released, "CHANGELOG.md has no `## X.Y.Z — YYYY-MM-DD` section"
    assert released[0] == template_version(TEMPLATE_ROOT)  # the newest section comes first
    assert released == sorted(released, key=lambda v: tuple(map(int, v.split("."))), reverse=True)
    headings = re.findall(r"^## .*$", changelog, flags=re.MULTILINE)
    assert all(h == "## Unreleased" or RELEASE_HEADING.match(h) for h in headings), headings
