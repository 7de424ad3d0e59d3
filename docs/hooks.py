"""MkDocs hook: render the label table from the generated project's own `labels.yml`.

The labels page holds the marker `<!-- labels-table -->`; the table is built at docs build time,
so the documentation can never disagree with the file the labels workflow syncs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

LABELS = Path(__file__).resolve().parents[1] / "{{cookiecutter.project_slug}}" / "labels.yml"
MARKER = "<!-- labels-table -->"


def labels_table() -> str:
    labels = yaml.safe_load(LABELS.read_text(encoding="utf-8"))
    rows = [
        f"| `{label['name']}` | `#{label['color']}` | {label['description']} |" for label in labels
    ]
    return "\n".join(["| label | colour | meaning |", "| --- | --- | --- |", *rows])


def on_page_markdown(markdown: str, **_: Any) -> str:
    return markdown.replace(MARKER, labels_table()) if MARKER in markdown else markdown
