"""Refuse a commit made from an environment that differs from uv.lock: the pre-commit hook
`environment-matches-lock` runs `python scripts/check_environment.py`.

A commit's code was then tried with other packages than the ones every clone, CI run and image
installs. The comparison is the one the health check and run.json make (manifest.py's
`lock_differences`: the packages a run needs, torch and the dev tools left out). One line names
the packages and the fix; skip the check once with `SKIP=environment-matches-lock git commit`.
No uv.lock yet (before the first `bash scripts/setup_dev.sh`), or Python 3.10 (no tomllib):
nothing to compare, so the commit goes ahead.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This checkout's own package, installed or not: the manifest code of the commit being made.
sys.path.insert(0, str(ROOT / "src"))

from {{ cookiecutter.package_name }}.manifest import (  # noqa: E402
    LOCK_FILE,
    describe_lock,
    find_lock,
    installed_packages,
)

HOOK_ID = "environment-matches-lock"


def problem() -> str | None:
    """The one line that refuses the commit, or None when the environment is as locked."""
    lock = find_lock()
    if lock is None:
        return None
    differences = describe_lock(lock, installed_packages())["lock_differences"]
    if not differences:
        return None
    return (
        f"the environment of {sys.executable} differs from {LOCK_FILE}: "
        f"{'; '.join(differences)}. Fix: bash scripts/setup_dev.sh (to commit anyway, once: "
        f"SKIP={HOOK_ID} git commit ...)"
    )


def main() -> int:
    found = problem()
    if found is not None:
        print(found, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
