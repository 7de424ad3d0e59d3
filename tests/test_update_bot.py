"""The update bot: `scripts/template_update.py` (its read-only half) and `template-update.yml`.

A published template with two releases and a later commit on main; projects baked the README's
way from the older release, edited, then updated as the workflow does: the script with --out,
then the patch applied to a fresh clone, as the job that opens the pull request applies it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.baking import bake
from tests.git_identity import GIT_IDENTITY
from tests.helpers import (
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

# A README block both sides edit: the release changes "- first"; "- third" is within the diff's
# three lines of context (only a 3-way merge joins the two), "- eighth" is beyond them.
BLOCK = "\n## Release checks\n\n" + "".join(
    f"- {word}\n"
    for word in ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
)
UNRELEASED = "# unreleased on main\n"


@dataclass(frozen=True)
class Releases:
    config: Path  # cookiecutter config whose `gh:` leads to the published template
    old: str  # the tag projects are baked from
    new: str  # the newest tag
    new_version: str


def next_minor(version: str) -> str:
    major, minor, _ = version.split(".")
    return f"{major}.{int(minor) + 1}.0"


def release(template: Path, version: str, entry: str) -> None:
    """Add a changelog section, record the version in cookiecutter.json, commit and tag."""
    changelog = template / "CHANGELOG.md"
    text = changelog.read_text(encoding="utf-8")
    head, _, rest = text.partition("\n## ")
    changelog.write_text(f"{head}\n## {version} — 2026-12-14\n\n- {entry}\n\n## {rest}")
    context_file = template / "cookiecutter.json"
    context = json.loads(context_file.read_text(encoding="utf-8"))
    context["_template_version"] = version
    context_file.write_text(json.dumps(context, indent=2, ensure_ascii=False) + "\n")
    commit(template, f"release {version}")
    run("git", "tag", f"v{version}", cwd=template)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    root = tmp_path_factory.mktemp("releases")
    template = snapshot(root / "template")
    old = template_version(template)
    with (template / README).open("a", encoding="utf-8") as readme:
        readme.write(BLOCK)
    commit(template, "the block the tests edit")
    run("git", "tag", f"v{old}", cwd=template)
    new = next_minor(old)
    edit(template / README, "- first\n", f"- first (v{new})\n")
    release(template, new, "The README's release checks come first.")
    with (template / RUN_LOG).open("a", encoding="utf-8") as run_log:
        run_log.write(UNRELEASED)
    edit(template / "CHANGELOG.md", "\n## ", "\n## Unreleased\n\n- A change on main.\n\n## ")
    commit(template, "a change not yet released")
    return Releases(publish(template, root / "github"), f"v{old}", f"v{new}", new)


@pytest.fixture
def project(releases: Releases, tmp_path: Path) -> Path:
    return bake_the_readme_way(releases.config, tmp_path / "work", "--checkout", releases.old)


def update(project: Path, out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """The workflow's render step; returns the result and what it wrote to GITHUB_OUTPUT."""
    outputs = out.parent / f"{out.name}-outputs"
    env = {**os.environ, **GIT_IDENTITY, "GITHUB_OUTPUT": str(outputs)}
    command = [sys.executable, "scripts/template_update.py", "--out", str(out), *args]
    result = subprocess.run(
        command, cwd=project, capture_output=True, text=True, env=env, check=False
    )
    return result, outputs.read_text(encoding="utf-8") if outputs.exists() else ""


def apply_as_the_pull_request_job(project: Path, out: Path, clone: Path) -> list[str]:
    """A fresh clone of the project, the patch applied as the writing job does; staged paths."""
    run("git", "clone", "-q", str(project), str(clone), cwd=project)
    run("git", "apply", "--index", str(out / "update.patch"), cwd=clone)
    assert (
        run("git", "diff", "--cached", cwd=clone).stdout
        == run("git", "diff", "--cached", cwd=project).stdout
    )  # the pull request holds exactly what cruft made
    return run("git", "diff", "--cached", "--name-only", cwd=clone).stdout.split()


def test_the_bot_brings_the_newest_release_with_its_changelog(
    releases: Releases, project: Path, tmp_path: Path
) -> None:
    assert cruft_state(project)["checkout"] == releases.old
    edit(project / "README.md", "- eighth\n", "- eighth, our line\n")
    commit(project, "docs: our edit")

    result, outputs = update(project, tmp_path / "out")

    assert result.returncode == 0, result.stderr
    assert outputs == "update=true\n"
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert f"- first ({releases.new})" in readme
    assert "- eighth, our line" in readme
    assert UNRELEASED not in (project / "src/my_torch_project/run_log.py").read_text()  # main only
    assert not list(project.rglob("*.rej"))
    state = cruft_state(project)
    assert (state["checkout"], state["context"]["cookiecutter"]["_template_version"]) == (
        releases.new, releases.new_version
    )  # fmt: skip
    body = (tmp_path / "out" / "pr-body.md").read_text(encoding="utf-8")
    assert f"## {releases.new_version} — " in body
    assert "The README's release checks" in body
    assert f"## {releases.old[1:]} — " not in body  # the project has that one already
    assert "Unreleased" not in body
    assert "Conflicts" not in body
    title = (tmp_path / "out" / "title.txt").read_text(encoding="utf-8")
    assert title == f"chore: update from torch-template {releases.new}\n"
    assert "README.md" in apply_as_the_pull_request_job(project, tmp_path / "out", tmp_path / "pr")

    commit(project, title)
    result, outputs = update(project, tmp_path / "again")
    assert (result.returncode, outputs) == (0, "update=false\n")
    assert f"up to date with {releases.new}" in result.stdout

    result, outputs = update(project, tmp_path / "main", "--ref", "main")  # follow the branch
    assert (result.returncode, outputs) == (0, "update=true\n"), result.stderr
    assert UNRELEASED in (project / "src/my_torch_project/run_log.py").read_text()
    assert "## Unreleased" in (tmp_path / "main" / "pr-body.md").read_text(encoding="utf-8")


def test_a_shallow_clone_is_refused_because_only_full_history_merges_next_to_edits(
    releases: Releases, project: Path, tmp_path: Path
) -> None:
    edit(project / "README.md", "- third\n", "- third, our line\n")  # next to the release's change
    commit(project, "docs: our edit")
    shallow = tmp_path / "shallow"
    run("git", "clone", "-q", "--depth", "1", f"file://{project}", str(shallow), cwd=tmp_path)

    result, outputs = update(shallow, tmp_path / "out-shallow")
    assert (result.returncode, outputs) == (1, "")  # an error, never "behind"
    assert "fetch-depth: 0" in result.stderr
    # Why: without the baked README in history, cruft can only leave the change in a .rej file.
    run(tool("cruft"), "update", "--skip-apply-ask", "--checkout", releases.new, cwd=shallow)
    assert (shallow / "README.md.rej").is_file()

    result, _ = update(project, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert f"- first ({releases.new})" in readme
    assert "- third, our line" in readme
    assert not list(project.rglob("*.rej"))


@pytest.mark.parametrize("conflict", ["same line", "history without the baked file"])
def test_conflicts_reach_the_pull_request_and_are_listed(
    releases: Releases, project: Path, tmp_path: Path, conflict: str
) -> None:
    if conflict == "same line":
        edit(project / "README.md", "- first\n", "- first, our way\n")
        commit(project, "docs: our edit")
        expected = ["README.md"]
    else:  # the baked README is gone from history, so no 3-way merge: cruft writes a .rej file
        edit(project / "README.md", "- third\n", "- third, our line\n")
        run("git", "commit", "-q", "--amend", "-a", "--no-edit", cwd=project)
        run("git", "clone", "-q", f"file://{project}", str(tmp_path / "rewritten"), cwd=tmp_path)
        project = tmp_path / "rewritten"
        expected = ["README.md.rej"]  # .gitignore hides it from `git add -A`; it must not vanish

    result, _ = update(project, tmp_path / "out")

    assert result.returncode == 0, result.stderr
    body = (tmp_path / "out" / "pr-body.md").read_text(encoding="utf-8")
    listed = re.findall(r"^- `(.+)`$", body, flags=re.MULTILINE)
    assert "Conflicts to resolve by hand" in body
    assert listed == expected
    staged = apply_as_the_pull_request_job(project, tmp_path / "out", tmp_path / "pr")
    assert set(expected) <= set(staged)


def workflow_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def test_only_the_job_without_template_code_may_write(tmp_path: Path) -> None:
    project = bake(tmp_path)
    text = (project / ".github/workflows/template-update.yml").read_text(encoding="utf-8")
    workflow = yaml.safe_load(text)
    render, open_pr = workflow["jobs"]["render"], workflow["jobs"]["open-pr"]
    assert workflow["permissions"] == {}
    assert render["permissions"] == open_pr["permissions"] == {"contents": "read"}
    checkout = workflow_steps(render)[0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0
    # The version that renders is pinned with its hashes, where Dependabot can update it.
    assert "pip install --require-hashes -r .github/requirements-template-update.txt" in text
    pins = (project / ".github/requirements-template-update.txt").read_text(encoding="utf-8")
    assert re.search(r"^cruft==[\d.]+ \\\n    --hash=sha256:[0-9a-f]{64}", pins, flags=re.MULTILINE)
    # The writing job's secrets live in an environment only the default branch may use.
    assert open_pr["environment"] == "template-update"
    # The writing job runs git and shell only: nothing from the template or the project.
    scripts = " ".join(step.get("run", "") for step in workflow_steps(open_pr))
    commands = re.sub(r"<<'EOF'.*?\nEOF\n", "", scripts, flags=re.DOTALL)  # not the summary text
    assert not re.search(r"\b(python|pip|cruft|nox|scripts/)", commands)
    pull_request = workflow_steps(open_pr)[-1]
    assert pull_request["uses"].startswith("peter-evans/create-pull-request@")
    assert "GITHUB_TOKEN" not in pull_request["with"]["token"]  # its PRs would start no CI
    assert "permission-workflows" in text  # the App token may push workflow changes
    for line in re.findall(r"uses: (\S+ .*)", text):
        assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", line), line


def test_a_template_without_releases_is_a_notice_not_a_failure(
    project: Path, tmp_path: Path
) -> None:
    state_file = project / ".cruft.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    untagged = tmp_path / "untagged"
    run("git", "clone", "-q", "--no-tags", state["template"], str(untagged), cwd=tmp_path)
    state_file.write_text(json.dumps({**state, "template": str(untagged)}), encoding="utf-8")
    result, outputs = update(project, tmp_path / "out")
    assert (result.returncode, outputs) == (0, "update=false\n"), result.stderr
    assert "no release tag (vX.Y.Z) yet" in result.stdout
    assert "TEMPLATE_UPDATE_REF=main" in result.stdout
    assert not (tmp_path / "out").exists()
