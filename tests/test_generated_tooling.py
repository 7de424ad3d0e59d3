"""The generated repository's batteries pass the tools a careful maintainer would run on them.

Each check runs the real tool (zizmor, check-jsonschema, hadolint, shellcheck, pre-commit's
commit-msg hook) on the files of several bakes; `nox -s smoke` adds `pre-commit run --all-files`
inside each baked project's own environment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.helpers import run, tool

# Rows of tests/combinations.py: everything on; docker and the GPU workflows off; the notebooks
# hook at the newest Python (the CI matrix starts there).
ROWS = ["default", "no-docker-no-gpu", "notebooks-python-3.13-no-docker"]


@pytest.fixture(params=ROWS)
def project(request: pytest.FixtureRequest, baked_row: Callable[[str], Path]) -> Path:
    return baked_row(request.param)


def workflows(project: Path) -> list[str]:
    found = sorted(str(p.relative_to(project)) for p in (project / ".github/workflows").glob("*"))
    assert found, "no workflows generated"
    return found


def test_workflows_match_github_schema(project: Path) -> None:
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
          *workflows(project), cwd=project)  # fmt: skip


def test_dependabot_matches_its_schema(project: Path) -> None:
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot",
          ".github/dependabot.yml", cwd=project)  # fmt: skip


def test_issue_forms_match_their_schemas(project: Path) -> None:
    forms = sorted(
        str(p.relative_to(project)) for p in (project / ".github/ISSUE_TEMPLATE").glob("*")
    )
    forms.remove(".github/ISSUE_TEMPLATE/config.yml")
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-issue-forms", *forms,
          cwd=project)  # fmt: skip
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-issue-config",
          ".github/ISSUE_TEMPLATE/config.yml", cwd=project)  # fmt: skip


def test_zizmor_finds_nothing(project: Path) -> None:
    # The whole repository: workflows and .github/dependabot.yml (its dependabot-cooldown audit).
    run(tool("zizmor"), "--offline", "--no-progress", ".", cwd=project)


def test_pre_commit_runs_zizmor_on_the_whole_github_folder(project: Path) -> None:
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    [hook] = [hook for repo in config["repos"] for hook in repo["hooks"] if hook["id"] == "zizmor"]
    assert hook["entry"].split()[-1] == ".github"
    assert hook["pass_filenames"] is False
    assert re.match(hook["files"], ".github/dependabot.yml")


def test_no_label_event_can_cancel_or_queue_behind_a_gpu_job(project: Path) -> None:
    """Every label added anywhere starts the label-triggered workflows; most runs then skip.
    A workflow-level concurrency group is taken before any job's `if:`, so such a run would
    cancel (or queue behind) the GPU job in progress: the groups belong on the GPU jobs."""
    if not (project / ".github/workflows/gpu.yml").exists():
        pytest.skip("gpu_ci=no: no GPU workflows")
    workflows = {
        path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in (project / ".github/workflows").glob("*.yml")
    }  # fmt: skip
    labelled = {
        name for name, workflow in workflows.items()
        # PyYAML reads the key `on` as True (YAML 1.1).
        for trigger in workflow[True].values()
        if isinstance(trigger, dict) and "labeled" in trigger.get("types", [])
    }  # fmt: skip
    assert labelled == {"gpu.yml", "train-on-label.yml"}
    for name in labelled:
        workflow = workflows[name]
        assert "concurrency" not in workflow, f"{name}: concurrency at the workflow level"
        gpu_jobs = {
            job_name: job for job_name, job in workflow["jobs"].items()
            if "self-hosted" in job["runs-on"]
        }  # fmt: skip
        assert gpu_jobs, name
        for job_name, job in gpu_jobs.items():
            assert "concurrency" in job, f"{name}: job {job_name} has no concurrency group"
            # Two environments: gpu-test runs any commit it is given (a fork's too) and must hold
            # no secrets; gpu-train runs default-branch code only and may hold a W&B key.
            expected = "gpu-test" if name == "gpu.yml" else "gpu-train"
            assert job.get("environment") == expected, f"{name}: job {job_name}'s environment"
            # Reached only through its own `if:`, or a job whose `if:` has passed.
            assert "if" in job or "needs" in job, f"{name}: job {job_name} runs on every label"


def test_gpu_job_never_runs_pull_request_code_from_the_pull_request_event(project: Path) -> None:
    if not (project / ".github/workflows/gpu.yml").exists():
        pytest.skip("gpu_ci=no: no GPU workflow")
    workflow = yaml.safe_load((project / ".github/workflows/gpu.yml").read_text(encoding="utf-8"))
    # The GPU job runs only after the check job, which never runs for the pull request event.
    assert workflow["jobs"]["gpu"]["needs"] == "check"
    assert workflow["jobs"]["check"]["if"] == "github.event_name != 'pull_request'"
    # The pull request event only asks for a run of this file as the default branch has it.
    request = workflow["jobs"]["request"]
    assert "ubuntu" in request["runs-on"]
    assert '--ref "$DEFAULT_BRANCH"' in request["steps"][-1]["run"]


def test_image_records_its_own_commit_tag_never_latest(project: Path) -> None:
    if not (project / ".github/workflows/docker.yml").exists():
        pytest.skip("docker=no: no image workflow")
    docker = (project / ".github/workflows/docker.yml").read_text(encoding="utf-8")
    steps = yaml.safe_load(docker)["jobs"]["image"]["steps"]
    [build] = [step for step in steps if step.get("id") == "build"]
    [meta] = [step for step in steps if step.get("id") == "meta"]
    image_tag = build["with"]["build-args"].splitlines()[0]
    assert image_tag == "IMAGE_TAG=${{ steps.tag.outputs.tag }}"
    assert "type=raw,value=${{ steps.tag.outputs.tag }}" in meta["with"]["tags"]
    assert any("actions/attest@" in step.get("uses", "") for step in steps)


def test_every_action_is_pinned_to_a_full_sha(project: Path) -> None:
    for workflow in workflows(project):
        for line in (project / workflow).read_text(encoding="utf-8").splitlines():
            if "uses:" in line:
                reference = line.split("uses:", 1)[1].split("#")[0].strip()
                _, _, sha = reference.partition("@")
                assert re.fullmatch(r"[0-9a-f]{40}", sha), (
                    f"{workflow}: not pinned to a SHA: {line}"
                )
                assert "# v" in line, f"{workflow}: no version comment: {line}"


def test_tools_the_workflows_install_are_pinned_with_hashes(project: Path) -> None:
    """Each .github/requirements*.txt is uv's compile of its .in, every package with its hashes,
    and every workflow installs it with --require-hashes."""
    pinned = sorted((project / ".github").glob("requirements*.txt"))
    assert [path.name for path in pinned] == [
        "requirements-template-update.txt", "requirements.txt"
    ]  # fmt: skip
    for path in pinned:
        text = path.read_text(encoding="utf-8")
        assert (
            "uv pip compile --no-config --universal --python-version 3.10 --generate-hashes" in text
        )
        assert f".github/{path.stem}.in -o .github/{path.name}" in text
        packages = re.findall(r"^[A-Za-z0-9].*$", text, flags=re.MULTILINE)
        hashed = re.findall(
            r"^[A-Za-z0-9].* \\\n    --hash=sha256:[0-9a-f]{64}", text, flags=re.MULTILINE
        )
        assert len(hashed) == len(packages) > 1, path.name  # every package has its hashes
        wanted = (project / ".github" / f"{path.stem}.in").read_text(encoding="utf-8")
        for pin in re.findall(
            r"^([a-z0-9-]+)(?:\[[a-z]+\])?(==[\d.]+)", wanted, flags=re.MULTILINE
        ):
            assert "".join(pin) in text, f"{path.name} is not the compile of its .in: {pin}"
    installs = [
        line.strip()
        for workflow in (project / ".github/workflows").glob("*.yml")
        for line in workflow.read_text(encoding="utf-8").splitlines()
        if "python -m pip install" in line  # not prose that tells a person to pip install
    ]
    assert installs
    for line in installs:
        assert re.search(
            r"pip install (--no-cache-dir )?--require-hashes -r \.github/requirements", line
        ), line


def test_the_branch_ruleset_requires_every_ci_check(project: Path) -> None:
    ruleset = json.loads(
        (project / ".github/rulesets/protected-branches.json").read_text(encoding="utf-8")
    )
    assert ruleset["conditions"]["ref_name"]["include"] == ["refs/heads/main", "refs/heads/develop"]
    assert ruleset["bypass_actors"] == []
    rules = {rule["type"]: rule.get("parameters", {}) for rule in ruleset["rules"]}
    assert {"deletion", "non_fast_forward", "pull_request"} <= set(rules)
    assert rules["pull_request"]["required_approving_review_count"] >= 1
    ci = yaml.safe_load((project / ".github/workflows/ci.yml").read_text(encoding="utf-8"))
    matrix = ci["jobs"]["nox"]["strategy"]["matrix"]["python"]
    contexts = [
        check["context"] for check in rules["required_status_checks"]["required_status_checks"]
    ]
    assert contexts == [f"nox (Python {version})" for version in matrix]


FAKE_GH = """#!/bin/sh
printf '%s\\n' "$*" >> "$GH_LOG"
case "$*" in
  "repo view"*) echo o/r ;;
  *"rulesets?includes_parents=false"*) printf '%s' "$EXISTING_ID" ;;
esac
"""


@pytest.mark.parametrize("existing", ["", "42"])
def test_the_branch_rules_script_creates_or_updates_the_ruleset(
    project: Path, tmp_path: Path, existing: str
) -> None:
    gh = tmp_path / "gh"  # GitHub cannot be reached from here: a stand-in that logs its calls
    gh.write_text(FAKE_GH, encoding="utf-8")
    gh.chmod(0o755)
    environment = {
        "PATH": f"{tmp_path}:{os.environ['PATH']}", "GH_LOG": str(tmp_path / "log"),
        "EXISTING_ID": existing,
    }  # fmt: skip
    result = subprocess.run(
        ["bash", "scripts/apply_branch_rules.sh"],
        cwd=project, env=environment, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "log").read_text(encoding="utf-8")
    ruleset = "scripts/../.github/rulesets/protected-branches.json"
    if existing:
        assert f"api --method PUT repos/o/r/rulesets/42 --input {ruleset}" in calls
        assert "Updated the ruleset 'protected branches' (id 42) of o/r." in result.stdout
    else:
        assert f"api --method POST repos/o/r/rulesets --input {ruleset}" in calls
        assert "Created the ruleset 'protected branches' on o/r." in result.stdout


def test_dockerfile_passes_hadolint(project: Path) -> None:
    if not (project / "Dockerfile").exists():
        pytest.skip("docker=no: no Dockerfile generated")
    run(tool("hadolint"), "Dockerfile", cwd=project)


def test_shell_scripts_pass_shellcheck(project: Path) -> None:
    scripts = sorted(str(p.relative_to(project)) for p in (project / "scripts").glob("*.s*"))
    assert "scripts/setup_dev.sh" in scripts
    run(tool("shellcheck"), *scripts, cwd=project)


def test_labels_md_is_in_sync_with_labels_yml(project: Path) -> None:
    run(sys.executable, "scripts/render_labels.py", "--check", cwd=project)
    labels = (project / "labels.yml").read_text(encoding="utf-8")
    for required in ("task:training", "gpu:required", "env:gpu", "priority:high", "type:bug"):
        assert f'"{required}"' in labels


def test_commit_message_hook_rejects_bad_and_accepts_good(project: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    run(tool("pre-commit"), "install", "--hook-type", "commit-msg", cwd=clone)
    bad = subprocess.run(
        ["git", "commit", "--allow-empty", "-m", "fixed stuff"],
        cwd=clone, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "commit message rejected" in bad.stdout + bad.stderr
    run("git", "commit", "--allow-empty", "-m", "fix(data): handle empty IDX files", cwd=clone)


def test_ci_matrix_starts_at_the_chosen_python(project: Path) -> None:
    ci = (project / ".github/workflows/ci.yml").read_text(encoding="utf-8")
    minimum = (project / ".python-version").read_text(encoding="utf-8").strip()
    assert f'- "{minimum}"' in ci
    assert '- "3.13"' in ci
    older = [v for v in ("3.10", "3.11", "3.12") if v < minimum]
    assert all(f'- "{v}"' not in ci for v in older)


def test_the_templates_own_workflow_is_valid_and_zizmor_clean() -> None:
    repository = Path(__file__).resolve().parents[1]
    workflow = ".github/workflows/ci.yml"
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", workflow,
          cwd=repository)  # fmt: skip
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot",
          ".github/dependabot.yml", cwd=repository)  # fmt: skip
    run(tool("zizmor"), "--offline", "--no-progress", ".github", cwd=repository)
    assert "bash .ci/run" in (repository / workflow).read_text(encoding="utf-8")
