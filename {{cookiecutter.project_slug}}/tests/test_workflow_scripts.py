"""scripts/training_request.py: the steps of the "Train on label" workflow, run here for real."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from {{ cookiecutter.package_name }} import train
from {{ cookiecutter.package_name }}.config import load_config

GPU_WORKFLOWS = ("gpu.yml", "train-on-label.yml")  # their jobs run in the Dockerfile's base
# A value the trainer accepts for each key an issue may set (and within its limit).
EXAMPLE_VALUES = {
    "seed": "7",
    "data.name": "synthetic",
    "data.num_train": "2048",
    "data.num_val": "512",
    "data.num_workers": "2",
    "model.name": "mlp",
    "model.width": "64",
    "optim.lr": "3e-4",
    "optim.weight_decay": "0.01",
    "optim.scheduler": "cosine",
    "optim.warmup_steps": "10",
    "optim.grad_clip": "1.0",
    "train.epochs": "20",
    "train.max_steps": "1000",
    "train.batch_size": "128",
    "train.grad_accum_steps": "2",
    "train.amp": "bf16",
    "train.compile": "true",
    "train.deterministic": "false",
    "train.require_loss_decrease": "false",
    "train.log_every": "20",
    "train.eval_every": "100",
    "train.checkpoint_every": "100",
    "train.early_stop_patience": "3",
    "train.early_stop_min_delta": "0.001",
}


@pytest.fixture
def training_request(project_root: Path) -> ModuleType:
    """scripts/training_request.py, which is not part of the installed package."""
    path = project_root / "scripts" / "training_request.py"
    spec = importlib.util.spec_from_file_location("training_request", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def issue_body(config: str = "configs/smoke.yaml", overrides: str = "_No response_") -> str:
    """An issue body as GitHub renders the Training task form (CRLF line ends, as it sends)."""
    return (
        f"### Config file\r\n\r\n{config}\r\n\r\n### Overrides\r\n\r\n{overrides}\r\n\r\n"
        "### Goal\r\n\r\nSee whether the loss falls.\r\n"
    )


def test_an_empty_overrides_field_reaches_the_trainer_as_no_arguments(
    training_request: ModuleType,
    project_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    environment = {"ISSUE_BODY": issue_body(), "PERMISSION": "write", "SENDER": "octocat"}
    outputs = dict(
        line.split("=", 1) for line in training_request.validate(environment, project_root)
    )
    assert outputs == {"config": "configs/smoke.yaml", "overrides": "[]", "problem": ""}

    executed: list[list[str]] = []
    monkeypatch.setattr(training_request.os, "execv", lambda _, argv: executed.append(argv))
    output_dir = str(tmp_path / "run")
    step_environment = {
        "CONFIG": outputs["config"],
        "OVERRIDES_JSON": outputs["overrides"],
        "OUTPUT_DIR": output_dir,
    }
    summary = tmp_path / "summary.md"
    monkeypatch.chdir(project_root)
    training_request.main(["validate"], {**environment, "GITHUB_STEP_SUMMARY": str(summary)})
    assert summary.read_text(encoding="utf-8") == (
        "**Training request:** `--config configs/smoke.yaml`\n"
    )
    assert training_request.main(["train"], step_environment) == 0
    [argv] = executed
    assert argv[1:5] == ["-m", train.__name__, "--config", "configs/smoke.yaml"]
    assert "" not in argv
    assert argv[-1] == f"output_dir={output_dir}"
    config = load_config(project_root / argv[4], argv[5:])  # the trainer's own parsing
    assert config.output_dir == output_dir
    assert config.train.device == "cuda"


def test_overrides_are_split_on_blanks_and_new_lines(
    training_request: ModuleType, project_root: Path
) -> None:
    body = issue_body(overrides="train.epochs=20\r\noptim.lr=3e-4   seed=1")
    assert training_request.parse_request(body, "write", "octocat", project_root) == (
        training_request.TrainingRequest(
            "configs/smoke.yaml", ("train.epochs=20", "optim.lr=3e-4", "seed=1")
        )
    )


def test_every_allowed_key_is_accepted_by_the_trainer(
    training_request: ModuleType, project_root: Path
) -> None:
    assert set(EXAMPLE_VALUES) == set(training_request.ALLOWED_OVERRIDES)
    for key, value in EXAMPLE_VALUES.items():
        assert training_request.check_overrides(f"{key}={value}") == (f"{key}={value}",)
        load_config(project_root / "configs" / "smoke.yaml", [f"{key}={value}"])


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ("resume=/etc/passwd", "override 1 is not key=value"),
        ("resume=auto", "`resume` cannot be set from an issue"),
        ("data.root=elsewhere", "`data.root` cannot be set from an issue"),
        ("output_dir=outputs", "`output_dir` cannot be set from an issue"),
        ("train.device=cpu", "`train.device` cannot be set from an issue"),
        ("train.epochs=100000", "train.epochs may be a number up to 500"),
        ("train.epochs=inf", "train.epochs may be a number up to 500"),
        ("train.epochs=nan", "train.epochs may be a number up to 500"),
        ("train.epochs=2 train.epochs=3", "`train.epochs` is given twice"),
        ("seed=1 optim.lr=$(id)", "override 2 is not key=value"),
        ("seed=1;id", "override 1 is not key=value"),
        ("seed=", "override 1 is not key=value"),
        (" ".join(f"seed={n}" for n in range(21)), "21 overrides; at most 20"),
    ],
)
def test_overrides_outside_the_allow_list_are_refused(
    training_request: ModuleType, project_root: Path, overrides: str, reason: str
) -> None:
    with pytest.raises(training_request.RequestError, match=re.escape(reason)):
        training_request.parse_request(
            issue_body(overrides=overrides), "write", "octocat", project_root
        )


@pytest.mark.parametrize(
    ("body", "permission", "reason"),
    [
        (issue_body(), "read", "octocat has read access; training needs write access"),
        (issue_body(), "", "octocat has no access"),
        ("Please train something.", "write", "open the issue with the Training task form"),
        (issue_body(config="../secrets.yaml"), "write", "must be a file under configs/"),
        (issue_body(config="configs/../../x.yaml"), "write", "must be a file under configs/"),
        (issue_body(config="configs/missing.yaml"), "write", "does not exist on the default"),
        (
            issue_body(overrides="seed=1\r\n\r\n### Config file\r\n\r\nconfigs/default.yaml"),
            "write",
            "two 'Config file' sections",
        ),
    ],
)
def test_requests_that_may_not_run_say_why(
    training_request: ModuleType, project_root: Path, body: str, permission: str, reason: str
) -> None:
    with pytest.raises(training_request.RequestError, match=re.escape(reason)):
        training_request.parse_request(body, permission, "octocat", project_root)


def test_a_refused_request_is_reported_on_one_line(
    training_request: ModuleType,
    project_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    environment = {"ISSUE_BODY": issue_body(overrides="resume=auto"), "PERMISSION": "write"}
    outputs = training_request.validate(environment, project_root)
    assert outputs[:2] == ["config=", "overrides=[]"]
    assert outputs[2].startswith("problem=`resume` cannot be set from an issue")
    summary = tmp_path / "summary.md"
    monkeypatch.chdir(project_root)
    training_request.main(["validate"], {**environment, "GITHUB_STEP_SUMMARY": str(summary)})
    assert summary.read_text(encoding="utf-8").startswith("**Not started:** `resume` cannot")


def test_metrics_come_from_run_json(
    training_request: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    training_request.main(["metrics"], {"OUTPUT_DIR": str(tmp_path)})
    assert capsys.readouterr().out == "metrics=null\n"
    metrics = {"val_loss": 0.25, "val_accuracy": 0.9}
    (tmp_path / "run.json").write_text(json.dumps({"final_metrics": metrics}), encoding="utf-8")
    training_request.main(["metrics"], {"OUTPUT_DIR": str(tmp_path)})
    assert capsys.readouterr().out == f"metrics={json.dumps(metrics)}\n"


def test_report_names_the_request_the_result_and_the_metrics(
    training_request: ModuleType,
) -> None:
    body = training_request.report(
        {
            "VALIDATE_RESULT": "success",
            "TRAIN_RESULT": "success",
            "CONFIG": "configs/smoke.yaml",
            "OVERRIDES_JSON": "[]",
            "METRICS": json.dumps({"val_loss": 0.123456, "note": "a|b"}),
            "RUN_URL": "https://github.com/o/r/actions/runs/1",
        }
    )
    assert body.startswith("Training finished. Run: https://github.com/o/r/actions/runs/1\n")
    assert "Request: `--config configs/smoke.yaml`" in body
    assert "| val_loss | 0.1235 |" in body
    assert "| note | a\\|b |" in body


def test_report_of_a_refused_or_failed_request(training_request: ModuleType) -> None:
    refused = training_request.report(
        {"VALIDATE_RESULT": "failure", "PROBLEM": "`resume` cannot be set", "RUN_URL": "u"}
    )
    assert refused == (
        "The training request was not started: `resume` cannot be set.\n\nDetails: u\n"
    )
    failed = training_request.report(
        {"VALIDATE_RESULT": "success", "TRAIN_RESULT": "failure", "METRICS": "null"}
    )
    assert failed.startswith("Training ended: failure.")
    assert "| metric |" not in failed


def test_gpu_jobs_run_in_the_image_the_dockerfile_builds_on(project_root: Path) -> None:
    """Dependabot bumps the Dockerfile's FROM line only: the GPU jobs must follow it."""
    dockerfile = project_root / "Dockerfile"
    workflows = [project_root / ".github/workflows" / name for name in GPU_WORKFLOWS]
    if not dockerfile.is_file() or not all(path.is_file() for path in workflows):
        pytest.skip("needs the Dockerfile and the GPU workflows (docker=yes, gpu_ci=yes)")
    [base] = [
        line.split()[1] for line in dockerfile.read_text(encoding="utf-8").splitlines()
        if line.startswith("FROM ") and " AS runtime" in line
    ]  # fmt: skip
    for path in workflows:
        jobs = yaml.safe_load(path.read_text(encoding="utf-8"))["jobs"]
        images = {job["container"]["image"] for job in jobs.values() if "container" in job}
        assert images == {base}, f"{path.name}: container image differs from the Dockerfile's FROM"
