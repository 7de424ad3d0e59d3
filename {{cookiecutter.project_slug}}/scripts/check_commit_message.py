"""commit-msg hook: enforce conventional commits (installed by pre-commit, see CONTRIBUTING.md).

`python scripts/check_commit_message.py .git/COMMIT_EDITMSG` exits 1 with a one-line reason and
an example when the message does not follow `<type>(<scope>)!: <subject>`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

TYPES = ("feat", "fix", "docs", "refactor", "perf", "test", "build", "ci", "chore", "exp", "revert")
SUBJECT = re.compile(rf"^(?:{'|'.join(TYPES)})(?:\([a-z0-9._/-]+\))?!?: \S.*$")
MAX_SUBJECT_LENGTH = 72
# Messages git writes itself are allowed as they are.
GIT_GENERATED = re.compile(r"^(Merge |Revert \"|fixup! |squash! |amend! )")
EXAMPLE = "e.g. 'feat(data): read MNIST from gzipped IDX files'"


def problem(message: str) -> str | None:
    lines = [line for line in message.splitlines() if not line.startswith("#")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or not lines[0].strip():
        return f"the commit message is empty; {EXAMPLE}"
    subject = lines[0]
    if GIT_GENERATED.match(subject):
        return None
    if not SUBJECT.match(subject):
        types = ", ".join(TYPES)
        return (
            f"subject {subject!r} is not '<type>(<scope>): <subject>' (types: {types}); {EXAMPLE}"
        )
    if len(subject) > MAX_SUBJECT_LENGTH:
        return f"subject is {len(subject)} characters; keep it to {MAX_SUBJECT_LENGTH}"
    if len(lines) > 1 and lines[1].strip():
        return "leave one blank line between the subject and the body"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_commit_message.py COMMIT_MESSAGE_FILE", file=sys.stderr)
        return 2
    found = problem(Path(argv[0]).read_text(encoding="utf-8"))
    if found:
        print(f"commit message rejected: {found}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
