"""The git identity that template tests and nox sessions bake with, on any machine."""

from __future__ import annotations

GIT_IDENTITY = {
    f"GIT_{role}_{field}": value
    for role in ("AUTHOR", "COMMITTER")
    for field, value in (("NAME", "Template Tests"), ("EMAIL", "tests@example.com"))
}
