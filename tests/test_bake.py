"""The default bake: exact file set, no template leftovers, valid configs, a clean first commit."""

from __future__ import annotations

import ast
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.baking import bake, leftover_template_syntax, text_files
from tests.conftest import set_git_identity

DEFAULT_FILES = {
    ".cruft.json",
    ".dockerignore",
    ".github/ISSUE_TEMPLATE/bug.yml",
    ".github/ISSUE_TEMPLATE/config.yml",
    ".github/ISSUE_TEMPLATE/training.yml",
    ".github/dependabot.yml",
    ".github/labels.yml",
    ".github/pull_request_template.md",
    ".github/requirements-template-update.in",
    ".github/requirements-template-update.txt",
    ".github/requirements.in",
    ".github/requirements.txt",
    ".github/rulesets/protected-branches.json",
    ".github/workflows/ci.yml",
    ".github/workflows/docker.yml",
    ".github/workflows/gpu.yml",
    ".github/workflows/labels.yml",
    ".github/workflows/template-update.yml",
    ".github/workflows/train-on-label.yml",
    ".gitignore",
    ".gitmessage",
    ".pre-commit-config.yaml",
    ".python-version",
    "CONTRIBUTING.md",
    "Dockerfile",
    "LABELS.md",
    "LICENSE",
    "README.md",
    "configs/default.yaml",
    "configs/imagefolder.yaml",
    "configs/smoke.yaml",
    "noxfile.py",
    "pyproject.toml",
    "scripts/apply_branch_rules.sh",
    "scripts/check_commit_message.py",
    "scripts/gpu_access.py",
    "scripts/render_labels.py",
    "scripts/setup_dev.sh",
    "scripts/slurm_train.sbatch",
    "scripts/start_jupyter.sh",
    "scripts/template_update.py",
    "scripts/training_request.py",
    "src/my_torch_project/__init__.py",
    "src/my_torch_project/atomic_files.py",
    "src/my_torch_project/checkpoint.py",
    "src/my_torch_project/config.py",
    "src/my_torch_project/data/__init__.py",
    "src/my_torch_project/data/folder_layout.py",
    "src/my_torch_project/data/image_folder.py",
    "src/my_torch_project/data/images.py",
    "src/my_torch_project/data/loaders.py",
    "src/my_torch_project/data/mnist.py",
    "src/my_torch_project/data/pack.py",
    "src/my_torch_project/data/packed.py",
    "src/my_torch_project/data/preprocessing.py",
    "src/my_torch_project/data/synthetic.py",
    "src/my_torch_project/distributed.py",
    "src/my_torch_project/errors.py",
    "src/my_torch_project/evaluate.py",
    "src/my_torch_project/export.py",
    "src/my_torch_project/guards.py",
    "src/my_torch_project/health_check.py",
    "src/my_torch_project/inference.py",
    "src/my_torch_project/manifest.py",
    "src/my_torch_project/models/__init__.py",
    "src/my_torch_project/models/cnn.py",
    "src/my_torch_project/models/mlp.py",
    "src/my_torch_project/predict.py",
    "src/my_torch_project/preemption.py",
    "src/my_torch_project/py.typed",
    "src/my_torch_project/report.py",
    "src/my_torch_project/reproducibility.py",
    "src/my_torch_project/run_files.py",
    "src/my_torch_project/run_folder.py",
    "src/my_torch_project/run_log.py",
    "src/my_torch_project/search.py",
    "src/my_torch_project/search_report.py",
    "src/my_torch_project/search_space.py",
    "src/my_torch_project/search_worker.py",
    "src/my_torch_project/sinks.py",
    "src/my_torch_project/sweep.py",
    "src/my_torch_project/tag_run.py",
    "src/my_torch_project/tracking.py",
    "src/my_torch_project/train.py",
    "src/my_torch_project/trainer.py",
    "src/my_torch_project/training_state.py",
    "tests/conftest.py",
    "tests/helpers.py",
    "tests/test_after_training.py",
    "tests/test_architecture.py",
    "tests/test_bring_your_own.py",
    "tests/test_checkpoint.py",
    "tests/test_cli.py",
    "tests/test_config.py",
    "tests/test_data.py",
    "tests/test_distributed.py",
    "tests/test_image_folder.py",
    "tests/test_manifest.py",
    "tests/test_model_sanity.py",
    "tests/test_run_folder.py",
    "tests/test_search.py",
    "tests/test_sweep.py",
    "tests/test_tag_run.py",
    "tests/test_tracking.py",
    "tests/test_train.py",
    "tests/test_training_knobs.py",
    "tests/test_workflow_scripts.py",
}


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def default_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as patch:  # module scope cannot use the autouse fixture
        set_git_identity(patch)
        return bake(tmp_path_factory.mktemp("default"))


def generated_files(project: Path) -> set[str]:
    return {
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


def test_default_bake_has_exactly_the_expected_files(default_project: Path) -> None:
    assert default_project.name == "my-torch-project"
    assert generated_files(default_project) == DEFAULT_FILES


def test_no_template_syntax_is_left(default_project: Path) -> None:
    assert leftover_template_syntax(default_project) == []


def test_leftover_check_catches_syntax_but_not_github_expressions(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_text("name: {{ cookiecutter.project_name }}\n")
    (tmp_path / "ok.yml").write_text("run: echo ${{ github.sha }}\n")
    assert leftover_template_syntax(tmp_path) == [
        "bad.txt:1: name: {{ cookiecutter.project_name }}"
    ]


def test_every_python_file_parses(default_project: Path) -> None:
    for path in text_files(default_project):
        if path.suffix == ".py":
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_pyproject_and_configs_parse(default_project: Path) -> None:
    pyproject = tomllib.loads((default_project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == "my-torch-project"
    assert pyproject["project"]["requires-python"] == ">=3.11"
    assert "torch>=2.6" in pyproject["project"]["dependencies"]
    for config in (default_project / "configs").glob("*.yaml"):
        assert isinstance(yaml.safe_load(config.read_text(encoding="utf-8")), dict)


def test_first_commit_tracks_every_generated_file(default_project: Path) -> None:
    assert git(default_project, "branch", "--show-current").strip() == "main"
    assert git(default_project, "log", "--format=%s").strip() == (
        "chore: generate project from torch-template"
    )
    assert set(git(default_project, "ls-files").split()) == DEFAULT_FILES
    assert git(default_project, "status", "--porcelain") == ""
    assert git(default_project, "config", "commit.template").strip() == ".gitmessage"


def test_setup_script_is_executable(default_project: Path) -> None:
    assert (default_project / "scripts" / "setup_dev.sh").stat().st_mode & 0o111


@pytest.mark.parametrize("license_name", ["MIT", "BSD-3-Clause", "Apache-2.0", "Proprietary"])
def test_each_license_names_the_author(tmp_path: Path, license_name: str) -> None:
    project = bake(tmp_path, license=license_name, author_name="Ada Lovelace")
    text = (project / "LICENSE").read_text(encoding="utf-8")
    assert "Ada Lovelace" in text
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    expected = "LicenseRef-Proprietary" if license_name == "Proprietary" else license_name
    assert pyproject["project"]["license"] == expected


def test_mnist_option_sets_the_default_dataset(tmp_path: Path) -> None:
    project = bake(tmp_path, dataset="mnist")
    default = yaml.safe_load((project / "configs" / "default.yaml").read_text(encoding="utf-8"))
    assert default["data"]["name"] == "mnist"
    smoke = yaml.safe_load((project / "configs" / "smoke.yaml").read_text(encoding="utf-8"))
    assert smoke["data"]["name"] == "synthetic"  # the smoke run never needs a download


def test_unknown_override_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="projct_name"):
        bake(tmp_path, projct_name="typo")


def test_baking_twice_over_the_same_directory_adds_no_commit(tmp_path: Path) -> None:
    from cookiecutter.main import cookiecutter

    from tests.baking import TEMPLATE_ROOT

    project = bake(tmp_path)
    cookiecutter(
        str(TEMPLATE_ROOT), no_input=True, output_dir=str(tmp_path), overwrite_if_exists=True
    )
    assert len(git(project, "log", "--format=%H").split()) == 1


@pytest.mark.parametrize(
    ("tracking", "dependency"),
    [
        ("none", None),
        ("tensorboard", "tensorboard"),
        ("wandb", "wandb"),
        ("mlflow", "mlflow-skinny"),
    ],
)
def test_tracking_option_adds_only_its_dependency(
    tmp_path: Path, tracking: str, dependency: str | None
) -> None:
    project = bake(tmp_path, tracking=tracking)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    names = {entry.split(">")[0] for entry in pyproject["project"]["dependencies"]}
    assert names - {"torch", "numpy", "pyyaml", "pillow"} == ({dependency} if dependency else set())


@pytest.mark.parametrize(
    ("answers", "absent"),
    [
        ({"docker": False}, {".dockerignore", "Dockerfile", ".github/workflows/docker.yml",
                             "scripts/start_jupyter.sh"}),
        ({"gpu_ci": False}, {".github/workflows/gpu.yml", ".github/workflows/train-on-label.yml"}),
    ],
)  # fmt: skip
def test_turning_an_option_off_removes_exactly_its_files(
    tmp_path: Path, answers: dict[str, bool], absent: set[str]
) -> None:
    assert generated_files(bake(tmp_path, **answers)) == DEFAULT_FILES - absent


def test_notebooks_option_adds_exactly_the_notebook(tmp_path: Path) -> None:
    project = bake(tmp_path, include_notebooks=True)
    assert generated_files(project) == DEFAULT_FILES | {"notebooks/01_explore_data.ipynb"}
    assert "nbstripout" in (project / ".pre-commit-config.yaml").read_text(encoding="utf-8")
