"""Finish a freshly generated project: drop files for options not chosen, then set up git.

Safe to run again: every step checks before it acts, and a missing git or identity is a note,
never a failure. Git set-up happens only under cookiecutter's own entry point: cruft renders the
template into temporary folders on every `cruft update` and diffs them, and a `.git` folder in
there ends up in the patch, which then fails to apply and the update is silently lost.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ANSWERS: dict[str, object] = json.loads(r"""{{ cookiecutter | tojson }}""")

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


def note(message: str) -> None:
    print(f"torch-template: {message}")


def remove_unselected_paths(project: Path) -> None:
    for option, paths in PATHS_FOR_OPTION.items():
        if ANSWERS.get(option) is True:
            continue
        for relative in paths:
            path = project / relative
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


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
    inside_other_repository = git(project, "rev-parse", "--show-toplevel")
    if (
        inside_other_repository.returncode == 0
        and Path(inside_other_repository.stdout.strip()).resolve() != project.resolve()
    ):
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


def main() -> int:
    project = Path.cwd()
    remove_unselected_paths(project)
    if not check_pyproject_parses(project):
        return 1
    # cookiecutter's front end records the output folder; cruft's create/update do not.
    if "_output_dir" in ANSWERS:
        set_up_git(project)
    else:
        note(
            "rendered by cruft, so git was left alone. In a new project run: git init -b main "
            f"&& git config commit.template .gitmessage && git add -A && git commit -m "
            f"'{FIRST_COMMIT_MESSAGE}'"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
