"""Hook behaviour through the real `cookiecutter` command line, as a user meets it."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.baking import TEMPLATE_ROOT, bake
from tests.test_generated_tooling import tool


def run_cookiecutter(
    output_dir: Path, *answers: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", str(TEMPLATE_ROOT),
         "--output-dir", str(output_dir), *answers],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip


REJECTED = [
    (("package_name=class",), "package_name='class' is a Python keyword"),
    (
        ("package_name=my-project",),
        "package_name='my-project' is not a lowercase Python identifier",
    ),
    (("package_name=1project",), "package_name='1project' is not a lowercase Python identifier"),
    (("package_name=torch",), "would shadow a standard-library or dependency module"),
    (("package_name=json",), "would shadow a standard-library or dependency module"),
    (("package_name=tests",), "would shadow a standard-library or dependency module"),
    (("package_name=" + "a" * 41,), "at most 40 characters"),
    # A valid package_name beside a bad slug, so only the slug is wrong.
    (
        ("project_slug=My Project", "package_name=ok"),
        "project_slug='My Project' is not a valid directory",
    ),
    (("project_slug=-dash", "package_name=ok"), "is not a valid directory/distribution name"),
    (("author_email=not-an-email",), "author_email='not-an-email' is not an email address"),
    (("python_version=3.9",), "python_version='3.9' is not supported"),
    (("python_version=3.14",), "choose one of 3.10, 3.11, 3.12, 3.13"),
    (("torch_version=2.1",), "torch_version='2.1' is older than 2.4"),
    (("torch_version=latest",), "is not a version like 2.6"),
    (("github_owner=bad owner!",), "is not a GitHub user or organisation name"),
    (("gpu_runner_labels=gpu;rm -rf /",), "is not a comma-separated list of runner labels"),
    # One runner would serve the secret-holding training job and pull requests' code.
    (("gpu_runner_labels=self-hosted,GPU-Trusted",), "contains gpu-trusted, which the GPU"),
    (("gpu_runner_labels=self-hosted, gpu-untrusted",), "contains gpu-untrusted, which the GPU"),
    (("docker_base_image=pytorch",), "is not an image reference with a tag"),
    (("docker_base_image=pytorch/pytorch@sha256:" + "ab" * 32,), "is not an image reference"),
    (("docker_base_image=pytorch/pytorch:2.9.1@sha256:abc",), "is not an image reference"),
]


@pytest.mark.parametrize(("answers", "message"), REJECTED)
def test_bad_answer_is_rejected_with_one_clear_line(
    tmp_path: Path, answers: tuple[str, ...], message: str
) -> None:
    result = run_cookiecutter(tmp_path, *answers)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("torch-template:")]
    assert len(ours) == 1, result.stderr
    assert message in ours[0]
    assert "Fix:" in ours[0]
    assert list(tmp_path.iterdir()) == []  # no half-made project left behind


@pytest.mark.parametrize(("field", "value"), [("license", "GPL-3.0"), ("tracking", "neptune")])
def test_choice_outside_its_list_is_rejected(tmp_path: Path, field: str, value: str) -> None:
    # cookiecutter itself refuses these before any hook runs; its last line names the field.
    result = run_cookiecutter(tmp_path, f"{field}={value}")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"{value} provided for choice variable {field}, but the choices are" in last_line
    assert list(tmp_path.iterdir()) == []


def test_hook_reports_under_python_optimize(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONOPTIMIZE": "2"}
    result = run_cookiecutter(tmp_path, "package_name=class", env=env)
    assert result.returncode != 0
    assert list(tmp_path.iterdir()) == []


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


def test_control_characters_are_rejected(tmp_path: Path) -> None:
    result = run_cookiecutter(tmp_path, "description=tab\there")
    assert result.returncode != 0
    assert "description=" in result.stderr
    assert "control character" in result.stderr


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
