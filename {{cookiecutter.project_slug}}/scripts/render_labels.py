"""Render LABELS.md from labels.yml: `python scripts/render_labels.py` (or `--check`).

labels.yml is the one list of labels; CI syncs it to GitHub or GitLab, wherever the project lives.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "labels.yml"
PLATFORM = "{{ 'GitLab' if cookiecutter.ci_platform == 'gitlab' else 'GitHub' }}"
TARGET = ROOT / "LABELS.md"


def render(labels: list[dict[str, str]]) -> str:
    lines = [
        "# Labels",
        "",
        "Generated from `labels.yml` by `python scripts/render_labels.py`; edit that file,",
        f"not this one. Labels are `category:key`; CI syncs them to {PLATFORM}.",
        "",
        "| label | colour | meaning |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| `{label['name']}` | `#{label['color']}` | {label['description']} |" for label in labels
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if LABELS.md is out of date")
    arguments = parser.parse_args(argv)
    expected = render(yaml.safe_load(SOURCE.read_text(encoding="utf-8")))
    if arguments.check:
        if not TARGET.is_file() or TARGET.read_text(encoding="utf-8") != expected:
            print("LABELS.md is out of date: run python scripts/render_labels.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(expected, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
