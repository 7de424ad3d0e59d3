"""The option combinations the template is checked with: one table for pytest and nox alike.

CHECK_COMBINATIONS get the fast checks (`nox -s combinations -- odd-text` runs one row); the rows
named in SMOKE_COMBINATIONS are also installed and run through their own nox, e.g.
`nox -s "smoke(tensorboard)"`. The default smoke row runs the baked project's whole `nox`; the
other rows run its lock check and, of the tests, only those that read what the row changes
(test_tracking.py and test_config.py for the tracking backend): every other test, and the
smoke-train, trains configs/smoke.yaml, whose backend is `none`, and would repeat the default
row to the bit, and the combinations session has already run every row's pre-commit hooks
(ruff, mypy --strict, ...).

The file set each row must bake into is here too: DEFAULT_FILES (the default bake's, exactly) and
FILES_FOR_OPTION (the files a yes/no option adds). The post-gen hook keeps its own list of what to
remove: a test that read the hook's list could not catch a file missing from it.
"""

from __future__ import annotations

from tests.baking import Answer, parse_answer

# Fast checks on every supported combination: each option varied once from the defaults, the
# pairs that interact, and odd-but-valid text. pytest bakes each row and checks the file set and
# leftover syntax; `nox -s combinations` runs each baked project's own pre-commit hooks (ruff,
# mypy --strict, workflow schemas, zizmor, hadolint, shellcheck, ...) and imports its package.
ODD_TEXT = "Quotes \" ' \"\"\" ''' back\\slash # hash: colon $HOME `tick` $(touch x) Ünïcödé 🚀"
CHECK_COMBINATIONS: dict[str, dict[str, str]] = {
    "default": {},
    "license-bsd": {"license": "BSD-3-Clause"},
    "license-apache": {"license": "Apache-2.0"},
    "license-proprietary": {"license": "Proprietary"},
    "dataset-mnist": {"dataset": "mnist"},
    "tracking-tensorboard": {"tracking": "tensorboard"},
    "tracking-wandb": {"tracking": "wandb"},
    "tracking-mlflow": {"tracking": "mlflow"},
    "no-docker": {"docker": "no"},
    "no-gpu-ci": {"gpu_ci": "no"},
    "notebooks": {"include_notebooks": "yes"},
    "python-3.10": {"python_version": "3.10"},
    "python-3.12": {"python_version": "3.12"},
    "python-3.13": {"python_version": "3.13"},
    "oldest-torch": {"torch_version": "2.4"},
    "custom-runner-and-image": {
        "gpu_runner_labels": "self-hosted, linux, a100",
        "docker_base_image": "pytorch/pytorch:2.8.0-cuda12.6-cudnn9-runtime",
    },
    # Pairs that interact.
    "no-docker-no-gpu": {"docker": "no", "gpu_ci": "no"},
    "no-docker-with-gpu": {"docker": "no", "gpu_ci": "yes"},
    "mnist-with-wandb": {"dataset": "mnist", "tracking": "wandb"},
    "notebooks-python-3.13-no-docker": {
        "include_notebooks": "yes", "python_version": "3.13", "docker": "no"
    },
    # GitLab instead of GitHub, with the options that change its pipeline.
    "gitlab": {"ci_platform": "gitlab"},
    "gitlab-no-docker": {"ci_platform": "gitlab", "docker": "no"},
    "gitlab-no-gpu-ci": {"ci_platform": "gitlab", "gpu_ci": "no"},
    "gitlab-tracking-mlflow": {"ci_platform": "gitlab", "tracking": "mlflow"},
    # Odd but valid text: must stay text in TOML, YAML, Markdown and never reach a shell.
    "odd-text": {"description": ODD_TEXT, "author_name": ODD_TEXT},
    "unicode-name": {"project_name": "Ünïcödé Café — Vision 2"},
    "very-long-name": {"project_name": "An Extremely Long Project Name " * 4},
}  # fmt: skip


# The default bake's files, exactly (its package is my_torch_project); a stray or missing file
# fails the bake tests.
# The files a gitlab bake has instead of .github/ (scripts/training_request.py and labels.yml
# are in both).
GITLAB_FILES = {
    ".gitlab-ci.yml",
    ".gitlab/issue_templates/Bug.md",
    ".gitlab/issue_templates/Training.md",
    ".gitlab/merge_request_templates/Default.md",
    ".gitlab/merge_request_templates/Training.md",
    ".gitlab/renovate.json",
    ".gitlab/requirements-template-update.in",
    ".gitlab/requirements-template-update.txt",
    ".gitlab/requirements.in",
    ".gitlab/requirements.txt",
    "scripts/gitlab_api.py",
    "scripts/merge_request_training.py",
    "tests/test_gitlab_automation.py",
}
# In a GitHub bake only (besides .github/): scripts of GitHub's GPU workflows and rulesets.
GITHUB_ONLY_FILES = {"scripts/apply_branch_rules.sh"}
DEFAULT_FILES = {
    ".cruft.json",
    ".dockerignore",
    ".github/ISSUE_TEMPLATE/bug.yml",
    ".github/ISSUE_TEMPLATE/config.yml",
    ".github/ISSUE_TEMPLATE/training.yml",
    ".github/dependabot.yml",
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
    "labels.yml",
    "monitoring/README.md",
    "monitoring/grafana-dashboard.json",
    "monitoring/prometheus.yml",
    "noxfile.py",
    "pyproject.toml",
    "scripts/apply_branch_rules.sh",
    "scripts/check_commit_message.py",
    "scripts/check_environment.py",
    "scripts/gpu_access.py",
    "scripts/render_labels.py",
    "scripts/setup_dev.sh",
    "scripts/slurm_train.sbatch",
    "scripts/start_jupyter.sh",
    "scripts/template_update.py",
    "scripts/training_request.py",
    "src/my_torch_project/__init__.py",
    "src/my_torch_project/atomic_files.py",
    "src/my_torch_project/baseline.py",
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
    "src/my_torch_project/fine_tuning.py",
    "src/my_torch_project/guards.py",
    "src/my_torch_project/health_check.py",
    "src/my_torch_project/inference.py",
    "src/my_torch_project/manifest.py",
    "src/my_torch_project/models/__init__.py",
    "src/my_torch_project/models/cnn.py",
    "src/my_torch_project/models/mlp.py",
    "src/my_torch_project/predict.py",
    "src/my_torch_project/preemption.py",
    "src/my_torch_project/prometheus.py",
    "src/my_torch_project/py.typed",
    "src/my_torch_project/remote_runs.py",
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
    "src/my_torch_project/storage.py",
    "src/my_torch_project/sweep.py",
    "src/my_torch_project/tag_run.py",
    "src/my_torch_project/telemetry.py",
    "src/my_torch_project/tracking.py",
    "src/my_torch_project/train.py",
    "src/my_torch_project/trainer.py",
    "src/my_torch_project/training_state.py",
    "src/my_torch_project/weights.py",
    "tests/conftest.py",
    "tests/helpers.py",
    "tests/test_after_training.py",
    "tests/test_architecture.py",
    "tests/test_baseline.py",
    "tests/test_bring_your_own.py",
    "tests/test_checkpoint.py",
    "tests/test_cli.py",
    "tests/test_config.py",
    "tests/test_data.py",
    "tests/test_distributed.py",
    "tests/test_environment_hook.py",
    "tests/test_fine_tuning.py",
    "tests/test_image_folder.py",
    "tests/test_manifest.py",
    "tests/test_model_sanity.py",
    "tests/test_remote_storage.py",
    "tests/test_run_folder.py",
    "tests/test_search.py",
    "tests/test_sweep.py",
    "tests/test_tag_run.py",
    "tests/test_telemetry.py",
    "tests/test_tracking.py",
    "tests/test_train.py",
    "tests/test_training_knobs.py",
    "tests/test_workflow_scripts.py",
}
# Files present only when the yes/no option is yes (the default bake has docker and gpu_ci on).
NOTEBOOK = "notebooks/01_explore_data.ipynb"
FILES_FOR_OPTION = {
    "docker": {".dockerignore", "Dockerfile", ".github/workflows/docker.yml",
               "scripts/start_jupyter.sh"},
    # Both workflows need the self-hosted GPU runner.
    "gpu_ci": {".github/workflows/gpu.yml", ".github/workflows/train-on-label.yml"},
    "include_notebooks": {NOTEBOOK},
}  # fmt: skip
DEFAULT_PACKAGE = "my_torch_project"


# Rows that also get the full treatment, by session id -> row of CHECK_COMBINATIONS. Each
# tracking backend adds its own dependency and writes its own files.
FULL_SUITE = "default"
SMOKE_COMBINATIONS = {
    "default": "default",
    "tensorboard": "tracking-tensorboard",
    "wandb": "tracking-wandb",
    "mlflow": "tracking-mlflow",
    "gitlab": "gitlab",
}
# The tests a smoke row runs besides its lock check (the default row runs them all): those
# that read what the row changes. Tracking rows: the backend; the GitLab row: its bot scripts.
TRACKING_TESTS = ["tests/test_tracking.py", "tests/test_config.py"]
SMOKE_TESTS = {
    "gitlab": ["tests/test_gitlab_automation.py", "tests/test_workflow_scripts.py"],
}


def as_answers(row: str) -> list[str]:
    """`key=value` arguments for `python -m tests.baking` for one row of CHECK_COMBINATIONS."""
    return [f"{key}={value}" for key, value in CHECK_COMBINATIONS[row].items()]


def row_answers(row: str) -> dict[str, Answer]:
    """One row of CHECK_COMBINATIONS as answers for tests.baking.bake (yes/no as booleans)."""
    return {key: parse_answer(value) for key, value in CHECK_COMBINATIONS[row].items()}


def expected_files(answers: dict[str, Answer], package: str = DEFAULT_PACKAGE) -> set[str]:
    """The exact file set of a bake with these answers, whose package is `package`."""
    files = {name.replace(DEFAULT_PACKAGE, package) for name in DEFAULT_FILES}
    for option, paths in FILES_FOR_OPTION.items():
        if answers.get(option) is True:
            files |= paths
        elif answers.get(option) is False:
            files -= paths
    if answers.get("ci_platform") == "gitlab":
        files = {name for name in files if name not in GITHUB_ONLY_FILES}
        files = {name for name in files if not name.startswith(".github/")} | GITLAB_FILES
    return files


def same_python_together(rows: list[str]) -> list[list[str]]:
    """The rows as jobs for the lanes, each job's rows one after another in one lane. Rows that
    ask for the same Python version (other than the default) share a job: mypy keeps a cache
    per target version, which the first such row in a lane fills (18 s of CPU, where the next
    row of that version takes 4 s), so a second row of it in another lane would fill it again."""
    jobs: list[list[str]] = []
    by_version: dict[str, list[str]] = {}
    for row in rows:
        version = CHECK_COMBINATIONS[row].get("python_version")
        if version is None:
            jobs.append([row])
        elif version in by_version:
            by_version[version].append(row)
        else:
            by_version[version] = [row]
            jobs.append(by_version[version])
    return jobs
