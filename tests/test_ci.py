"""`.ci/run` runs exactly the sessions that `nox` runs, each once, two at a time."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess

from tests.baking import TEMPLATE_ROOT
from tests.combinations import SMOKE_COMBINATIONS


def default_sessions() -> list[str]:
    """`nox.options.sessions` as noxfile.py sets it, each parametrized one by its ids (smoke's
    are SMOKE_COMBINATIONS)."""
    tree = ast.parse((TEMPLATE_ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "nox.options.sessions":
            sessions: list[str] = ast.literal_eval(node.value)
            smoke = [f"smoke({combination})" for combination in SMOKE_COMBINATIONS]
            expanded = (smoke if session == "smoke" else [session] for session in sessions)
            return [name for names in expanded for name in names]
    raise AssertionError("noxfile.py sets no nox.options.sessions")


def test_ci_runs_exactly_the_default_sessions_each_once() -> None:
    path = TEMPLATE_ROOT / ".ci" / "run"
    script = path.read_text(encoding="utf-8")
    subprocess.run(["bash", "-n", str(path)], check=True)  # it parses
    [listed] = re.findall(r"^SESSIONS=\((.*?)^\)", script, flags=re.MULTILINE | re.DOTALL)
    assert sorted(shlex.split(listed, comments=True)) == sorted(default_sessions())
    assert 'for session in "${SESSIONS[@]}"; do' in script  # every one of them
    assert 'python3 -m nox -s "$1"' in script  # each by its own name
