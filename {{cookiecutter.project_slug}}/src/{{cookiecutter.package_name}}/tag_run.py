"""Tag the commit a run came from: `python -m <package>.tag_run RUN_FOLDER [--name NAME]`.

Creates an annotated tag `exp/<name>-<time>-<config hash>` (for outputs/<name>/<time>; or
`exp/<folder>-<config hash>` for an output_dir chosen by hand) on the commit recorded in the run's
run.json (not whatever HEAD is now), with the final metrics, config hash and image tag in the
message. Push it with `git push origin <tag>` so the experiment is findable by everyone.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import TagError, run_command
from .run_files import CONFIG, MANIFEST, RunFiles
from .storage import fetch_tree, is_remote


def read_run(location: str) -> tuple[dict[str, Any], str]:
    """run.json and the hash of config.yaml of the run at `location` (a folder or a URL)."""
    files = RunFiles(fetch_tree(location, lambda relative: relative in (MANIFEST, CONFIG)))
    if not files.manifest.is_file() or not files.config.is_file():
        raise TagError(f"{location} has no {MANIFEST} and {CONFIG}; pass a training output_dir")
    config_hash = hashlib.sha256(files.config.read_bytes()).hexdigest()[:12]
    return files.read_manifest(), config_hash


def experiment_name(location: str) -> str:
    """`smoke-20261130-101500` for outputs/smoke/20261130-101500 (a folder per run of a config
    name, also below a remote runs_root); the folder's own name for an output_dir chosen by hand."""
    remote = is_remote(location)
    folder = PurePosixPath(location.split("://", 1)[1]) if remote else Path(location).resolve()
    return (
        f"{folder.parent.name}-{folder.name}"
        if folder.parent.parent.name == "outputs"
        else folder.name
    )


def tag_message(location: str, manifest: dict[str, Any], config_hash: str) -> str:
    metrics = manifest.get("final_metrics") or {}
    lines = [f"experiment {experiment_name(location)}", "", f"config sha256: {config_hash}"]
    lines += [f"run folder: {manifest.get('output_uri') or location}"]
    lines += [f"{name}: {value}" for name, value in sorted(metrics.items())]
    lines += [
        f"seed: {manifest.get('seed')}",
        f"world size: {manifest.get('world_size')}",
        f"torch: {manifest.get('torch')}  cuda: {manifest.get('cuda')}",
        f"[env: {manifest.get('image_tag') or 'local'}]",
    ]
    return "\n".join(lines) + "\n"


def create_tag(location: str, name: str | None, allow_incomplete: bool) -> str:
    manifest, config_hash = read_run(location)
    if manifest.get("status") != "completed" and not allow_incomplete:
        raise TagError(
            f"run status is {manifest.get('status')!r}, not 'completed'; "
            "finish or resume it first, or pass --allow-incomplete"
        )
    commit = manifest.get("git_sha")
    if not commit:
        raise TagError("run.json records no git commit (was it run outside a git checkout?)")
    if manifest.get("git_dirty"):
        print("warning: the run had uncommitted changes; the tag points at its base commit")
    tag = name or f"exp/{experiment_name(location)}-{config_hash[:8]}"
    result = subprocess.run(
        ["git", "tag", "--annotate", tag, commit, "--file", "-"],
        input=tag_message(location, manifest, config_hash),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise TagError(f"git tag {tag} failed: {result.stderr.strip()}")
    return tag


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tag the commit a training run came from.")
    parser.add_argument("run_dir", help="the run's output_dir (a folder, or a URL: s3://...)")
    parser.add_argument("--name", help="tag name (default: exp/<run folder>-<config hash>)")
    parser.add_argument("--allow-incomplete", action="store_true", help="tag an unfinished run")
    arguments = parser.parse_args(argv)

    def tag_and_report() -> None:
        tag = create_tag(arguments.run_dir, arguments.name, arguments.allow_incomplete)
        print(f"created tag {tag}; share it with: git push origin {tag}")

    return run_command("tag_run", tag_and_report)


if __name__ == "__main__":
    sys.exit(main())
