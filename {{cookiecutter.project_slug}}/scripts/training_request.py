"""The steps of .github/workflows/train-on-label.yml, here so that pytest can run them.

An issue made with the "Training task" form and labelled `task:training` + `gpu:required` asks
for a training run. Each job of the workflow calls one subcommand; all read the environment
variables the workflow sets and print `key=value` lines for $GITHUB_OUTPUT (or a comment body):

  validate  the `gpu-train` environment has reviewers, the labeller may train, the body is the
            form exactly as GitHub writes it (what a reviewer reads is what runs), it names a
            config under configs/ and only allowed overrides within their limits, as the trainer
            reads them -> config=, overrides= (JSON), body_sha256=, changed_since=, problem=
  train     replaces itself with `python -m <package>.train ...` built from what validate printed
  metrics   the final metrics from OUTPUT_DIR/run.json -> metrics= (JSON, or null)
  report    the issue comment: what ran, how it ended, the metrics, the link to the run

The issue text reaches the trainer only as checked `key=value` arguments, never through a shell.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# scripts/, beside this file: Python puts it on sys.path when it runs the script.
from gpu_access import labeller_problem, reviewers_problem

PACKAGE = "{{ cookiecutter.package_name }}"
CONFIG_FIELD = "Config file"
OVERRIDES_FIELD = "Overrides"
FORM_FIELDS = (CONFIG_FIELD, OVERRIDES_FIELD, "Goal")  # .github/ISSUE_TEMPLATE/training.yml
NO_RESPONSE = "_No response_"  # what GitHub writes for an optional field left empty
CONFIG_PATTERN = re.compile(r"configs/[A-Za-z0-9_-][A-Za-z0-9_.-]*\.ya?ml")
OVERRIDE_PATTERN = re.compile(r"(?P<key>[a-z_]+(?:\.[a-z_]+)*)=(?P<value>[A-Za-z0-9_.+-]+)")
MAX_OVERRIDES = 20
ENVIRONMENT = "gpu-train"  # the train job's; validate refuses to go on unless it has reviewers
# Markdown that renders as a heading: `#` to `######` after up to three spaces, also inside a
# list item or a quote (`- ### x`, `> ### x`); and a line of `=` or `-` under a line of text.
HEADING = re.compile(r"[ \t>*+\-0-9.)]*#{1,6}(?:[ \t]|$)")
HEADING_UNDERLINE = re.compile(r"[ >]*(?:=+|-+)[ \t]*")
# What GitHub shows differently from the text, or not at all: HTML tags and comments
# (`<!-- ... -->` is invisible), and images (a picture of a form is not the form).
HIDDEN_OR_DRAWN = re.compile(r"<[A-Za-z/!?]|!\[")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # after CRLF -> LF; a lone CR too
# A number as a reader of the issue reads it: plain decimal, no leading zeros, no `_`, no
# YAML 1.1 octal (0500 is 320 to the trainer), hex, sexagesimal or .inf/.nan.
DECIMAL_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
# The line of the result comment that records what body an accepted request came from.
BODY_DIGEST_LINE = re.compile(r"^Issue body: sha256 `(?P<digest>[0-9a-f]{64})`$", re.MULTILINE)
REQUEST_LINE = re.compile(r"^Request: `(?P<request>[^`\n]*)`$", re.MULTILINE)
COMMENT_AUTHOR = "github-actions[bot]"  # the report job's token; no person can take the login
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


@dataclass(frozen=True)
class AcceptedRequest:
    """A request an earlier run accepted, as its result comment on the issue records it."""

    body_sha256: str
    request: str
    url: str


def form_fields(body: str) -> dict[str, str]:
    """The fields of an issue form, as GitHub writes them: `### Label`, then the value.

    Only that exact shape is read: the form's headings, each once, in order, at the start of a
    line, and nothing GitHub would hide or draw differently from the text (HTML, comments,
    images, other headings). Whatever is refused here could make the rendered issue that a
    reviewer reads differ from the text that runs.
    """
    text = body.replace("\r\n", "\n")
    if CONTROL_CHARACTERS.search(text):
        raise RequestError(
            "the issue holds control characters; open it with the Training task form"
        )
    hidden = HIDDEN_OR_DRAWN.search(text)
    if hidden:
        raise RequestError(
            f"the issue holds `{hidden[0]}` (raw HTML, an HTML comment or an image), which GitHub "
            "hides or draws instead of showing the text: remove it"
        )
    headings = [f"### {label}" for label in FORM_FIELDS]
    preamble: list[str] = []
    sections: list[list[str]] = []
    previous = ""
    for number, line in enumerate(text.split("\n"), start=1):
        is_heading = bool(HEADING.match(line)) or bool(
            previous.strip() and HEADING_UNDERLINE.fullmatch(line)
        )
        if is_heading and len(sections) < len(headings) and line == headings[len(sections)]:
            sections.append([])
        elif is_heading:
            raise RequestError(
                f"line {number} of the issue (`{line.strip()[:40]}`) is a heading the form does "
                f"not write; keep only the form's {', '.join(headings)}, each once, in this "
                "order, at the start of a line"
            )
        else:
            (sections[-1] if sections else preamble).append(line)
        previous = line
    if any(line.strip() for line in preamble):
        raise RequestError(
            f"the issue has text before '{headings[0]}': open the issue with the Training task form"
        )
    if len(sections) < len(headings):
        raise RequestError(
            f"no '{headings[len(sections)]}' heading: open the issue with the Training task form"
        )
    values = ["\n".join(lines).strip() for lines in sections]
    return {
        label: "" if value == NO_RESPONSE else value
        for label, value in zip(FORM_FIELDS, values, strict=True)
    }


def trainer_value(key: str, text: str) -> object:
    """The value the trainer will use for `key=text`: its own YAML reading and type check.

    The package's config module is imported here, not at the top: the report job runs this file
    without the package installed. The validate job installs it (not torch; the config module
    needs none), so the cap below is checked against the number the trainer would train with.
    """
    from {{ cookiecutter.package_name }} import config, errors

    expected: typing.Any = config.Config
    for part in key.split("."):
        expected = typing.get_type_hints(expected)[part]
    try:
        return config.convert(expected, config.parse_yaml(text), key)
    except errors.ConfigError as error:
        raise RequestError(str(error)) from None


def check_value(key: str, text: str) -> None:
    """`key=text` must mean to the trainer what it says to a reader, within ALLOWED_OVERRIDES."""
    value = trainer_value(key, text)
    limit = ALLOWED_OVERRIDES[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        if limit is not None:  # the trainer has refused it already: capped keys are numbers
            raise RequestError(f"`{key}={text}`: {key} may be a number up to {limit}")
        return
    if not (DECIMAL_NUMBER.fullmatch(text) and math.isfinite(value)):
        shown = f" (the trainer reads {value!r})" if math.isfinite(value) else ""
        raise RequestError(
            f"`{key}={text}` is not a plain decimal number{shown}; write it without leading "
            f"zeros, `_` or inf/nan, e.g. {key}=3"
        )
    if isinstance(value, int) and str(value) != text:
        raise RequestError(f"`{key}={text}` reads as {value}; write {key}={value}")
    if limit is not None and value > limit:
        raise RequestError(f"`{key}={text}`: {key} may be a number up to {limit}")


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
        check_value(key, value)
    return overrides


def parse_request(body: str, permission: str, sender: str, root: Path) -> TrainingRequest:
    """The request in an issue body, or RequestError with the reason it may not run."""
    problem = labeller_problem(permission, sender)
    if problem:
        raise RequestError(problem)
    fields = form_fields(body)
    config = fields[CONFIG_FIELD]
    if not CONFIG_PATTERN.fullmatch(config):
        raise RequestError("the config must be a file under configs/, like configs/default.yaml")
    if not (root / config).is_file():
        raise RequestError(f"`{config}` does not exist on the default branch")
    return TrainingRequest(config, check_overrides(fields[OVERRIDES_FIELD]))


def request_text(config: str, overrides: Sequence[str]) -> str:
    return " ".join(["--config", config, *overrides])


def body_sha256(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def api_items(answer: str) -> list[object]:
    """The items of what `gh api --paginate` printed: one JSON array per page, back to back."""
    items: list[object] = []
    decoder, position = json.JSONDecoder(), 0
    while position < len(answer.rstrip()):
        try:
            page, position = decoder.raw_decode(answer, position)
        except json.JSONDecodeError:
            raise RequestError(
                "could not read the issue's comments; the validate job needs `issues: read`"
            ) from None
        if not isinstance(page, list):
            message = page.get("message") if isinstance(page, dict) else None
            raise RequestError(f"could not read the issue's comments ({message or repr(page)})")
        items += page
        while position < len(answer) and answer[position].isspace():
            position += 1
    return items


def last_accepted_request(comments_answer: str) -> AcceptedRequest | None:
    """The latest request that this workflow accepted on the issue, from its result comments."""
    accepted = None
    for comment in api_items(comments_answer):
        if not isinstance(comment, dict):
            continue
        user = comment.get("user")
        author = user.get("login") if isinstance(user, dict) else None
        text = comment.get("body")
        if author != COMMENT_AUTHOR or not isinstance(text, str):
            continue
        digest, request = BODY_DIGEST_LINE.search(text), REQUEST_LINE.search(text)
        if digest and request:
            accepted = AcceptedRequest(
                digest["digest"], request["request"], str(comment.get("html_url", ""))
            )
    return accepted


def request_from_outputs(config: str, overrides_json: str) -> TrainingRequest:
    """What validate printed, checked again: the train job trusts no string it is handed."""
    overrides = json.loads(overrides_json or "[]")
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        raise RequestError("OVERRIDES_JSON must be a JSON list of strings")
    if not CONFIG_PATTERN.fullmatch(config):
        raise RequestError("CONFIG must be a file under configs/")
    return TrainingRequest(config, check_overrides(" ".join(overrides)))


def training_command(request: TrainingRequest, output_dir: str) -> list[str]:
    """The trainer's argv: every element one `key=value`, none empty (no overrides: none)."""
    return [
        sys.executable, "-m", f"{PACKAGE}.train", "--config", request.config,
        *request.overrides,
        "train.device=cuda", f"train.time_limit_minutes={TIME_LIMIT_MINUTES}",
        f"output_dir={output_dir}",
    ]  # fmt: skip


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
    lines = [
        f"Training {'finished' if result == 'success' else f'ended: {result}'}. Run: {run_url}",
        "",
        f"Request: `{request_text(environment.get('CONFIG', ''), overrides)}`",
        f"Issue body: sha256 `{environment.get('BODY_SHA256', '')}`",
    ]
    if environment.get("CHANGED_SINCE"):
        lines += [
            "",
            "The issue body had changed since the request accepted before "
            f"({environment['CHANGED_SINCE']}); this run used the body as it was when labelled.",
        ]
    metrics = json.loads(environment.get("METRICS") or "null")
    if isinstance(metrics, dict) and metrics:
        lines += ["", "| metric | value |", "| --- | --- |"]
        lines += [
            f"| {table_cell(name)} | {table_cell(value)} |" for name, value in metrics.items()
        ]
    lines += ["", "Checkpoints and metrics are attached to the run as an artifact."]
    return "\n".join(lines) + "\n"


def read_answer(environment: Mapping[str, str], variable: str) -> str:
    """What a `gh api` call of the workflow wrote to the file named by `variable` ("" if none)."""
    path = Path(environment.get(variable, "")) if environment.get(variable) else None
    return path.read_text(encoding="utf-8") if path is not None and path.is_file() else ""


def validate(environment: Mapping[str, str], root: Path) -> list[str]:
    """`key=value` lines for $GITHUB_OUTPUT; `problem=` is empty when the request may run."""
    body = environment.get("ISSUE_BODY", "")
    digest = body_sha256(body)
    try:
        problem = reviewers_problem(
            ENVIRONMENT,
            read_answer(environment, "ENVIRONMENT_ANSWER"),
            environment.get("VISIBILITY", ""),
            environment.get("UNREVIEWED_ALLOWED", ""),
        )
        if problem:
            raise RequestError(problem)
        request = parse_request(
            body,
            environment.get("PERMISSION", ""),
            environment.get("SENDER", "the labeller"),
            root,
        )
        before = last_accepted_request(read_answer(environment, "COMMENTS_ANSWER"))
    except RequestError as error:
        return [
            "config=", "overrides=[]", f"body_sha256={digest}", "changed_since=",
            f"problem={' '.join(str(error).split())}",
        ]  # fmt: skip
    changed = before is not None and before.body_sha256 != digest
    return [
        f"config={request.config}",
        f"overrides={json.dumps(request.overrides)}",
        f"body_sha256={digest}",
        f"changed_since={before.url if changed and before is not None else ''}",
        "problem=",
    ]


def request_summary(outputs: Sequence[str], before: AcceptedRequest | None) -> str:
    """Markdown for the run's summary page, which a reviewer of the `gpu-train` environment reads
    before approving: exactly what will run, frozen in the job's outputs, and whether the issue
    changed since a request of it was last accepted."""
    values = dict(line.split("=", 1) for line in outputs)
    if values["problem"]:
        return f"**Not started:** {values['problem']}\n"
    request = request_text(values["config"], json.loads(values["overrides"]))
    summary = f"**Training request:** `{request}`\n\nIssue body: sha256 `{values['body_sha256']}`\n"
    if values["changed_since"] and before is not None:
        summary += (
            f"\n**The issue body changed since the request accepted before** "
            f"({values['changed_since']}): that one was `{before.request}`. Before approving, "
            "read the issue's edit history (the 'edited' menu on its text).\n"
        )
    return summary


def main(argv: Sequence[str] | None = None, environment: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(description="One step of the Train on label workflow.")
    parser.add_argument("step", choices=["validate", "train", "metrics", "report"])
    step = parser.parse_args(argv).step
    if step == "validate":
        outputs = validate(environment, Path.cwd())
        print("\n".join(outputs))
        if environment.get("GITHUB_STEP_SUMMARY"):
            try:
                before = last_accepted_request(read_answer(environment, "COMMENTS_ANSWER"))
            except RequestError:
                before = None  # validate has put the reason into problem=
            with Path(environment["GITHUB_STEP_SUMMARY"]).open("a", encoding="utf-8") as summary:
                summary.write(request_summary(outputs, before))
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
