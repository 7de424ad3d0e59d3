"""The GitLab side of training on request: .gitlab-ci.yml's training:request and training:report.

A merge request labelled `task:training` + `gpu:required` carries its request in a fenced block
of its description (the "Training" merge request template writes one):

    ```training
    config: configs/default.yaml
    overrides: train.epochs=20 optim.lr=0.0003
    ```

  request  reads CI_MERGE_REQUEST_DESCRIPTION (as it was when the pipeline was created) and
           prints CONFIG=, OVERRIDES_JSON= and PROBLEM= lines for a dotenv report; exit 1 when
           the request may not run. The training job then runs `training_request.py train`.
  note     the merge request note: what ran, how it ended, the final metrics, the pipeline.

The config and overrides are checked exactly as for a GitHub issue, by training_request.py's
allow-list and limits, and reach the trainer only as `key=value` arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from training_request import (
    CONFIG_PATTERN,
    RequestError,
    TrainingRequest,
    check_overrides,
    final_metrics,
    report,
)

# A line of three backticks and `training`, up to the next line of three backticks.
TRAINING_BLOCK = re.compile(
    r"^```training[ \t]*\n(?P<body>.*?)^```[ \t]*$", flags=re.MULTILINE | re.DOTALL
)
BLOCK_KEYS = ("config", "overrides")
DESCRIPTION_LIMIT = 2700  # GitLab cuts CI_MERGE_REQUEST_DESCRIPTION to this many characters


def parse_description(description: str, truncated: bool, root: Path) -> TrainingRequest:
    """The request in a merge request description, or RequestError saying why it may not run."""
    blocks = TRAINING_BLOCK.findall(description.replace("\r\n", "\n"))
    if not blocks:
        if truncated:
            raise RequestError(
                f"no ```training block in the first {DESCRIPTION_LIMIT} characters of the "
                "description (GitLab passes no more to CI); move the block to the top"
            )
        raise RequestError(
            "no ```training block in the description: start the merge request from the "
            "Training template, or add the block it shows"
        )
    if len(blocks) > 1:
        raise RequestError(f"the description has {len(blocks)} ```training blocks; keep one")
    config: str | None = None
    overrides: list[str] = []
    for number, line in enumerate(blocks[0].splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, colon, value = line.partition(":")
        key = key.strip()
        if not colon or key not in BLOCK_KEYS:
            raise RequestError(
                f"line {number} of the training block is not `config: ...` or `overrides: ...`"
            )
        if key == "config":
            if config is not None:
                raise RequestError("the training block names `config:` twice; keep one")
            config = value.strip()
        else:
            overrides.append(value.strip())
    if not config:
        raise RequestError("the training block has no `config:` line, e.g. configs/default.yaml")
    if not CONFIG_PATTERN.fullmatch(config):
        raise RequestError("the config must be a file under configs/, like configs/default.yaml")
    if not (root / config).is_file():
        raise RequestError(f"`{config}` does not exist on this merge request's branch")
    return TrainingRequest(config, check_overrides(" ".join(overrides)))


def request_lines(environment: Mapping[str, str], root: Path) -> tuple[list[str], bool]:
    """dotenv lines for the training jobs, and whether the request may run."""
    try:
        request = parse_description(
            environment.get("CI_MERGE_REQUEST_DESCRIPTION", ""),
            environment.get("CI_MERGE_REQUEST_DESCRIPTION_IS_TRUNCATED") == "true",
            root,
        )
    except RequestError as error:
        return ["CONFIG=", "OVERRIDES_JSON=[]", f"PROBLEM={' '.join(str(error).split())}"], False
    overrides = json.dumps(list(request.overrides))
    return [f"CONFIG={request.config}", f"OVERRIDES_JSON={overrides}", "PROBLEM="], True


def note(environment: Mapping[str, str]) -> str:
    """The merge request note, from what the training jobs left (dotenv reports, run.json)."""
    accepted = bool(environment.get("CONFIG")) and not environment.get("PROBLEM")
    output_dir = environment.get("OUTPUT_DIR", "")
    metrics = final_metrics(Path(output_dir)) if output_dir else None
    return report(
        {
            "VALIDATE_RESULT": "success" if accepted else "failure",
            "PROBLEM": environment.get("PROBLEM", ""),
            # GitLab's CI_JOB_STATUS words; empty when the training job never started.
            "TRAIN_RESULT": environment.get("TRAIN_RESULT") or "not started",
            "CONFIG": environment.get("CONFIG", ""),
            "OVERRIDES_JSON": environment.get("OVERRIDES_JSON") or "[]",
            "METRICS": json.dumps(metrics),
            "RUN_URL": environment.get("CI_PIPELINE_URL", ""),
        }
    )


def main(argv: Sequence[str] | None = None, environment: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(description="One step of .gitlab-ci.yml's training jobs.")
    parser.add_argument("step", choices=["request", "note"])
    step = parser.parse_args(argv).step
    if step == "request":
        lines, accepted = request_lines(environment, Path.cwd())
        print("\n".join(lines))
        if not accepted:
            problem = lines[-1].removeprefix("PROBLEM=")
            print(f"training request refused: {problem}", file=sys.stderr)
            return 1
        print(f"training request: --config {lines[0].removeprefix('CONFIG=')}", file=sys.stderr)
        return 0
    print(note(environment), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
