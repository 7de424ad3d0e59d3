"""`.ci/run` runs exactly the sessions that `nox` runs, split into lanes that run side by side."""

from __future__ import annotations

import ast
import re
import shlex

from tests.baking import TEMPLATE_ROOT


def default_sessions() -> list[str]:
    """`nox.options.sessions` as noxfile.py sets it."""
    tree = ast.parse((TEMPLATE_ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "nox.options.sessions":
            sessions: list[str] = ast.literal_eval(node.value)
            return sessions
    raise AssertionError("noxfile.py sets no nox.options.sessions")


def test_the_ci_lanes_run_exactly_the_default_sessions() -> None:
    script = (TEMPLATE_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lanes = re.findall(r"^python3 -m nox -s ([^>&\n]+)", script, flags=re.MULTILINE)
    assert len(lanes) == 2, script
    in_lanes = [session for lane in lanes for session in shlex.split(lane)]
    assert sorted(in_lanes) == sorted(default_sessions())
