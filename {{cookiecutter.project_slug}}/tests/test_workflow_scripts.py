"""scripts/training_request.py and scripts/gpu_access.py: the steps of the GPU workflows, run
here for real. Where a step asks GitHub's API, the test hands it the answer GitHub would give
(a `gh` stand-in on PATH for the workflows' shell steps): the API cannot be reached from here."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

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


def load_script(project_root: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """scripts/<name>.py, which is not part of the installed package."""
    # As when the workflow runs `python scripts/<name>.py`: its folder is on sys.path.
    monkeypatch.syspath_prepend(str(project_root / "scripts"))
    path = project_root / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def training_request(project_root: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_script(project_root, "training_request", monkeypatch)


@pytest.fixture
def gpu_access(project_root: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_script(project_root, "gpu_access", monkeypatch)


def issue_body(
    config: str = "configs/smoke.yaml",
    overrides: str = "_No response_",
    goal: str = "See whether the loss falls.",
) -> str:
    """An issue body as GitHub renders the Training task form (CRLF line ends, as it sends)."""
    return (
        f"### Config file\r\n\r\n{config}\r\n\r\n### Overrides\r\n\r\n{overrides}\r\n\r\n"
        f"### Goal\r\n\r\n{goal}\r\n"
    )


# What `gh api repos/OWNER/REPO/environments/NAME` prints, trimmed to the fields that matter.
REVIEWED = {
    "name": "gpu-train",
    "protection_rules": [
        {"type": "branch_policy"},
        {"type": "required_reviewers", "prevent_self_review": True,
         "reviewers": [{"type": "User", "reviewer": {"login": "maintainer"}}]},
    ],
}  # fmt: skip
UNREVIEWED = {"name": "gpu-train", "protection_rules": []}
NOT_FOUND = {"message": "Not Found", "status": "404"}


@pytest.fixture
def reviewed(tmp_path: Path) -> dict[str, str]:
    """The validate step's environment for a gpu-train environment that has reviewers."""
    answer = tmp_path / "environment.json"
    answer.write_text(json.dumps(REVIEWED), encoding="utf-8")
    return {"ENVIRONMENT_ANSWER": str(answer), "VISIBILITY": "public"}


def result_comment(body: str, request: str, author: str = "github-actions[bot]") -> object:
    """A result comment of an earlier accepted request, as the comments API lists it."""
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return {
        "user": {"login": author, "type": "Bot" if author.endswith("[bot]") else "User"},
        "html_url": "https://github.com/o/r/issues/7#issuecomment-1",
        "body": (
            f"Training finished. Run: u\n\nRequest: `{request}`\nIssue body: sha256 `{digest}`\n"
        ),
    }


def test_an_empty_overrides_field_reaches_the_trainer_as_no_arguments(
    training_request: ModuleType,
    project_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    reviewed: dict[str, str],
) -> None:
    environment = {
        "ISSUE_BODY": issue_body(), "PERMISSION": "write", "SENDER": "octocat", **reviewed
    }  # fmt: skip
    outputs = dict(
        line.split("=", 1) for line in training_request.validate(environment, project_root)
    )
    digest = hashlib.sha256(issue_body().encode("utf-8")).hexdigest()
    assert outputs == {
        "config": "configs/smoke.yaml", "overrides": "[]", "body_sha256": digest,
        "changed_since": "", "problem": "",
    }  # fmt: skip

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
        f"**Training request:** `--config configs/smoke.yaml`\n\nIssue body: sha256 `{digest}`\n"
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
        ("train.epochs=inf", "train.epochs='inf' should be of type int"),
        ("train.epochs=nan", "train.epochs='nan' should be of type int"),
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
        (issue_body(), "read", "octocat has read access; a GPU run needs write access"),
        (issue_body(), "", "octocat has no access"),
        ("Please train something.", "write", "open the issue with the Training task form"),
        (issue_body(config="../secrets.yaml"), "write", "must be a file under configs/"),
        (issue_body(config="configs/../../x.yaml"), "write", "must be a file under configs/"),
        (issue_body(config="configs/missing.yaml"), "write", "does not exist on the default"),
        (
            issue_body(overrides="seed=1\r\n\r\n### Config file\r\n\r\nconfigs/default.yaml"),
            "write",
            "line 9 of the issue (`### Config file`) is a heading the form does not write",
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
    reviewed: dict[str, str],
) -> None:
    environment = {
        "ISSUE_BODY": issue_body(overrides="resume=auto"), "PERMISSION": "write", **reviewed
    }  # fmt: skip
    outputs = training_request.validate(environment, project_root)
    assert outputs[:2] == ["config=", "overrides=[]"]
    assert outputs[4].startswith("problem=`resume` cannot be set from an issue")
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


# --- What a reviewer reads is what runs ---------------------------------------------------------

# The attack a review found: the real Overrides hidden in an HTML comment (invisible on GitHub),
# a decoy heading indented by one space (rendered as a heading, skipped by a column-0 parser).
HIDDEN_REAL_REQUEST = (
    "### Config file\r\n\r\nconfigs/smoke.yaml\r\n\r\n### Goal\r\n\r\nSee whether the loss falls."
    "\r\n\r\n ### Overrides\r\n\r\ntrain.epochs=3\r\n\r\n<!--\r\n### Overrides\r\n\r\n"
    "train.epochs=500 data.num_train=1000000 train.batch_size=1 model.width=1024\r\n\r\n"
    "### Notes\r\n-->\r\n"
)
# Every body here renders differently from the text that would run, or not as the form writes
# it; each is refused with the reason shown.
HOSTILE_BODIES = {
    "hidden comment and indented decoy": (HIDDEN_REAL_REQUEST, "holds `<!`"),
    "indented decoy heading": (
        issue_body(overrides="train.epochs=500", goal="Short.\r\n\r\n ### Overrides\r\n\r\nx=1"),
        "line 13 of the issue (`### Overrides`) is a heading the form does not write",
    ),
    "collapsed details": (
        issue_body(goal="<details><summary>log</summary>\r\n\r\nseed=1\r\n</details>"),
        "holds `<d`",
    ),
    "picture of a form": (issue_body(goal="![### Overrides seed=3](https://x/y.png)"), "`![`"),
    "underlined decoy heading": (
        issue_body(goal="Overrides\r\n---------\r\n\r\ntrain.epochs=3"),
        "line 12 of the issue (`---------`) is a heading",
    ),
    "heading in a list item": (issue_body(goal="- ### Overrides"), "`- ### Overrides`"),
    "heading in a quote": (issue_body(goal="> ### Overrides"), "`> ### Overrides`"),
    "other heading level": (issue_body(goal="## Overrides"), "`## Overrides`"),
    "form heading in a code block": (issue_body(goal="```\r\n### Overrides\r\n```"), "line 12"),
    "tab after the hashes": (
        issue_body().replace("### Overrides", "###\tOverrides"),
        "line 5 of the issue",
    ),
    "trailing blank on a heading": (
        issue_body().replace("### Overrides", "### Overrides "),
        "line 5 of the issue",
    ),
    "zero-width character in a heading": (
        issue_body().replace("### Overrides", "### Over\u200brides"),
        "line 5 of the issue",
    ),
    "headings out of order": (
        issue_body().replace("### Overrides", "### Goal2").replace("### Goal\r", "### Overrides\r"),
        "line 5 of the issue (`### Goal2`)",
    ),
    "a heading missing": (
        issue_body().split("### Goal")[0],
        "no '### Goal' heading: open the issue with the Training task form",
    ),
    "text before the form": ("Hi!\r\n\r\n" + issue_body(), "the issue has text before"),
    "lone carriage return as a line end": (
        issue_body(overrides="seed=1\r### Goal\r\rx"),
        "control characters",
    ),
    "NUL byte": (issue_body(goal="a\x00b"), "control characters"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_a_body_that_renders_differently_from_what_runs_is_refused(
    training_request: ModuleType, project_root: Path, name: str
) -> None:
    body, reason = HOSTILE_BODIES[name]
    with pytest.raises(training_request.RequestError, match=re.escape(reason)):
        training_request.parse_request(body, "write", "octocat", project_root)


def test_the_form_as_github_writes_it_is_read(
    training_request: ModuleType, project_root: Path
) -> None:
    goal = "Compare with #12: a < b, 3 > 2, `code`, *emphasis*\r\n\r\n- one\r\n- two"
    body = issue_body(overrides="train.epochs=20\r\noptim.lr=3e-4", goal=goal)
    assert training_request.form_fields(body) == {
        "Config file": "configs/smoke.yaml",
        "Overrides": "train.epochs=20\noptim.lr=3e-4",
        "Goal": goal.replace("\r\n", "\n"),
    }


# --- One parser: the cap sees the number the trainer will use ----------------------------------


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("train.epochs=0500", "is not a plain decimal number (the trainer reads 320)"),
        ("train.epochs=0x1F4", "(the trainer reads 500)"),
        ("train.epochs=1_000", "(the trainer reads 1000)"),
        ("train.epochs=+5", "(the trainer reads 5)"),
        ("train.epochs=-0", "`train.epochs=-0` reads as 0; write train.epochs=0"),
        ("train.epochs=5e2", "train.epochs='5e2' should be of type int"),
        ("data.num_train=1e6", "data.num_train='1e6' should be of type int"),
        ("train.epochs=500.0", "train.epochs=500.0 should be of type int"),
        ("train.epochs=08", "train.epochs='08' should be of type int"),
        ("seed=0o17", "seed='0o17' should be of type int"),
        ("optim.lr=.inf", "`optim.lr=.inf` is not a plain decimal number; write it"),
        ("optim.lr=-.inf", "`optim.lr=-.inf` is not a plain decimal number"),
        ("optim.lr=.nan", "`optim.lr=.nan` is not a plain decimal number"),
        ("optim.lr=inf", "`optim.lr=inf` is not a plain decimal number"),
        ("optim.lr=nan", "`optim.lr=nan` is not a plain decimal number"),
        ("optim.lr=1e400", "`optim.lr=1e400` is not a plain decimal number"),
        ("optim.weight_decay=1_0.5", "(the trainer reads 10.5)"),
        ("train.compile=yes", "train.compile='yes' should be of type bool"),
        ("model.width=2048", "model.width may be a number up to 1024"),
    ],
)  # fmt: skip
def test_numbers_are_read_as_the_trainer_reads_them(
    training_request: ModuleType, override: str, reason: str
) -> None:
    with pytest.raises(training_request.RequestError, match=re.escape(reason)):
        training_request.check_overrides(override)


@pytest.mark.parametrize(
    "override", ["optim.lr=3e-4", "optim.lr=0.0003", "optim.lr=5e2", "train.epochs=500", "seed=-1"]
)
def test_plain_numbers_pass_and_mean_what_they_say(
    training_request: ModuleType, project_root: Path, override: str
) -> None:
    assert training_request.check_overrides(override) == (override,)
    config = load_config(project_root / "configs" / "smoke.yaml", [override])
    key, value = override.split("=")
    section, _, name = key.rpartition(".")
    used = getattr(getattr(config, section), name) if section else getattr(config, name)
    assert used == float(value)


def test_the_config_parser_needs_no_torch(project_root: Path) -> None:
    """The validate job installs the project without torch and checks overrides with it."""
    code = (
        "import sys; sys.modules['torch'] = None; sys.path.insert(0, 'scripts')\n"
        "import training_request\n"
        "print(training_request.check_overrides('train.epochs=20 optim.lr=3e-4'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=project_root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "train.epochs=20" in result.stdout


# --- The environment must have reviewers; the request is frozen --------------------------------


NO_ONE = {
    "name": "gpu-train",
    "protection_rules": [{"type": "required_reviewers", "reviewers": []}],
}
TIMER = {"name": "gpu-train", "protection_rules": [{"type": "wait_timer", "wait_timer": 5}]}
FORBIDDEN = {"message": "Resource not accessible by integration"}


@pytest.mark.parametrize(
    ("answer", "visibility", "allowed", "reason"),
    [
        (None, "public", "", "protection rules of the environment gpu-train (no answer from the"),
        (NOT_FOUND, "public", "", "the environment gpu-train does not exist"),
        (FORBIDDEN, "public", "", "(Resource not accessible by integration)"),
        (UNREVIEWED, "public", "", "the environment gpu-train has no required reviewers"),
        (UNREVIEWED, "public", "private", "has no required reviewers"),
        (UNREVIEWED, "", "private", "has no required reviewers"),
        (NO_ONE, "public", "", "has no required reviewers"),
        (TIMER, "private", "", "has no required reviewers"),
    ],
)
def test_nothing_runs_unless_the_environment_has_reviewers(
    training_request: ModuleType,
    project_root: Path,
    tmp_path: Path,
    answer: object,
    visibility: str,
    allowed: str,
    reason: str,
) -> None:
    environment = {
        "ISSUE_BODY": issue_body(), "PERMISSION": "admin", "SENDER": "octocat",
        "VISIBILITY": visibility, "UNREVIEWED_ALLOWED": allowed,
    }  # fmt: skip
    if answer is not None:
        (tmp_path / "environment.json").write_text(json.dumps(answer), encoding="utf-8")
        environment["ENVIRONMENT_ANSWER"] = str(tmp_path / "environment.json")
    outputs = dict(
        line.split("=", 1) for line in training_request.validate(environment, project_root)
    )
    assert reason in outputs["problem"]
    assert outputs["config"] == ""


def test_a_private_repository_may_run_without_reviewers_when_its_admin_says_so(
    gpu_access: ModuleType,
) -> None:
    answer = json.dumps(UNREVIEWED)
    assert gpu_access.reviewers_problem("gpu-test", answer, "private", "private") == ""
    assert gpu_access.reviewers_problem("gpu-test", answer, "private", "true") != ""
    assert gpu_access.reviewers_problem("gpu-test", json.dumps(REVIEWED), "public", "") == ""


def comments_answer(tmp_path: Path, *pages: list[object]) -> str:
    """What `gh api --paginate .../comments` prints: one JSON array per page, back to back."""
    path = tmp_path / "comments.json"
    path.write_text("".join(json.dumps(page) for page in pages), encoding="utf-8")
    return str(path)


def test_a_relabelled_issue_whose_body_changed_says_so(
    training_request: ModuleType,
    project_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reviewed: dict[str, str],
) -> None:
    first = issue_body(overrides="train.epochs=3")
    edited = issue_body(overrides="train.epochs=400")
    # A person's comment that copies the bot's lines for the edited body changes nothing.
    spoof = result_comment(edited, "--config configs/smoke.yaml train.epochs=400", "mallory")
    environment = {
        "ISSUE_BODY": edited, "PERMISSION": "write", **reviewed,
        "COMMENTS_ANSWER": comments_answer(
            tmp_path,
            [{"user": {"login": "octocat"}, "body": "thanks", "html_url": "x"}],
            [result_comment(first, "--config configs/smoke.yaml train.epochs=3"), spoof],
        ),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }  # fmt: skip
    outputs = dict(
        line.split("=", 1) for line in training_request.validate(environment, project_root)
    )
    assert outputs["problem"] == ""
    assert outputs["changed_since"] == "https://github.com/o/r/issues/7#issuecomment-1"
    monkeypatch.chdir(project_root)
    training_request.main(["validate"], environment)
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "`--config configs/smoke.yaml train.epochs=400`" in summary
    assert "**The issue body changed since the request accepted before**" in summary
    assert "that one was `--config configs/smoke.yaml train.epochs=3`" in summary
    comment = training_request.report(
        {
            "VALIDATE_RESULT": "success", "TRAIN_RESULT": "success", "CONFIG": outputs["config"],
            "OVERRIDES_JSON": outputs["overrides"], "BODY_SHA256": outputs["body_sha256"],
            "CHANGED_SINCE": outputs["changed_since"],
        }
    )  # fmt: skip
    assert f"Issue body: sha256 `{outputs['body_sha256']}`" in comment
    assert "The issue body had changed since the request accepted before" in comment
    # The comment this run leaves is what the next labelling compares with: same body, no note.
    again = {
        **environment,
        "COMMENTS_ANSWER": comments_answer(tmp_path, [{
            "user": {"login": "github-actions[bot]"}, "body": comment, "html_url": "y",
        }]),
    }  # fmt: skip
    outputs = dict(line.split("=", 1) for line in training_request.validate(again, project_root))
    assert outputs["changed_since"] == ""
    assert outputs["problem"] == ""


def test_unreadable_comments_stop_the_request(
    training_request: ModuleType, project_root: Path, tmp_path: Path, reviewed: dict[str, str]
) -> None:
    path = tmp_path / "comments.json"
    path.write_text(json.dumps({"message": "Resource not accessible"}), encoding="utf-8")
    environment = {
        "ISSUE_BODY": issue_body(), "PERMISSION": "write", **reviewed, "COMMENTS_ANSWER": str(path)
    }  # fmt: skip
    outputs = dict(
        line.split("=", 1) for line in training_request.validate(environment, project_root)
    )
    assert outputs["problem"] == "could not read the issue's comments (Resource not accessible)"


{% raw %}# --- The workflows' own shell steps, with a `gh` that answers as GitHub would -----------------

PATH = os.environ["PATH"]
FAKE_GH = """#!/bin/sh
printf '%s\\n' "$*" >> "$GH_LOG"
case "$*" in
  *collaborators*) printf '%s\\n' "$FAKE_PERMISSION" ;;
  *environments/*) cat "$FAKE_ENVIRONMENT"; [ -n "$FAKE_ENVIRONMENT_OK" ] || exit 1 ;;
  *comments*) printf '[]' ;;
  "workflow run"*) ;;
  *) echo "unexpected gh $*" >&2; exit 2 ;;
esac
"""
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def workflow_jobs(project_root: Path, name: str) -> dict[str, Any]:
    path = project_root / ".github/workflows" / name
    if not path.is_file():
        pytest.skip(f"{name} is not generated (gpu_ci=no)")
    jobs: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))["jobs"]
    return jobs


STEP_OUTPUT = re.compile(r"\$\{\{ steps\.([\w-]+)\.outputs\.(\w+) \}\}")


def run_job_steps(
    job: Mapping[str, Any],
    project_root: Path,
    tmp_path: Path,
    environment: Mapping[str, str],
    answers: Mapping[str, object],
) -> tuple[str | None, str]:
    """Run the job's `run:` steps in order as the runner would (bash -e, pipefail). A step's
    `${{ steps.ID.outputs.KEY }}` is what step ID wrote to $GITHUB_OUTPUT; any other expression
    is `environment`'s value for that variable. Returns the failed step's name and output (None:
    all passed) and everything the steps wrote to $GITHUB_OUTPUT."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    gh = bin_dir / "gh"
    gh.write_text(FAKE_GH, encoding="utf-8")
    gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
    environment_answer: Any = answers.get("environment", REVIEWED)
    environment_file = tmp_path / "environment-answer.json"
    environment_file.write_text(json.dumps(environment_answer), encoding="utf-8")
    base = {
        "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), PATH]),
        "GH_LOG": str(tmp_path / "gh.log"), "RUNNER_TEMP": str(tmp_path),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_SHA": environment.get("GITHUB_SHA", ""),
        "FAKE_PERMISSION": str(answers.get("permission", "write")),
        "FAKE_ENVIRONMENT": str(environment_file),
        "FAKE_ENVIRONMENT_OK": "" if "message" in environment_answer else "1",
    }  # fmt: skip
    outputs: dict[str, dict[str, str]] = {}
    written = ""
    steps = job["steps"]
    assert isinstance(steps, list)
    for number, step in enumerate(steps):
        if "run" not in step:
            continue
        step_environment = {}
        for key, value in step.get("env", {}).items():
            reference = STEP_OUTPUT.fullmatch(str(value))
            if reference:
                step_environment[key] = outputs.get(reference[1], {}).get(reference[2], "")
            else:
                step_environment[key] = (
                    environment.get(key, "") if "${{" in str(value) else str(value)
                )
        output = tmp_path / f"output-{number}"
        output.write_text("", encoding="utf-8")
        # The validate job's project environment: here, the interpreter running these tests.
        script = step["run"].replace(".venv/bin/python", sys.executable)
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=project_root, env={**base, **step_environment, "GITHUB_OUTPUT": str(output)},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        text = output.read_text(encoding="utf-8")
        written += text
        outputs[str(step.get("id", number))] = dict(
            line.split("=", 1) for line in text.splitlines() if "=" in line
        )
        if result.returncode != 0:
            return f"{step.get('name', number)}: {result.stdout}{result.stderr}", written
    return None, written


def gh_calls(tmp_path: Path) -> str:
    log = tmp_path / "gh.log"
    return log.read_text(encoding="utf-8") if log.is_file() else ""


@pytest.mark.parametrize("permission", ["read", "none", ""])  # triage reads as `read`
def test_a_labeller_without_write_access_starts_no_gpu_run(
    project_root: Path, tmp_path: Path, permission: str
) -> None:
    request = workflow_jobs(project_root, "gpu.yml")["request"]
    environment = {
        "SENDER": "triager",
        "COMMIT": COMMIT,
        "REPOSITORY": "o/r",
        "DEFAULT_BRANCH": "main",
    }
    failed, _ = run_job_steps(
        request, project_root, tmp_path, environment, {"permission": permission}
    )
    assert failed is not None
    assert "triager has" in failed
    assert "a GPU run needs write access" in failed
    assert "workflow run" not in gh_calls(tmp_path)


def test_a_labeller_with_write_access_asks_for_a_run_of_the_head_commit(
    project_root: Path, tmp_path: Path
) -> None:
    request = workflow_jobs(project_root, "gpu.yml")["request"]
    environment = {
        "SENDER": "maintainer",
        "COMMIT": COMMIT,
        "REPOSITORY": "o/r",
        "DEFAULT_BRANCH": "main",
    }
    failed, _ = run_job_steps(request, project_root, tmp_path, environment, {"permission": "write"})
    assert failed is None
    assert f"workflow run gpu.yml --repo o/r --ref main -f commit={COMMIT}" in gh_calls(tmp_path)
    checkout = request["steps"][0]
    assert checkout["with"]["ref"] == "${{ github.event.repository.default_branch }}"


@pytest.mark.parametrize(
    "commit", ["main", "refs/heads/main", "v1.0.0", COMMIT[:7], COMMIT.upper()]
)
def test_the_gpu_test_takes_only_a_full_commit_sha(
    project_root: Path, tmp_path: Path, commit: str
) -> None:
    jobs = workflow_jobs(project_root, "gpu.yml")
    environment = {
        "COMMIT": commit,
        "REPOSITORY": "o/r",
        "VISIBILITY": "public",
        "GITHUB_SHA": COMMIT,
    }
    failed, output = run_job_steps(jobs["check"], project_root, tmp_path, environment, {})
    assert failed is not None
    assert "is not a full commit SHA" in failed
    assert "commit=" not in output


def test_the_gpu_test_checks_out_the_sha_its_check_took(project_root: Path, tmp_path: Path) -> None:
    jobs = workflow_jobs(project_root, "gpu.yml")
    environment = {
        "COMMIT": COMMIT,
        "REPOSITORY": "o/r",
        "VISIBILITY": "public",
        "GITHUB_SHA": "f" * 40,
    }
    failed, output = run_job_steps(jobs["check"], project_root, tmp_path, environment, {})
    assert failed is None
    assert output == f"commit={COMMIT}\n"
    pushed = {**environment, "COMMIT": ""}  # a push to main: the run's own commit
    failed, output = run_job_steps(jobs["check"], project_root, tmp_path, pushed, {})
    assert output == f"commit={'f' * 40}\n"
    gpu = jobs["gpu"]
    assert gpu["needs"] == "check"
    [checkout] = [
        step for step in gpu["steps"] if str(step.get("uses", "")).startswith("actions/checkout@")
    ]
    assert checkout["with"]["ref"] == "${{ needs.check.outputs.commit }}"


@pytest.mark.parametrize("answer", [UNREVIEWED, NOT_FOUND])
def test_the_gpu_test_stops_unless_gpu_test_has_reviewers(
    project_root: Path, tmp_path: Path, answer: object
) -> None:
    jobs = workflow_jobs(project_root, "gpu.yml")
    environment = {"COMMIT": COMMIT, "REPOSITORY": "o/r", "VISIBILITY": "public"}
    failed, _ = run_job_steps(
        jobs["check"], project_root, tmp_path, environment, {"environment": answer}
    )
    assert failed is not None
    assert "::error::the environment gpu-test" in failed
    assert "environments/gpu-test" in gh_calls(tmp_path)


def test_the_validate_job_reads_the_environment_and_the_comments(
    project_root: Path, tmp_path: Path
) -> None:
    validate = dict(workflow_jobs(project_root, "train-on-label.yml")["validate"])
    # The install step needs the network; this test's interpreter has the project installed.
    validate["steps"] = [step for step in validate["steps"] if "uv sync" not in step.get("run", "")]
    environment = {
        "ISSUE_BODY": issue_body(), "SENDER": "maintainer", "REPOSITORY": "o/r", "ISSUE": "7",
        "VISIBILITY": "public", "PERMISSION": "write",
    }  # fmt: skip
    failed, output = run_job_steps(
        validate, project_root, tmp_path, environment, {"environment": UNREVIEWED}
    )
    assert failed is not None
    assert "problem=the environment gpu-train has no required reviewers" in output
    assert "environments/gpu-train" in gh_calls(tmp_path)
    assert "--paginate repos/o/r/issues/7/comments" in gh_calls(tmp_path)


def test_trusted_and_untrusted_gpu_jobs_never_share_a_runner(project_root: Path) -> None:
    """A runner registered with one job's labels can never pick up the other's."""
    trusted = set(workflow_jobs(project_root, "train-on-label.yml")["train"]["runs-on"])
    untrusted = set(workflow_jobs(project_root, "gpu.yml")["gpu"]["runs-on"])
    assert "gpu-trusted" in trusted
    assert "gpu-untrusted" in untrusted
    assert trusted - untrusted
    assert untrusted - trusted{% endraw %}
