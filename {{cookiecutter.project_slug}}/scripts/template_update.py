"""Update this project to torch-template's newest release: the read-only half of the update bot.

`.github/workflows/template-update.yml` runs this in a job that may only read, because
`cruft update` runs the template's code; a later job that runs no such code applies the patch and
opens the pull request. By hand it works the same (a clean work tree, full history, cruft):

    python scripts/template_update.py              # the template's newest vX.Y.Z tag
    python scripts/template_update.py --ref main   # its main branch (or any tag or commit)

When the project is behind, it runs `cruft update` to that target and stages the result, with any
`*.rej` conflict leftovers (.gitignore hides them from `git add -A`). With --out it also writes
`update.patch`, `title.txt` and `pr-body.md` there: the changelog entries the update brings and
the conflicts to resolve. Any failure exits 1 with one line saying what to fix, so a failure is
never mistaken for "behind".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

RELEASE_TAG = re.compile(r"^v\d+\.\d+\.\d+$")
# `## 0.2.0 — 2026-12-14` or `## Unreleased`: the section headings of the template's CHANGELOG.md.
SECTION = re.compile(r"^## (?:(\d+\.\d+\.\d+) — \d{4}-\d{2}-\d{2}|Unreleased)$", re.MULTILINE)
CONFLICT_MARKER = re.compile(r"^<{7} ", re.MULTILINE)
PEEL_TO_COMMIT = "^{commit}"  # git's suffix that turns a tag or branch into its commit


class UpdateError(Exception):
    """A reason the update cannot go ahead, phrased as what to fix."""


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def checked_git(*args: str, cwd: Path) -> str:
    result = git(*args, cwd=cwd)
    if result.returncode != 0:
        raise UpdateError(f"`git {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.removeprefix("v").split("."))


def newest_release(clone: Path) -> str | None:
    tags = [tag for tag in checked_git("tag", cwd=clone).split() if RELEASE_TAG.match(tag)]
    return max(tags, key=version_key) if tags else None


def resolve(clone: Path, ref: str) -> str:
    """The commit that a tag, a branch of the template or a commit id names."""
    for candidate in (f"refs/tags/{ref}", f"refs/remotes/origin/{ref}", ref):
        result = git("rev-parse", "--verify", "--quiet", candidate + PEEL_TO_COMMIT, cwd=clone)
        if result.returncode == 0:
            return result.stdout.strip()
    raise UpdateError(f"{ref!r} is no tag, branch or commit of the template. Fix: check the ref.")


def changelog_entries(changelog: str, after: str | None, with_unreleased: bool) -> str:
    """The CHANGELOG sections newer than version `after` (all of them when it is unknown)."""
    headings = list(SECTION.finditer(changelog))
    kept = []
    for index, heading in enumerate(headings):
        end = headings[index + 1].start() if index + 1 < len(headings) else len(changelog)
        version = heading.group(1)
        if version is None:
            keep = with_unreleased
        else:
            keep = after is None or version_key(version) > version_key(after)
        if keep:
            kept.append(changelog[heading.start() : end].strip())
    return "\n\n".join(kept)


def stage_everything(project: Path) -> list[str]:
    """`git add -A`, plus the `*.rej` files .gitignore hides; returns the staged paths."""
    checked_git("add", "--all", cwd=project)
    ignored = checked_git("ls-files", "--others", "--ignored", "--exclude-standard", cwd=project)
    rejects = [path for path in ignored.splitlines() if path.endswith(".rej")]
    if rejects:
        checked_git("add", "--force", "--", *rejects, cwd=project)
    return checked_git("diff", "--cached", "--name-only", cwd=project).splitlines()


def conflicts(project: Path, staged: list[str]) -> list[str]:
    found = []
    for path in staged:
        file = project / path
        if path.endswith(".rej"):
            found.append(path)
        elif file.is_file():
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            if CONFLICT_MARKER.search(text):
                found.append(path)
    return found


def pull_request_body(entries: str, from_label: str, to_label: str, conflicted: list[str]) -> str:
    lines = [
        f"`cruft update` from torch-template {from_label} to {to_label}. Your edits were merged "
        "three-way; review the diff and let CI run before merging.",
        "",
    ]
    if conflicted:
        lines += [
            "**Conflicts to resolve by hand** (merge the change, delete the `.rej` file, remove "
            "the `<<<<<<<` markers; pre-commit and CI refuse both until then):",
            "",
            *[f"- `{path}`" for path in conflicted],
            "",
        ]
    lines += ["## What the template changed", "", entries or "(no changelog entries)", ""]
    return "\n".join(lines)


def append(variable: str, text: str) -> None:
    """Append to the file a GitHub Actions variable names (step outputs, job summary), if set."""
    target = os.environ.get(variable)
    if target:
        with Path(target).open("a", encoding="utf-8") as file:
            file.write(text + "\n")


def update(project: Path, ref: str | None, out: Path | None) -> bool:
    """Update the project in place to `ref` (default: the newest release); False if current."""
    state_file = project / ".cruft.json"
    if not state_file.is_file():
        raise UpdateError(
            "no .cruft.json: this project is not linked to its template. Fix: "
            "`cruft link <template git URL>` (template docs: Updating with cruft)."
        )
    if checked_git("rev-parse", "--is-shallow-repository", cwd=project).strip() == "true":
        raise UpdateError(
            "this clone is shallow, and the 3-way merge needs the project's history (without it, "
            "changes next to your edits arrive as .rej files). Fix: actions/checkout with "
            "fetch-depth: 0, or `git fetch --unshallow`."
        )
    state = json.loads(state_file.read_text(encoding="utf-8"))
    baked_from: str = state["commit"]
    current_version: str | None = state["context"]["cookiecutter"].get("_template_version")
    with tempfile.TemporaryDirectory() as scratch:
        clone = Path(scratch) / "template"
        checked_git("clone", "--quiet", "--filter=blob:none", "--no-checkout",
                    state["template"], str(clone), cwd=project)  # fmt: skip
        target = ref or newest_release(clone)
        if target is None:  # a notice, not a failure: nothing is wrong with this project
            notice = (
                "The template has no release tag (vX.Y.Z) yet, so there is nothing to update to. "
                "To follow its branch instead: --ref main (in CI: the repository variable "
                "TEMPLATE_UPDATE_REF=main)."
            )
            append("GITHUB_STEP_SUMMARY", notice)
            print(f"template-update: {notice}")
            return False
        target_commit = resolve(clone, target)
        if git("cat-file", "-e", baked_from + PEEL_TO_COMMIT, cwd=clone).returncode != 0:
            raise UpdateError(
                f"the commit in .cruft.json, {baked_from}, is not in the template's history. "
                "Fix: set it to the template commit this project was last updated to."
            )
        if git("merge-base", "--is-ancestor", target_commit, baked_from, cwd=clone).returncode == 0:
            append("GITHUB_STEP_SUMMARY", f"Up to date with torch-template {target}.")
            print(f"template-update: up to date with {target} ({target_commit[:12]}).")
            return False
        released = RELEASE_TAG.match(target) is not None
        changelog = git("show", f"{target_commit}:CHANGELOG.md", cwd=clone).stdout
        entries = changelog_entries(changelog, current_version, with_unreleased=not released)
    cruft = [sys.executable, "-m", "cruft", "update", "--skip-apply-ask", "--checkout", target]
    if subprocess.run(cruft, cwd=project, check=False).returncode != 0:
        raise UpdateError(f"`cruft update --checkout {target}` failed; its output is above.")
    staged = stage_everything(project)
    if not staged:
        print(f"template-update: {target} changes none of this project's files.")
        return False
    from_label = f"v{current_version}" if current_version else "a version before v0.1.0"
    to_label = target if released else f"{target} ({target_commit[:12]})"
    conflicted = conflicts(project, staged)
    body = pull_request_body(entries, from_label, to_label, conflicted)
    append("GITHUB_STEP_SUMMARY", body)
    if out is None:
        print(body)
    else:
        out.mkdir(parents=True, exist_ok=True)
        # Bytes as git wrote them: text mode would drop the \r of CRLF files (and git apply
        # would then refuse the patch) or fail on a file that is not UTF-8.
        patch = subprocess.run(
            ["git", "diff", "--cached", "--binary"], cwd=project, capture_output=True, check=True
        ).stdout
        (out / "update.patch").write_bytes(patch)
        (out / "title.txt").write_text(f"chore: update from torch-template {to_label}\n")
        (out / "pr-body.md").write_text(body, encoding="utf-8")
    print(f"template-update: {from_label} -> {to_label}: {len(staged)} files changed, "
          f"{len(conflicted)} with conflicts.")  # fmt: skip
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Update this project to a torch-template release.")
    parser.add_argument("--ref", help="a template tag, branch or commit (default: newest vX.Y.Z)")
    parser.add_argument("--out", type=Path, help="folder for update.patch, title.txt, pr-body.md")
    arguments = parser.parse_args(argv)
    out = arguments.out.resolve() if arguments.out else None
    try:
        behind = update(Path.cwd(), arguments.ref or None, out)
    except UpdateError as error:
        print(f"template-update: {error}", file=sys.stderr)
        return 1
    append("GITHUB_OUTPUT", f"update={'true' if behind else 'false'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
