"""`ci_platform=gitlab`: the pipeline validates against GitLab's schema, and a real GitLab CI
interpreter (gitlab-ci-local) says which jobs each kind of pipeline runs.

Each scenario sets the predefined variables GitLab sets for that pipeline; a variable GitLab
leaves unset there is given as empty, which rules read as unset, so that nothing of this
machine's git state (gitlab-ci-local derives CI_COMMIT_BRANCH from it) leaks in.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.baking import TEMPLATE_ROOT, Answer, bake
from tests.combinations import GITLAB_FILES
from tests.gitlab_platform import install_gitlab_ci_local, pipeline_jobs

PROJECT_ID = "1217"  # gitlab-ci-local's CI_PROJECT_ID
CPU_JOBS = {"lock", "lint", "typecheck", "tests: [3.11]", "tests: [3.12]", "tests: [3.13]"}
TRAINING_JOBS = {"training:request", "training:run", "training:report"}
TEMPLATE_UPDATE_JOBS = {"template-update:render", "template-update:merge-request"}
UNSET = {"CI_COMMIT_BRANCH": "", "CI_COMMIT_TAG": "", "CI_OPEN_MERGE_REQUESTS": "",
         "CI_MERGE_REQUEST_LABELS": ""}  # fmt: skip


def push(branch: str, **variables: str) -> dict[str, str]:
    protected = "true" if branch == "main" else "false"
    return {**UNSET, "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": branch,
            "CI_COMMIT_REF_PROTECTED": protected, **variables}  # fmt: skip


def merge_request(
    labels: str, protected: bool = True, source_project: str = PROJECT_ID
) -> dict[str, str]:
    return {
        **UNSET,
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_IID": "3",
        "CI_MERGE_REQUEST_LABELS": labels,
        "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": source_project,
        "CI_MERGE_REQUEST_SOURCE_BRANCH_PROTECTED": str(protected).lower(),
        "CI_MERGE_REQUEST_TARGET_BRANCH_PROTECTED": "true",
        "CI_COMMIT_REF_PROTECTED": "false",
    }


BOTH_LABELS = "type:feature,task:training,gpu:required"
SCENARIOS: dict[str, tuple[dict[str, str], set[str]]] = {
    "push to main": (push("main"), CPU_JOBS | {"gpu:smoke", "image:build"}),
    "push to a branch": (push("feature/x"), CPU_JOBS),
    # The merge request's pipeline runs instead: one pipeline per change.
    "push to a branch with an open merge request": (
        push("feature/x", CI_OPEN_MERGE_REQUESTS="group/project!3"), set()
    ),
    "release tag": (push("", CI_COMMIT_TAG="v1.2.3"), {"image:build"}),
    "experiment tag": (push("", CI_COMMIT_TAG="exp/default-20261130-1a2b3c4d"), set()),
    "merge request": (merge_request("type:feature"), CPU_JOBS),
    "merge request labelled gpu:required": (
        merge_request("gpu:required"), CPU_JOBS | {"gpu:smoke"}
    ),
    "merge request labelled for training": (
        merge_request(BOTH_LABELS), CPU_JOBS | {"gpu:smoke"} | TRAINING_JOBS
    ),
    "merge request with only task:training": (merge_request("task:training"), CPU_JOBS),
    # A label is no pass: the source branch must be protected too (and the runner is).
    "training labels from an unprotected branch": (
        merge_request(BOTH_LABELS, protected=False), CPU_JOBS
    ),
    # A fork's merge request pipeline, even one a maintainer runs in this project: GitLab never
    # marks it protected, and the rules refuse it by its source project alone.
    "training labels on a fork's merge request": (
        merge_request(BOTH_LABELS, protected=True, source_project="4242"), CPU_JOBS
    ),
    "template update schedule": (
        {**push("main"), "CI_PIPELINE_SOURCE": "schedule", "PIPELINE_TASK": "template-update"},
        TEMPLATE_UPDATE_JOBS,
    ),
    "schedule with no task": ({**push("main"), "CI_PIPELINE_SOURCE": "schedule"}, set()),
    "maintainer's run on main": (
        {**push("main"), "CI_PIPELINE_SOURCE": "web"}, CPU_JOBS | {"gpu:smoke"}
    ),
    "maintainer's run with an empty task": (
        {**push("main"), "CI_PIPELINE_SOURCE": "web", "PIPELINE_TASK": ""}, CPU_JOBS | {"gpu:smoke"}
    ),
    "maintainer's labels sync": (
        {**push("main"), "CI_PIPELINE_SOURCE": "web", "PIPELINE_TASK": "labels"}, {"labels:sync"}
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def gitlab_ci_local() -> Path:
    installed = install_gitlab_ci_local()
    if installed is None:
        pytest.skip("npm is not installed: gitlab-ci-local (npm) checks the pipeline's rules")
    return installed


def test_rules_match_with_re2_not_javascript_regexps(gitlab_ci_local: Path) -> None:
    """GitLab evaluates `=~` with RE2: a back-reference or a look-ahead, which JavaScript's own
    regexps accept, is an invalid pattern there, and `\\d` is an ASCII digit only."""
    engine = subprocess.run(
        ["node", "--input-type=module", "-e", RE2_PROBE, r"(a)\1", "(?=a)", r"^v\d+\.\d+\.\d+$"],
        capture_output=True, text=True, check=True, cwd=gitlab_ci_local,
    ).stdout.split()  # fmt: skip
    assert engine == ["refused", "refused", "v1.2.3", "null"]


# The `re2` that gitlab-ci-local imports: each of two patterns compiled, then the tag pattern
# matched against an ASCII tag and one with an Arabic-Indic digit one (U+0661).
RE2_PROBE = r"""
import RE2 from "re2";
const [backReference, lookAhead, tag] = process.argv.slice(1);
for (const pattern of [backReference, lookAhead]) {
  try { new RE2(pattern, ""); console.log("accepted"); } catch { console.log("refused"); }
}
for (const name of ["v1.2.3", "v\u0661.2.3"]) console.log(String(name.match(new RE2(tag, ""))));
"""


def bake_gitlab(folder: Path, **answers: Answer) -> Path:
    """A gitlab bake whose main is also origin/main, as in a clone: rules:changes compare to it."""
    from tests.helpers import set_git_identity

    with pytest.MonkeyPatch.context() as patch:
        set_git_identity(patch)
        project = bake(folder, ci_platform="gitlab", **answers)
        origin = folder / "origin.git"
        for command in (
            ["git", "clone", "--quiet", "--bare", str(project), str(origin)],
            ["git", "-C", str(project), "remote", "add", "origin", str(origin)],
            ["git", "-C", str(project), "fetch", "--quiet", "origin"],
            ["git", "-C", str(project), "remote", "set-head", "origin", "main"],
        ):
            subprocess.run(command, check=True, capture_output=True)
    return project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake_gitlab(tmp_path_factory.mktemp("gitlab"))


@pytest.fixture(scope="module")
def scenario_jobs(gitlab_ci_local: Path, project: Path) -> dict[str, set[str]]:
    """Each scenario's jobs, listed in one go (one node process for them all)."""
    pipelines = [(project, variables) for variables, _ in SCENARIOS.values()]
    return dict(zip(SCENARIOS, pipeline_jobs(gitlab_ci_local, pipelines), strict=True))


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_pipeline_runs_exactly_its_jobs(
    scenario_jobs: dict[str, set[str]], scenario: str
) -> None:
    assert scenario_jobs[scenario] == SCENARIOS[scenario][1]


def test_labels_sync_runs_when_labels_yml_changes_on_main(
    gitlab_ci_local: Path, project: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(project), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "remote", "set-head", "origin", "main"], check=True)
    with (clone / "labels.yml").open("a", encoding="utf-8") as labels:
        labels.write('- name: "area:data"\n  color: "000000"\n  description: "Data"\n')
    subprocess.run(
        ["git", "-C", str(clone), "commit", "--quiet", "-am", "chore: label"], check=True
    )
    changed, unchanged = pipeline_jobs(
        gitlab_ci_local, [(clone, push("main")), (project, push("main"))]
    )
    assert "labels:sync" in changed
    assert "labels:sync" not in unchanged


@pytest.mark.parametrize(
    ("answers", "never"),
    [
        ({"gpu_ci": False}, {"gpu:smoke"} | TRAINING_JOBS),
        ({"docker": False}, {"image:build"}),
    ],
    ids=["no-gpu-ci", "no-docker"],
)
def test_options_remove_their_jobs(
    gitlab_ci_local: Path, tmp_path: Path, answers: dict[str, Answer], never: set[str]
) -> None:
    project = bake_gitlab(tmp_path, **answers)
    scenarios = ["push to main", "merge request labelled for training"]
    listed = pipeline_jobs(gitlab_ci_local, [(project, SCENARIOS[name][0]) for name in scenarios])
    assert listed == [SCENARIOS[name][1] - never for name in scenarios]


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def check(*command: str, cwd: Path) -> str:
    """Run a tool of this environment; its neighbours on PATH, for pre-commit's system hooks."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False,
        env={**os.environ, "PATH": path},
    )  # fmt: skip
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_pipeline_and_renovate_config_match_their_schemas(project: Path) -> None:
    check(tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", ".gitlab-ci.yml",
          cwd=project)  # fmt: skip
    check(tool("check-jsonschema"), "--builtin-schema", "vendor.renovate",
          ".gitlab/renovate.json", cwd=project)  # fmt: skip


def test_pre_commit_checks_both_schemas_and_nothing_of_github(project: Path) -> None:
    """The hooks must find their files: a wrong `files:` pattern shows as Skipped, not Failed."""
    for hook in ("check-gitlab-ci", "check-renovate"):
        output = check(tool("pre-commit"), "run", hook, "--all-files", cwd=project)
        assert re.search(r"\.+Passed$", output, flags=re.MULTILINE), output
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert not hooks & {"check-workflows", "check-dependabot", "zizmor"}


def test_a_gitlab_bake_has_its_files_and_no_github_ones(project: Path) -> None:
    files = {str(path.relative_to(project)) for path in project.rglob("*") if path.is_file()}
    assert files >= GITLAB_FILES
    assert not [name for name in files if name.startswith(".github/")]


def test_cpu_jobs_are_the_projects_own_nox_sessions(project: Path) -> None:
    pipeline = yaml.safe_load((project / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    sessions: set[str] = set()
    for name, job in pipeline.items():
        if job_extends(pipeline, name) and ".cpu-nox" in job_extends(pipeline, name):
            [command] = job["script"]
            assert command.startswith("python -m nox --non-interactive --session "), name
            sessions |= set(command.split("--session ")[1].split())
    noxfile = (project / "noxfile.py").read_text(encoding="utf-8")
    default_sessions = re.search(r"nox\.options\.sessions = \[(.*?)\]", noxfile)
    assert default_sessions is not None
    assert sessions == set(re.findall(r'"([a-z]+)"', default_sessions.group(1)))


def job_extends(pipeline: dict[str, object], name: str) -> list[str]:
    job = pipeline[name]
    if not isinstance(job, dict) or "extends" not in job:
        return []
    extends = job["extends"]
    return [extends] if isinstance(extends, str) else list(extends)


def test_tool_pins_agree_between_platforms() -> None:
    """Dependabot (GitHub) and Renovate (GitLab) bump their own copy; both must pin the same."""

    def pins(path: Path) -> dict[str, str]:
        """name -> version of `uv pip compile --generate-hashes` output (hash lines left out)."""
        lines = path.read_text(encoding="utf-8").splitlines()
        requirements = [line.split(";")[0].split("\\")[0].strip() for line in lines
                        if line.strip() and not line.startswith(("#", " "))]  # fmt: skip
        return dict(requirement.split("==") for requirement in requirements)

    slug = TEMPLATE_ROOT / "{{cookiecutter.project_slug}}"
    for name in ("requirements.txt", "requirements-template-update.txt"):
        github, gitlab = pins(slug / ".github" / name), pins(slug / ".gitlab" / name)
        assert {key: gitlab[key] for key in github} == github, name
