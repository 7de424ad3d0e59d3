"""The GitLab API calls of .gitlab-ci.yml's bot jobs, with the standard library only.

  merge-request-note FILE              post FILE as a note on this pipeline's merge request
                                       (token: REPORTER_BOT_TOKEN)
  sync-labels FILE                     create and update the project's labels from FILE
                                       (labels.yml); labels it does not list are left alone
                                       (token: REPORTER_BOT_TOKEN)
  template-update-merge-request DIR    apply DIR/update.patch (from scripts/template_update.py),
                                       push it as chore/template-update and open or update its
                                       merge request (token: TEMPLATE_UPDATE_TOKEN)

Where the project is comes from GitLab's predefined variables (CI_API_V4_URL, CI_PROJECT_ID,
CI_SERVER_URL, CI_PROJECT_PATH, CI_DEFAULT_BRANCH, CI_MERGE_REQUEST_IID). Tokens are read from
the environment and never printed or passed on a command line. Any failure exits 1 with one
line naming the call, GitLab's answer and the fix.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPORTER_TOKEN = "REPORTER_BOT_TOKEN"
TEMPLATE_UPDATE_TOKEN = "TEMPLATE_UPDATE_TOKEN"
UPDATE_BRANCH = "chore/template-update"
BOT_NAME = "torch-template update bot"
BOT_EMAIL = "template-update-bot@noreply.invalid"
TOKEN_HELP = {
    REPORTER_TOKEN: (
        "Settings > Access tokens: a project access token with the Reporter role and the api "
        "scope; then Settings > CI/CD > Variables: REPORTER_BOT_TOKEN, Protected and Masked"
    ),
    TEMPLATE_UPDATE_TOKEN: (
        "Settings > Access tokens: a project access token with the Developer role and the api "
        "and write_repository scopes; then Settings > CI/CD > Variables: TEMPLATE_UPDATE_TOKEN, "
        "Protected, Masked, environment scope template-update"
    ),
}


class GitLabError(Exception):
    """A call that failed, phrased as what happened and what to fix."""


def required(environment: Mapping[str, str], name: str) -> str:
    value = environment.get(name, "")
    if not value:
        fix = TOKEN_HELP.get(name, "run this in a GitLab CI job, which sets it")
        raise GitLabError(f"{name} is not set. Fix: {fix}")
    return value


def api(
    environment: Mapping[str, str],
    token_name: str,
    method: str,
    path: str,
    payload: Mapping[str, object] | None = None,
) -> Any:
    """One call to `CI_API_V4_URL` + path; the decoded JSON answer."""
    url = required(environment, "CI_API_V4_URL").rstrip("/") + path
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("PRIVATE-TOKEN", required(environment, token_name))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        detail = " ".join(error.read().decode("utf-8", "replace").split())[:300]
        hint = f" Fix: check {token_name}'s role and scopes ({TOKEN_HELP.get(token_name, '')})"
        raise GitLabError(
            f"{method} {path} answered {error.code} {error.reason}: {detail}."
            + (hint if error.code in (401, 403) else "")
        ) from None
    except urllib.error.URLError as error:
        raise GitLabError(f"{method} {url} failed: {error.reason}") from None
    return json.loads(body) if body else None


def project(environment: Mapping[str, str]) -> str:
    return f"/projects/{urllib.parse.quote(required(environment, 'CI_PROJECT_ID'), safe='')}"


def post_merge_request_note(environment: Mapping[str, str], body: str) -> None:
    iid = required(environment, "CI_MERGE_REQUEST_IID")
    path = f"{project(environment)}/merge_requests/{iid}/notes"
    api(environment, REPORTER_TOKEN, "POST", path, {"body": body})
    print(f"gitlab: posted the note on merge request !{iid}")


def all_labels(environment: Mapping[str, str]) -> list[dict[str, Any]]:
    labels: list[dict[str, Any]] = []
    page = 1
    while True:
        path = f"{project(environment)}/labels?per_page=100&page={page}"
        batch = api(environment, REPORTER_TOKEN, "GET", path)
        labels += batch
        if len(batch) < 100:
            return labels
        page += 1


def sync_labels(environment: Mapping[str, str], wanted: Sequence[Mapping[str, str]]) -> None:
    existing = {label["name"]: label for label in all_labels(environment)}
    created = updated = 0
    for label in wanted:
        fields = {"color": f"#{label['color']}", "description": label["description"]}
        current = existing.get(label["name"])
        if current is None:
            path = f"{project(environment)}/labels"
            api(environment, REPORTER_TOKEN, "POST", path, {"name": label["name"], **fields})
            created += 1
        elif (
            str(current.get("color", "")).lower() != fields["color"].lower()
            or (current.get("description") or "") != fields["description"]
        ):
            name = urllib.parse.quote(label["name"], safe="")
            api(environment, REPORTER_TOKEN, "PUT", f"{project(environment)}/labels/{name}", fields)
            updated += 1
    print(f"gitlab: labels synced: {created} created, {updated} updated, "
          f"{len(wanted) - created - updated} already right")  # fmt: skip


def git(*args: str, environment: Mapping[str, str] | None = None) -> None:
    result = subprocess.run(
        ["git", *args], capture_output=True, text=True, check=False,
        env=None if environment is None else dict(environment),
    )  # fmt: skip
    if result.returncode != 0:
        raise GitLabError(f"`git {args[0]}` failed: {' '.join(result.stderr.split())}")


def open_template_update_merge_request(environment: Mapping[str, str], folder: Path) -> None:
    patch = folder / "update.patch"
    if not patch.is_file():
        print("gitlab: the project is up to date with the template; no merge request needed.")
        return
    required(environment, TEMPLATE_UPDATE_TOKEN)  # before any change: fail with the fix first
    title = (folder / "title.txt").read_text(encoding="utf-8").strip()
    description = (folder / "pr-body.md").read_text(encoding="utf-8")
    # --index also stages the *.rej conflict files that .gitignore hides.
    git("apply", "--index", str(patch))
    git("-c", f"user.name={BOT_NAME}", "-c", f"user.email={BOT_EMAIL}",
        "commit", "--quiet", "--no-verify", "--file", str(folder / "title.txt"))  # fmt: skip
    remote = (
        required(environment, "CI_SERVER_URL").rstrip("/")
        + "/"
        + required(environment, "CI_PROJECT_PATH")
        + ".git"
    )
    # The token reaches git through a credential helper that reads it from the environment:
    # never in a URL or an argument, where logs and `ps` would show it.
    helper = '!f() { echo username=oauth2; echo "password=$' + TEMPLATE_UPDATE_TOKEN + '"; }; f'
    git("-c", "credential.helper=", "-c", f"credential.helper={helper}",
        "push", "--force", "--quiet", remote, f"HEAD:refs/heads/{UPDATE_BRANCH}",
        environment={**os.environ, **environment})  # fmt: skip
    query = urllib.parse.urlencode({"state": "opened", "source_branch": UPDATE_BRANCH})
    base = f"{project(environment)}/merge_requests"
    existing = api(environment, TEMPLATE_UPDATE_TOKEN, "GET", f"{base}?{query}")
    fields = {"title": title, "description": description}
    if existing:
        iid = existing[0]["iid"]
        api(environment, TEMPLATE_UPDATE_TOKEN, "PUT", f"{base}/{iid}", fields)
        print(f"gitlab: updated merge request !{iid}: {title}")
        return
    created = api(environment, TEMPLATE_UPDATE_TOKEN, "POST", base, {
        **fields,
        "source_branch": UPDATE_BRANCH,
        "target_branch": required(environment, "CI_DEFAULT_BRANCH"),
        "labels": "type:chore",
        "remove_source_branch": True,
    })  # fmt: skip
    print(f"gitlab: opened merge request !{created['iid']}: {title}")


def main(argv: Sequence[str] | None = None, environment: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(description="GitLab API calls of the pipeline's bot jobs.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("merge-request-note").add_argument("file", type=Path)
    commands.add_parser("sync-labels").add_argument("file", type=Path)
    commands.add_parser("template-update-merge-request").add_argument("folder", type=Path)
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "merge-request-note":
            body = arguments.file.read_text(encoding="utf-8")
            try:
                post_merge_request_note(environment, body)
            except GitLabError:
                print(body, file=sys.stderr)  # the result stays readable in the job log
                raise
        elif arguments.command == "sync-labels":
            import yaml  # only this command needs it (.gitlab/requirements.txt installs it)

            sync_labels(environment, yaml.safe_load(arguments.file.read_text(encoding="utf-8")))
        else:
            open_template_update_merge_request(environment, arguments.folder)
    except GitLabError as error:
        print(f"gitlab: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
