"""Who and what may reach the GPU runner: the checks both GPU workflows make on a GitHub-hosted
runner before any job that names the GPU runner or its environment.

  labeller   the person who added the label has write access (adding labels needs only triage)
  commit     the commit to test is a full 40-hex SHA (a branch or tag can move after review)
             -> commit=<sha> for $GITHUB_OUTPUT
  reviewers  ENVIRONMENT (gpu-test, gpu-train) has required reviewers, read from the answer of
             `gh api repos/OWNER/REPO/environments/ENVIRONMENT` with the job's token

A refusal is one `::error::` line (on stderr) naming the setting to change, and exit status 1.
The GPU jobs `needs:` the job that runs these, so a refusal keeps them from starting. GitHub
creates an environment on first use with no rules at all: without the reviewers check, a
workflow whose environment nobody configured would run unreviewed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# What `repos/OWNER/REPO/collaborators/USER/permission` answers in `.permission`; GitHub maps the
# maintain role to write and triage to read there.
WRITE_ACCESS = ("admin", "maintain", "write")
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
# A repository variable: in a private repository on a plan without required reviewers (GitHub
# Free, Pro and Team offer them for public repositories only), `private` lets the GPU jobs run
# without them. It is never honoured in a public repository.
UNREVIEWED_VARIABLE = "GPU_RUNS_WITHOUT_REVIEWERS"


def labeller_problem(permission: str, sender: str) -> str:
    """Empty when `sender` may start GPU work, else why not."""
    if permission in WRITE_ACCESS:
        return ""
    return f"{sender} has {permission or 'no'} access; a GPU run needs write access"


def checked_commit(commit: str, started_on: str) -> str:
    """The full SHA to check out: `commit`, or `started_on` (the run's own) when it is empty."""
    chosen = commit.strip() or started_on
    if not COMMIT_SHA.fullmatch(chosen):
        raise ValueError(
            f"commit={chosen!r} is not a full commit SHA; a branch or tag can move between "
            "review and checkout: pass the 40-hex SHA, e.g. the pull request's head commit"
        )
    return chosen


def reviewers_problem(
    environment: str, api_answer: str, visibility: str, unreviewed_allowed: str
) -> str:
    """Empty when `environment` holds every job for a reviewer, else one line on what to set.

    `api_answer` is what `gh api` printed: the environment, or GitHub's error (`message`), or
    nothing at all when the request failed before an answer.
    """
    settings = f"Settings > Environments > {environment} > Required reviewers"
    try:
        answer = json.loads(api_answer)
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict) or "protection_rules" not in answer:
        message = answer.get("message", "") if isinstance(answer, dict) else ""
        if message == "Not Found":
            return (
                f"the environment {environment} does not exist (or the job's token, which needs "
                "`actions: read`, cannot see it), and GitHub would create it without reviewers: "
                f"create it and add reviewers ({settings})"
            )
        return (
            f"could not read the protection rules of the environment {environment} "
            f"({message or 'no answer from the API'}); the job needs `actions: read`. "
            f"Check that it has required reviewers ({settings}), then run again"
        )
    rules = answer["protection_rules"] if isinstance(answer["protection_rules"], list) else []
    if any(
        isinstance(rule, dict)
        and rule.get("type") == "required_reviewers"
        and rule.get("reviewers")
        for rule in rules
    ):
        return ""
    if unreviewed_allowed == "private" and visibility in ("private", "internal"):
        return ""
    return (
        f"the environment {environment} has no required reviewers, so nobody would approve "
        f"this GPU job: add them ({settings}). A private repository whose plan has no "
        f"reviewers may set the repository variable {UNREVIEWED_VARIABLE}=private instead"
    )


def refuse(problem: str) -> int:
    # On stderr, which the runner reads for workflow commands too: stdout may be $GITHUB_OUTPUT.
    print(f"::error::{' '.join(problem.split())}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None, environment: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(description="One access check of the GPU workflows.")
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("labeller", help="PERMISSION and SENDER: may the labeller start GPU work?")
    steps.add_parser("commit", help="COMMIT (or GITHUB_SHA when empty) -> commit=<sha>")
    reviewers = steps.add_parser("reviewers", help="does ENVIRONMENT have required reviewers?")
    reviewers.add_argument("environment", help="gpu-test or gpu-train")
    reviewers.add_argument("api_answer", type=Path, help="file holding what `gh api` printed")
    arguments = parser.parse_args(argv)
    if arguments.step == "labeller":
        problem = labeller_problem(
            environment.get("PERMISSION", ""), environment.get("SENDER", "the labeller")
        )
        return refuse(problem) if problem else 0
    if arguments.step == "commit":
        try:
            commit = checked_commit(
                environment.get("COMMIT", ""), environment.get("GITHUB_SHA", "")
            )
        except ValueError as error:
            return refuse(str(error))
        print(f"commit={commit}")
        return 0
    answer = arguments.api_answer
    problem = reviewers_problem(
        arguments.environment,
        answer.read_text(encoding="utf-8") if answer.is_file() else "",
        environment.get("VISIBILITY", ""),
        environment.get("UNREVIEWED_ALLOWED", ""),
    )
    return refuse(problem) if problem else 0


if __name__ == "__main__":
    sys.exit(main())
