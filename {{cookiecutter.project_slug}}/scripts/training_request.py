"""The steps of .github/workflows/train-on-label.yml, here so that pytest can run them.

An issue made with the "Training task" form and labelled `task:training` + `gpu:required` asks
for a training run. Each job of the workflow calls one subcommand; all read the environment
variables the workflow sets and print `key=value` lines for $GITHUB_OUTPUT (or a comment body):

  validate  the labeller may train, the form names a config under configs/ and only allowed
            overrides within their limits -> config=, overrides= (JSON), problem= (empty if fine)
  train     replaces itself with `python -m <package>.train ...` built from what validate printed
  metrics   the final metrics from OUTPUT_DIR/run.json -> metrics= (JSON, or null)
  report    the issue comment: what ran, how it ended, the metrics, the link to the run

The issue text reaches the trainer only as checked `key=value` arguments, never through a shell.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "{{ cookiecutter.package_name }}"
CONFIG_FIELD = "Config file"
OVERRIDES_FIELD = "Overrides"
FORM_FIELDS = (CONFIG_FIELD, OVERRIDES_FIELD, "Goal")  # .github/ISSUE_TEMPLATE/training.yml
NO_RESPONSE = "_No response_"  # what GitHub writes for an optional field left empty
CONFIG_PATTERN = re.compile(r"configs/[A-Za-z0-9_-][A-Za-z0-9_.-]*\.ya?ml")
OVERRIDE_PATTERN = re.compile(r"(?P<key>[a-z_]+(?:\.[a-z_]+)*)=(?P<value>[A-Za-z0-9_.+-]+)")
MAX_OVERRIDES = 20
WRITE_ACCESS = ("admin", "maintain", "write")
# The keys an issue may set, with the largest value each may ask for (None: any value the
# trainer accepts). Everything else stays as the config file says: where data is read from
# (data.root), where the run writes (output_dir), what it resumes (resume), the device, the time
# limit and tracking. The caps bound what one request can cost on the shared GPU machine.
ALLOWED_OVERRIDES: dict[str, int | None] = {
    "seed": None,
    "data.name": None,
    "data.num_train": 1_000_000,
    "data.num_val": 100_000,
    "data.num_workers": 16,
    "model.name": None,
    "model.width": 1024,
    "optim.lr": None,
    "optim.weight_decay": None,
    "optim.scheduler": None,
    "optim.warmup_steps": None,
    "optim.grad_clip": None,
    "train.epochs": 500,
    "train.max_steps": 1_000_000,
    "train.batch_size": 4096,
    "train.grad_accum_steps": 64,
    "train.amp": None,
    "train.compile": None,
    "train.deterministic": None,
    "train.require_loss_decrease": None,
    "train.log_every": None,
    "train.eval_every": None,
    "train.checkpoint_every": None,
    "train.early_stop_patience": None,
    "train.early_stop_min_delta": None,
}
# The job's timeout-minutes is 360: stop half an hour earlier with a checkpoint (exit 124), so
# the uploaded artifact holds last.pt and there is time left to upload it.
TIME_LIMIT_MINUTES = 330


class RequestError(ValueError):
    """A request that must not run; the message says why in one line, for the issue comment."""


@dataclass(frozen=True)
class TrainingRequest:
    config: str
    overrides: tuple[str, ...]


def form_fields(body: str) -> dict[str, str]:
    """The fields of an issue form: GitHub renders each as `### Label`, then its value."""
    fields: dict[str, str] = {}
    label: str | None = None
    lines: list[str] = []
    for line in [*body.replace("\r\n", "\n").split("\n"), "### "]:
        if not line.startswith("### "):
            lines.append(line)
            continue
        if label in FORM_FIELDS and label in fields:
            # A second "### Config file" typed into a later field must not replace the first.
            raise RequestError(f"the issue has two '{label}' sections; keep the form's own")
        if label is not None:
            value = "\n".join(lines).strip()
            fields[label] = "" if value == NO_RESPONSE else value
        label, lines = line[4:].strip(), []
    return fields


def check_overrides(text: str) -> tuple[str, ...]:
    """`key=value` pairs separated by blanks; an empty field is no overrides at all."""
    overrides = tuple(text.split())
    if len(overrides) > MAX_OVERRIDES:
        raise RequestError(f"{len(overrides)} overrides; at most {MAX_OVERRIDES} are allowed")
    seen: set[str] = set()
    for position, override in enumerate(overrides, start=1):
        match = OVERRIDE_PATTERN.fullmatch(override)
        if match is None:
            raise RequestError(
                f"override {position} is not key=value of letters, digits and . _ + -"
            )
        key, value = match["key"], match["value"]
        if key not in ALLOWED_OVERRIDES:
            raise RequestError(
                f"`{key}` cannot be set from an issue; allowed: {', '.join(ALLOWED_OVERRIDES)}"
            )
        if key in seen:
            raise RequestError(f"`{key}` is given twice")
        seen.add(key)
        limit = ALLOWED_OVERRIDES[key]
        if limit is not None and not within(value, limit):
            raise RequestError(f"`{override}`: {key} may be a number up to {limit}")
    return overrides


def within(value: str, limit: int) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and number <= limit


def parse_request(body: str, permission: str, sender: str, root: Path) -> TrainingRequest:
    """The request in an issue body, or RequestError with the reason it may not run."""
    if permission not in WRITE_ACCESS:
        raise RequestError(f"{sender} has {permission or 'no'} access; training needs write access")
    fields = form_fields(body)
    if CONFIG_FIELD not in fields:
        raise RequestError(f"no '{CONFIG_FIELD}' field: open the issue with the Training task form")
    config = fields[CONFIG_FIELD]
    if not CONFIG_PATTERN.fullmatch(config):
        raise RequestError("the config must be a file under configs/, like configs/default.yaml")
    if not (root / config).is_file():
        raise RequestError(f"`{config}` does not exist on the default branch")
    return TrainingRequest(config, check_overrides(fields.get(OVERRIDES_FIELD, "")))


def training_command(request: TrainingRequest, output_dir: str) -> list[str]:
    """The trainer's argv: every element one `key=value`, none empty (no overrides: none)."""
    return [
        sys.executable, "-m", f"{PACKAGE}.train", "--config", request.config,
        *request.overrides,
        "train.device=cuda", f"train.time_limit_minutes={TIME_LIMIT_MINUTES}",
        f"output_dir={output_dir}",
    ]  # fmt: skip


def request_from_outputs(config: str, overrides_json: str) -> TrainingRequest:
    """What validate printed, checked again: the train job trusts no string it is handed."""
    overrides = json.loads(overrides_json or "[]")
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        raise RequestError("OVERRIDES_JSON must be a JSON list of strings")
    if not CONFIG_PATTERN.fullmatch(config):
        raise RequestError("CONFIG must be a file under configs/")
    return TrainingRequest(config, check_overrides(" ".join(overrides)))


def final_metrics(output_dir: Path) -> dict[str, object] | None:
    path = output_dir / "run.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text(encoding="utf-8")).get("final_metrics")
    return metrics if isinstance(metrics, dict) else None


def table_cell(value: object) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def report(environment: Mapping[str, str]) -> str:
    """The issue comment, from the results of the workflow's jobs."""
    run_url = environment.get("RUN_URL", "")
    if environment.get("VALIDATE_RESULT") != "success":
        reason = environment.get("PROBLEM") or "the check of the request did not finish"
        return f"The training request was not started: {reason}.\n\nDetails: {run_url}\n"
    result = environment.get("TRAIN_RESULT", "")
    overrides = json.loads(environment.get("OVERRIDES_JSON") or "[]")
    request = " ".join(["--config", environment.get("CONFIG", ""), *overrides])
    lines = [
        f"Training {'finished' if result == 'success' else f'ended: {result}'}. Run: {run_url}",
        "",
        f"Request: `{request}`",
    ]
    metrics = json.loads(environment.get("METRICS") or "null")
    if isinstance(metrics, dict) and metrics:
        lines += ["", "| metric | value |", "| --- | --- |"]
        lines += [
            f"| {table_cell(name)} | {table_cell(value)} |" for name, value in metrics.items()
        ]
    lines += ["", "Checkpoints and metrics are attached to the run as an artifact."]
    return "\n".join(lines) + "\n"


def validate(environment: Mapping[str, str], root: Path) -> list[str]:
    """`key=value` lines for $GITHUB_OUTPUT; `problem=` is empty when the request may run."""
    try:
        request = parse_request(
            environment.get("ISSUE_BODY", ""),
            environment.get("PERMISSION", ""),
            environment.get("SENDER", "the labeller"),
            root,
        )
    except RequestError as error:
        return ["config=", "overrides=[]", f"problem={' '.join(str(error).split())}"]
    return [f"config={request.config}", f"overrides={json.dumps(request.overrides)}", "problem="]


def request_summary(outputs: Sequence[str]) -> str:
    """Markdown for the run's summary page, which a reviewer of the `gpu-train` environment reads
    before approving: exactly what will run, frozen in the job's outputs."""
    values = dict(line.split("=", 1) for line in outputs)
    if values["problem"]:
        return f"**Not started:** {values['problem']}\n"
    request = " ".join(["--config", values["config"], *json.loads(values["overrides"])])
    return f"**Training request:** `{request}`\n"


def main(argv: Sequence[str] | None = None, environment: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(description="One step of the Train on label workflow.")
    parser.add_argument("step", choices=["validate", "train", "metrics", "report"])
    step = parser.parse_args(argv).step
    if step == "validate":
        outputs = validate(environment, Path.cwd())
        print("\n".join(outputs))
        if environment.get("GITHUB_STEP_SUMMARY"):
            with Path(environment["GITHUB_STEP_SUMMARY"]).open("a", encoding="utf-8") as summary:
                summary.write(request_summary(outputs))
    elif step == "train":
        request = request_from_outputs(
            environment.get("CONFIG", ""), environment.get("OVERRIDES_JSON", "")
        )
        command = training_command(request, environment["OUTPUT_DIR"])
        print("+ " + " ".join(command[1:]), flush=True)
        # exec, not a child process: the step's process becomes the trainer, so the step ends
        # with the trainer's exit code (124 at the time limit) and a signal sent to the step
        # reaches the trainer, which saves a checkpoint, with no wrapper in between.
        os.execv(command[0], command)
    elif step == "metrics":
        print(f"metrics={json.dumps(final_metrics(Path(environment['OUTPUT_DIR'])))}")
    else:
        print(report(environment), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
