"""Finish a freshly generated project: drop files for options not chosen, link it to the
template for `cruft update`, then set up git.

Safe to run again: every step checks before it acts, and a missing git or identity is a note,
never a failure. Linking and git set-up happen only under cookiecutter's own entry point: cruft
renders the template into temporary folders on every `cruft update` and diffs them, and a `.git`
folder (or a second `.cruft.json`) in there ends up in the patch, which then fails to apply and
the update is lost (`ChangesetUnicodeError`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Paths that exist only when the named yes/no option is "yes".
PATHS_FOR_OPTION = {
    "docker": [
        ".dockerignore",
        "Dockerfile",
        ".github/workflows/docker.yml",
        "scripts/start_jupyter.sh",
    ],
    # Both workflows need the self-hosted GPU runner.
    "gpu_ci": [".github/workflows/gpu.yml", ".github/workflows/train-on-label.yml"],
    "include_notebooks": ["notebooks"],
}
FIRST_COMMIT_MESSAGE = "chore: generate project from torch-template"
# What cookiecutter's front end adds about this machine; `cruft create` records none of it.
MACHINE_KEYS = ("_template", "_output_dir", "_repo_dir", "_checkout")
CRUFT_FILE = ".cruft.json"


def note(message: str) -> None:
    print(f"torch-template: {message}")


def unselected_paths(answers: Mapping[str, object]) -> list[str]:
    """What this bake leaves out: the files of each option answered no, and the other CI
    platform's files."""
    platform = answers.get("ci_platform", "github")
    chosen = {option for option in PATHS_FOR_OPTION if answers.get(option) is True}
    options = [paths for option, paths in PATHS_FOR_OPTION.items() if option not in chosen]
    platforms = [paths for name, paths in PATHS_FOR_PLATFORM.items() if name != platform]
    return [path for paths in [*options, *platforms] for path in paths]


def remove_unselected_paths(project: Path, answers: Mapping[str, object]) -> None:
    for relative in unselected_paths(answers):
        path = project / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# Each platform's CI, issue and merge request templates, dependency bot config and scripts; the
# files both platforms share (labels.yml, scripts/training_request.py, ...) stay in either bake.
PATHS_FOR_PLATFORM = {
    # scripts/gpu_access.py stays: training_request.py, which both platforms use, imports it.
    "github": [".github", "scripts/apply_branch_rules.sh"],
    "gitlab": [
        ".gitlab-ci.yml",
        ".gitlab",
        "scripts/gitlab_api.py",
        "scripts/merge_request_training.py",
        "tests/test_gitlab_automation.py",
    ],
}


def check_pyproject_parses(project: Path) -> bool:
    """Guard the one file where answers land in a quoted string: a broken pyproject breaks pip."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10 runs cookiecutter without tomllib; skip the check.
        return True
    try:
        tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        print(
            f"torch-template: pyproject.toml would not parse ({error}). "
            "Fix: remove unusual characters from description, author_name or project_name.",
            file=sys.stderr,
        )
        return False
    return True


def git(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=False)


def set_up_git(project: Path) -> None:
    if shutil.which("git") is None:
        note("git not found; run `git init -b main` yourself once git is installed.")
        return
    outer = git(project, "rev-parse", "--show-toplevel")
    inside_other_repository = (
        outer.returncode == 0 and Path(outer.stdout.strip()).resolve() != project.resolve()
    )
    # A project in a folder the outer repository ignores (the template's own ./demo, which
    # `nox -s demo` bakes into) is no part of it: it gets a repository of its own, as anywhere.
    if inside_other_repository and git(project, "check-ignore", "--quiet", ".").returncode != 0:
        note("inside an existing git repository; leaving git set-up to you.")
        return
    if not (project / ".git").exists():
        init = git(project, "init", "-b", "main")
        if init.returncode != 0:  # git older than 2.28 has no -b
            git(project, "init")
            git(project, "symbolic-ref", "HEAD", "refs/heads/main")
    git(project, "config", "commit.template", ".gitmessage")
    if git(project, "rev-parse", "--verify", "--quiet", "HEAD").returncode == 0:
        return  # already has history: a re-run must not add commits
    identity = git(project, "var", "GIT_COMMITTER_IDENT")
    if identity.returncode != 0:
        note(
            "git has no user name/email, so no first commit was made. Fix: "
            'git config --global user.name "You" && git config --global user.email you@example.com'
            ", then `git add -A && git commit`."
        )
        return
    git(project, "add", "--all")
    commit = git(project, "commit", "--quiet", "--no-verify", "-m", FIRST_COMMIT_MESSAGE)
    if commit.returncode != 0:
        note(f"first commit failed ({commit.stderr.strip()}); commit the files yourself.")


def template_folder(repo_dir: str) -> Path | None:
    """The folder cookiecutter rendered from, made absolute.

    A local template arrives as typed (`cookiecutter .`), relative to where cookiecutter started,
    which this hook, run inside the new project, cannot see. cookiecutter runs hooks from inside
    the template folder, which Linux shows as the parent process's working directory; a shell
    records where the command was typed in PWD.
    """
    path = Path(repo_dir)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [Path(f"/proc/{os.getppid()}/cwd"), Path(os.environ.get("PWD", "/")) / path]
    for candidate in candidates:
        if (candidate / "cookiecutter.json").is_file() and (candidate / "hooks").is_dir():
            return candidate.resolve()
    return None


def without_credentials(url: str) -> str:
    """`https://user:token@host/x` -> `https://host/x`: `.cruft.json` is committed."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return url


def is_repository_root(folder: Path) -> bool:
    top_level = git(folder, "rev-parse", "--show-toplevel")
    return top_level.returncode == 0 and Path(top_level.stdout.strip()).resolve() == folder


def link_to_template(project: Path, answers: Mapping[str, object]) -> None:
    """Write the `.cruft.json` that `cruft create` would have written, so `cruft update` works.

    cookiecutter clones a git URL (`gh:` abbreviations expanded) into ~/.cookiecutters and renders
    that clone; a local template is rendered in place. Either way the commit is the folder's HEAD.
    """
    how_to_link = "`cruft link <template git URL>` links it later (docs: Updating with cruft)."
    if shutil.which("git") is None:
        note(f"git not found, so this project is not linked to the template. {how_to_link}")
        return
    if "_repo_dir" not in answers:  # cookiecutter before 2.2 does not say where it rendered from
        note(f"cookiecutter is older than 2.2, so this project is not linked. {how_to_link}")
        return
    folder = template_folder(str(answers["_repo_dir"]))
    if folder is None or not is_repository_root(folder):
        note(
            f"the template {answers['_template']} is not a git repository, so this project cannot "
            "take template updates (`cruft update` needs a git URL and a commit). Bake from the "
            f"template's git URL (cookiecutter gh:<org>/torch-template), or {how_to_link}"
        )
        return
    commit = git(folder, "rev-parse", "HEAD").stdout.strip()
    if answers["_template"] == answers["_repo_dir"]:  # a local folder, rendered in place
        url = str(folder)
        if git(folder, "status", "--porcelain").stdout.strip():
            note(
                f"{folder} has uncommitted changes; {CRUFT_FILE} records its last commit "
                f"{commit[:12]}, so a later `cruft update` treats those changes as yours."
            )
    else:  # a URL that cookiecutter cloned
        url = without_credentials(git(folder, "remote", "get-url", "origin").stdout.strip())
    recorded = {key: value for key, value in answers.items() if key not in MACHINE_KEYS}
    state = {
        "template": url,
        "commit": commit,
        "checkout": answers.get("_checkout"),
        "context": {"cookiecutter": {**recorded, "_template": url, "_commit": commit}},
        "directory": None,
    }
    text = json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": ")) + "\n"
    (project / CRUFT_FILE).write_text(text, encoding="utf-8")


def main(project: Path, answers: Mapping[str, object]) -> int:
    remove_unselected_paths(project, answers)
    if not check_pyproject_parses(project):
        return 1
    # cookiecutter's front end records the output folder; cruft's create/update do not.
    if "_output_dir" in answers:
        link_to_template(project, answers)
        set_up_git(project)
    else:
        note(
            "rendered by cruft, so git was left alone. In a new project run: git init -b main "
            f"&& git config commit.template .gitmessage && git add -A && git commit -m "
            f"'{FIRST_COMMIT_MESSAGE}'"
        )
    return 0


if __name__ == "__main__":
    # The only line cookiecutter's rendering changes (tests import this file unrendered). Pairs,
    # not a mapping: `tojson` sorts a mapping's keys, and `.cruft.json` keeps the question order
    # that `cruft create` writes.
    sys.exit(main(Path.cwd(), dict(json.loads(r"""{{ cookiecutter.items() | list | tojson }}"""))))
