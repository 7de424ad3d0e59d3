"""The scripts behind .gitlab-ci.yml's bot jobs, run here for real.

scripts/merge_request_training.py reads training requests from merge request descriptions;
scripts/gitlab_api.py talks to GitLab's REST API, here to a local HTTP server that answers as
GitLab does and records every call, and pushes to a local bare repository.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from {{ cookiecutter.package_name }}.config import load_config


@pytest.fixture
def scripts(project_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/ on sys.path, as `python scripts/<name>.py` has it."""
    monkeypatch.syspath_prepend(str(project_root / "scripts"))


@pytest.fixture
def training(scripts: None) -> ModuleType:
    return importlib.import_module("merge_request_training")


@pytest.fixture
def gitlab_api(scripts: None) -> ModuleType:
    return importlib.import_module("gitlab_api")


def description(block: str) -> str:
    """A merge request description as the Training template lays it out (CRLF, as browsers send)."""
    text = f"## Training request\n\n<!-- help -->\n\n{block}\n## Goal\n\nSee the loss fall.\n"
    return text.replace("\n", "\r\n")


def test_a_request_reaches_the_trainer_as_checked_arguments(
    training: ModuleType, project_root: Path
) -> None:
    body = description(
        "```training\nconfig: configs/smoke.yaml\n"
        "overrides: train.epochs=2 optim.lr=3e-4\noverrides: seed=1\n```\n"
    )
    lines, accepted = training.request_lines({"CI_MERGE_REQUEST_DESCRIPTION": body}, project_root)
    assert accepted
    assert lines == [
        "CONFIG=configs/smoke.yaml",
        'OVERRIDES_JSON=["train.epochs=2", "optim.lr=3e-4", "seed=1"]',
        "PROBLEM=",
    ]
    overrides = json.loads(lines[1].removeprefix("OVERRIDES_JSON="))
    load_config(project_root / "configs/smoke.yaml", overrides)  # the trainer's own parsing


def test_the_merge_request_template_holds_a_valid_request(
    training: ModuleType, project_root: Path
) -> None:
    template = project_root / ".gitlab/merge_request_templates/Training.md"
    request = training.parse_description(template.read_text(encoding="utf-8"), False, project_root)
    assert request.config == "configs/default.yaml"


@pytest.mark.parametrize(
    ("body", "truncated", "reason"),
    [
        ("Please train.", False, "no ```training block in the description"),
        ("Please train.", True, "in the first 2700 characters"),
        ("```training\nconfig: configs/smoke.yaml\n```\n" * 2, False, "2 ```training blocks"),
        ("```training\noverrides: seed=1\n```\n", False, "has no `config:` line"),
        ("```training\nconfig: ../x.yaml\n```\n", False, "must be a file under configs/"),
        ("```training\nconfig: configs/missing.yaml\n```\n", False, "does not exist"),
        ("```training\nconfig: configs/smoke.yaml\nresume: auto\n```\n", False, "line 2 of"),
        (
            "```training\nconfig: configs/smoke.yaml\nconfig: configs/default.yaml\n```\n",
            False,
            "names `config:` twice",
        ),
        (
            "```training\nconfig: configs/smoke.yaml\noverrides: resume=auto\n```\n",
            False,
            "`resume` cannot be set from an issue",
        ),
        (
            "```training\nconfig: configs/smoke.yaml\noverrides: seed=1;id\n```\n",
            False,
            "override 1 is not key=value",
        ),
        (
            "```training\nconfig: configs/smoke.yaml\noverrides: train.epochs=9999\n```\n",
            False,
            "train.epochs may be a number up to 500",
        ),
    ],
)
def test_requests_that_may_not_run_say_why(
    training: ModuleType, project_root: Path, body: str, truncated: bool, reason: str
) -> None:
    with pytest.raises(training.RequestError, match=re.escape(reason)):
        training.parse_description(description(body), truncated, project_root)


def test_a_refused_request_fails_its_job_with_one_line(
    training: ModuleType,
    project_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(project_root)
    environment = {"CI_MERGE_REQUEST_DESCRIPTION": "no block"}
    assert training.main(["request"], environment) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[:2] == ["CONFIG=", "OVERRIDES_JSON=[]"]
    assert out.splitlines()[2].startswith("PROBLEM=no ```training block")
    assert err.startswith("training request refused: no ```training block")


def test_the_note_names_the_result_and_the_metrics(training: ModuleType, tmp_path: Path) -> None:
    metrics = {"val_loss": 0.123456, "val_accuracy": 0.9}
    (tmp_path / "run.json").write_text(json.dumps({"final_metrics": metrics}), encoding="utf-8")
    note = training.note({
        "CONFIG": "configs/smoke.yaml", "OVERRIDES_JSON": '["seed=1"]', "PROBLEM": "",
        "TRAIN_RESULT": "success", "OUTPUT_DIR": str(tmp_path),
        "CI_PIPELINE_URL": "https://gitlab.example/g/p/-/pipelines/7",
    })  # fmt: skip
    assert note.startswith("Training finished. Run: https://gitlab.example/g/p/-/pipelines/7\n")
    assert "Request: `--config configs/smoke.yaml seed=1`" in note
    assert "| val_loss | 0.1235 |" in note
    failed = training.note({"CONFIG": "configs/smoke.yaml", "TRAIN_RESULT": "failed"})
    assert failed.startswith("Training ended: failed.")
    refused = training.note({"CONFIG": "", "PROBLEM": "`resume` cannot be set", "TRAIN_RESULT": ""})
    assert refused.startswith("The training request was not started: `resume` cannot be set.")


class FakeGitLab(BaseHTTPRequestHandler):
    """Answers like GitLab's REST API for the calls the scripts make; records each one."""

    calls: list[tuple[str, str, str, Any]]
    labels: list[dict[str, Any]]
    merge_requests: list[dict[str, Any]]

    def answer(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_call(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length)) if length else None
        token = self.headers.get("PRIVATE-TOKEN", "")
        self.calls.append((self.command, self.path, token, payload))
        if token != "secret-token":
            self.answer(401, {"message": "401 Unauthorized"})
        elif self.path.startswith("/api/v4/projects/42/labels?"):
            self.answer(200, self.labels)
        elif self.path.startswith("/api/v4/projects/42/merge_requests?"):
            self.answer(200, self.merge_requests)
        elif self.command == "POST" and self.path == "/api/v4/projects/42/merge_requests":
            self.answer(201, {"iid": 9, **(payload or {})})
        else:
            self.answer(201 if self.command == "POST" else 200, payload or {})

    do_GET = do_POST = do_PUT = handle_call  # noqa: N815 (http.server's names)

    def log_message(self, *_: object) -> None:  # keep pytest's output clean
        pass


@pytest.fixture
def fake_gitlab() -> Iterator[type[FakeGitLab]]:
    handler = type("Handler", (FakeGitLab,), {"calls": [], "labels": [], "merge_requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_port}/api/v4"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    thread.join()


def ci_environment(fake_gitlab: type[FakeGitLab], **extra: str) -> dict[str, str]:
    return {
        "CI_API_V4_URL": fake_gitlab.url,  # type: ignore[attr-defined]
        "CI_PROJECT_ID": "42",
        "CI_MERGE_REQUEST_IID": "5",
        "CI_DEFAULT_BRANCH": "main",
        **extra,
    }


def test_the_note_is_posted_on_the_merge_request(
    gitlab_api: ModuleType, fake_gitlab: type[FakeGitLab], tmp_path: Path
) -> None:
    note = tmp_path / "note.md"
    note.write_text("Training finished.\n", encoding="utf-8")
    environment = ci_environment(fake_gitlab, REPORTER_BOT_TOKEN="secret-token")
    assert gitlab_api.main(["merge-request-note", str(note)], environment) == 0
    assert fake_gitlab.calls == [
        ("POST", "/api/v4/projects/42/merge_requests/5/notes", "secret-token",
         {"body": "Training finished.\n"}),
    ]  # fmt: skip


def test_a_missing_or_refused_token_names_the_fix(
    gitlab_api: ModuleType,
    fake_gitlab: type[FakeGitLab],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    note = tmp_path / "note.md"
    note.write_text("Training finished.\n", encoding="utf-8")
    assert gitlab_api.main(["merge-request-note", str(note)], ci_environment(fake_gitlab)) == 1
    err = capsys.readouterr().err
    assert "gitlab: REPORTER_BOT_TOKEN is not set. Fix: Settings > Access tokens" in err
    assert "Training finished." in err  # the result stays in the job log
    wrong = ci_environment(fake_gitlab, REPORTER_BOT_TOKEN="wrong")
    assert gitlab_api.main(["merge-request-note", str(note)], wrong) == 1
    assert "answered 401 Unauthorized" in capsys.readouterr().err


def test_labels_are_created_and_updated_never_deleted(
    gitlab_api: ModuleType, fake_gitlab: type[FakeGitLab], project_root: Path
) -> None:
    wanted = yaml.safe_load((project_root / "labels.yml").read_text(encoding="utf-8"))
    first, second, *rest = wanted
    fake_gitlab.labels = [
        {"id": 1, "name": first["name"], "color": f"#{first['color'].upper()}",
         "description": first["description"]},
        {"id": 2, "name": second["name"], "color": "#000000", "description": "old"},
        {"id": 3, "name": "made-by-hand", "color": "#ffffff", "description": ""},
    ]  # fmt: skip
    environment = ci_environment(fake_gitlab, REPORTER_BOT_TOKEN="secret-token")
    assert gitlab_api.main(["sync-labels", str(project_root / "labels.yml")], environment) == 0
    methods = [(method, path) for method, path, _, _ in fake_gitlab.calls]
    assert methods[0] == ("GET", "/api/v4/projects/42/labels?per_page=100&page=1")
    name = second["name"].replace(":", "%3A")
    assert methods[1] == ("PUT", f"/api/v4/projects/42/labels/{name}")
    assert methods[2:] == [("POST", "/api/v4/projects/42/labels")] * len(rest)
    assert fake_gitlab.calls[2][3] == {
        "name": rest[0]["name"], "color": f"#{rest[0]['color']}",
        "description": rest[0]["description"],
    }  # fmt: skip


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, check=True
    ).stdout


def test_a_template_update_is_pushed_and_opened_as_a_merge_request(
    gitlab_api: ModuleType,
    fake_gitlab: type[FakeGitLab],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = tmp_path / "server"
    remote = server / "group" / "project.git"
    remote.mkdir(parents=True)
    git(remote, "init", "--quiet", "--bare")
    clone = tmp_path / "clone"
    clone.mkdir()
    git(clone, "init", "--quiet", "-b", "main")
    (clone / "README.md").write_text("old\n", encoding="utf-8")
    git(clone, "add", "README.md")
    git(clone, "commit", "--quiet", "-m", "chore: start")
    update = tmp_path / "update"
    update.mkdir()
    (clone / "README.md").write_text("new\n", encoding="utf-8")
    (update / "update.patch").write_text(git(clone, "diff"), encoding="utf-8")
    git(clone, "checkout", "--quiet", "README.md")
    (update / "title.txt").write_text("chore: update from torch-template v0.2.0\n")
    (update / "pr-body.md").write_text("## What the template changed\n", encoding="utf-8")
    environment = ci_environment(
        fake_gitlab, TEMPLATE_UPDATE_TOKEN="secret-token",
        CI_SERVER_URL=server.as_uri(), CI_PROJECT_PATH="group/project",
    )  # fmt: skip
    monkeypatch.chdir(clone)
    assert gitlab_api.main(["template-update-merge-request", str(update)], environment) == 0
    assert git(remote, "show", "chore/template-update:README.md") == "new\n"
    assert git(remote, "log", "-1", "--format=%s", "chore/template-update") == (
        "chore: update from torch-template v0.2.0\n"
    )
    created = fake_gitlab.calls[-1]
    assert created[:2] == ("POST", "/api/v4/projects/42/merge_requests")
    assert created[3] == {
        "title": "chore: update from torch-template v0.2.0",
        "description": "## What the template changed\n",
        "source_branch": "chore/template-update", "target_branch": "main",
        "labels": "type:chore", "remove_source_branch": True,
    }  # fmt: skip


def test_an_up_to_date_project_opens_nothing(
    gitlab_api: ModuleType, fake_gitlab: type[FakeGitLab], tmp_path: Path
) -> None:
    assert gitlab_api.main(["template-update-merge-request", str(tmp_path)], {}) == 0
    assert fake_gitlab.calls == []
{%- if cookiecutter.docker and cookiecutter.gpu_ci %}


def test_gpu_jobs_run_in_the_image_the_dockerfile_builds_on(project_root: Path) -> None:
    """Renovate moves the Dockerfile's FROM and the GPU jobs' image in one merge request: both
    must name the same image, or GPU results come from another environment than the image."""
    dockerfile = (project_root / "Dockerfile").read_text(encoding="utf-8")
    [base] = [
        line.split()[1] for line in dockerfile.splitlines()
        if line.startswith("FROM ") and " AS runtime" in line
    ]  # fmt: skip
    pipeline = yaml.safe_load((project_root / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    images = {job["image"] for name, job in pipeline.items() if name.startswith(".gpu")}
    assert images == {base}, ".gitlab-ci.yml's GPU image differs from the Dockerfile's FROM"
{%- endif %}
