"""The hooks: their checks called in-process, and real `cookiecutter` runs for what a user meets
(one line, exit 1, no folder left; odd text that stays text; git missing or without identity)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import post_gen_project  # hooks/ is on pytest's pythonpath (pyproject.toml)
import pre_gen_project
import pytest
import yaml

from tests.baking import TEMPLATE_ROOT, bake, rendered_answers
from tests.helpers import tool


def run_cookiecutter(
    output_dir: Path, *answers: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", str(TEMPLATE_ROOT),
         "--output-dir", str(output_dir), *answers],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip


def our_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("torch-template:")]


REJECTED = [
    ({"package_name": "class"}, "package_name='class' is a Python keyword"),
    ({"package_name": "my-project"}, "'my-project' is not a lowercase Python identifier"),
    ({"package_name": "1project"}, "package_name='1project' is not a lowercase Python identifier"),
    ({"package_name": "torch"}, "would shadow a standard-library or dependency module"),
    ({"package_name": "json"}, "would shadow a standard-library or dependency module"),
    ({"package_name": "tests"}, "would shadow a standard-library or dependency module"),
    ({"package_name": "a" * 41}, "at most 40 characters"),
    # A valid package_name beside a bad slug, so only the slug is wrong.
    (
        {"project_slug": "My Project", "package_name": "ok"},
        "project_slug='My Project' is not a valid directory",
    ),
    ({"project_slug": "-dash", "package_name": "ok"}, "is not a valid directory/distribution name"),
    ({"author_email": "not-an-email"}, "author_email='not-an-email' is not an email address"),
    ({"python_version": "3.9"}, "python_version='3.9' is not supported"),
    ({"python_version": "3.14"}, "choose one of 3.10, 3.11, 3.12, 3.13"),
    ({"torch_version": "2.1"}, "torch_version='2.1' is older than 2.4"),
    ({"torch_version": "latest"}, "is not a version like 2.6"),
    ({"github_owner": "bad owner!"}, "is not a GitHub user or organisation name"),
    ({"gpu_runner_labels": "gpu;rm -rf /"}, "is not a comma-separated list of runner labels"),
    # One runner would serve the secret-holding training job and pull requests' code.
    ({"gpu_runner_labels": "self-hosted,GPU-Trusted"}, "contains gpu-trusted, which the GPU"),
    ({"gpu_runner_labels": "self-hosted, gpu-untrusted"}, "contains gpu-untrusted, which the GPU"),
    ({"docker_base_image": "pytorch"}, "is not an image reference with a tag"),
    ({"docker_base_image": "pytorch/pytorch@sha256:" + "ab" * 32}, "is not an image reference"),
    ({"docker_base_image": "pytorch/pytorch:2.9.1@sha256:abc"}, "is not an image reference"),
    ({"description": "tab\there"}, "description='tab\\there' contains a control character"),
]  # fmt: skip


@pytest.mark.parametrize(("answers", "message"), REJECTED)
def test_bad_answer_is_rejected_with_one_clear_line(
    capsys: pytest.CaptureFixture[str], answers: dict[str, str], message: str
) -> None:
    assert pre_gen_project.main(rendered_answers(**answers)) == 1
    ours = our_lines(capsys.readouterr().err)
    assert len(ours) == 1, ours
    assert message in ours[0]
    assert "Fix:" in ours[0]


def test_the_default_answers_pass_every_check() -> None:
    assert pre_gen_project.problems(rendered_answers()) == []


def test_a_rejected_answer_ends_cookiecutter_with_one_line_and_no_folder(tmp_path: Path) -> None:
    # The hook as cookiecutter renders and runs it: the answers reach it through Jinja.
    result = run_cookiecutter(tmp_path, "package_name=class")
    assert result.returncode == 1
    ours = our_lines(result.stderr)
    assert len(ours) == 1, result.stderr
    assert "package_name='class' is a Python keyword" in ours[0]
    assert list(tmp_path.iterdir()) == []  # no half-made project left behind


def test_hook_reports_under_python_optimize(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONOPTIMIZE": "2"}
    result = run_cookiecutter(tmp_path, "project_slug=-dash", "package_name=ok", env=env)
    assert result.returncode == 1
    assert len(our_lines(result.stderr)) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_choice_outside_its_list_is_rejected_by_cookiecutter(tmp_path: Path) -> None:
    # cookiecutter itself refuses these before any hook runs; its last line names the field.
    result = run_cookiecutter(tmp_path, "license=GPL-3.0")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "GPL-3.0 provided for choice variable license, but the choices are" in last_line
    assert list(tmp_path.iterdir()) == []


def test_every_choice_field_is_checked_by_cookiecutter() -> None:
    for field in ("license", "dataset", "tracking"):
        with pytest.raises(ValueError, match=f"neptune provided for choice variable {field}, "):
            rendered_answers(**{field: "neptune"})


def test_a_pyproject_that_would_not_parse_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\ndescription = "broken\n', "utf-8")
    assert post_gen_project.main(tmp_path, rendered_answers()) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("torch-template: pyproject.toml would not parse (")
    assert "Fix: remove unusual characters from description" in line


def test_cruft_json_never_records_credentials_of_the_template_url() -> None:
    assert post_gen_project.without_credentials("https://me:token@github.com/org/t.git") == (
        "https://github.com/org/t.git"
    )
    for kept in ("git@github.com:org/t.git", "file:///srv/t.git", "/home/me/t"):
        assert post_gen_project.without_credentials(kept) == kept


@pytest.mark.parametrize(
    "description",
    [
        "Quotes \" and ' and triple \"\"\" and ''' end here",
        "Back\\slash at the end \\",
        "Hash # colon: dollar $HOME `backticks` $(touch injected)",
        "Ünïcödé — 日本語 — emoji 🚀",
    ],
)
def test_odd_text_stays_text(tmp_path: Path, description: str) -> None:
    project = bake(tmp_path, description=description, author_name=description)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == description
    assert pyproject["project"]["authors"][0]["name"] == description
    assert not (project / "injected").exists()
    assert not Path("injected").exists()


def test_a_digest_pinned_image_reaches_the_dockerfile_and_the_gpu_jobs(tmp_path: Path) -> None:
    image = "pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime@sha256:" + "0123456789abcdef" * 4
    project = bake(tmp_path, docker_base_image=image)
    dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
    assert f"FROM {image} AS runtime\n" in dockerfile
    for name in ("gpu.yml", "train-on-label.yml"):
        jobs = yaml.safe_load((project / ".github/workflows" / name).read_text(encoding="utf-8"))
        images = {job["container"]["image"] for job in jobs["jobs"].values() if "container" in job}
        assert images == {image}, name
    docker = yaml.safe_load((project / ".github/workflows/docker.yml").read_text(encoding="utf-8"))
    [name_step] = [step for step in docker["jobs"]["image"]["steps"] if step.get("id") == "tag"]
    assert name_step["env"]["PREFIX"] == "pytorch2.9.1-cuda12.8-"  # the tag, not the digest
    # zizmor's strictest persona wants container images pinned by digest: now they are.
    pedantic = subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", "--persona", "pedantic", ".github"],
        cwd=project, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "unpinned-images" not in pedantic.stdout, pedantic.stdout


def test_python_code_in_an_answer_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = f'"""); open("{marker}", "w"); ("""'
    bake(tmp_path / "out", description=payload, project_name=payload)
    assert not marker.exists()


def test_bake_without_git_identity_notes_it_and_succeeds(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GIT_AUTHOR", "GIT_COMMITTER", "EMAIL"))
    }
    env |= {"HOME": str(tmp_path / "home"), "GIT_CONFIG_NOSYSTEM": "1", "XDG_CONFIG_HOME": ""}
    (tmp_path / "home").mkdir()
    result = run_cookiecutter(tmp_path / "out", env=env)
    assert result.returncode == 0, result.stderr
    assert "no first commit was made" in result.stdout
    project = tmp_path / "out" / "my-torch-project"
    assert (project / ".git").is_dir()
    assert (project / "pyproject.toml").is_file()


def test_bake_without_git_installed_notes_it_and_succeeds(tmp_path: Path) -> None:
    # A PATH holding only the Python interpreter's folder hides git from the hook.
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    result = run_cookiecutter(tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "git not found" in result.stdout
    assert not (tmp_path / "my-torch-project" / ".git").exists()
