"""What a `ci_platform=gitlab` bake holds, and a real GitLab CI interpreter to ask which jobs a
pipeline would run: gitlab-ci-local (npm), installed on first use by `install_gitlab_ci_local`.

gitlab-ci-local 4.56 is the last line that runs on Node 20; newer releases need Node 22. It
evaluates each job's `rules:` (`--list-json` prints `when: never` for a job left out), but not
`workflow:rules`, so `pipeline_jobs` evaluates those with gitlab-ci-local's own rule evaluator
(`Utils.getRulesResult`, the function behind every job's rules) through node.

gitlab-ci-local evaluates `=~` with RE2, GitLab's own regex engine, through the `re2` package:
a native addon that npm builds from source (about two minutes of CPU) wherever GitHub's prebuilt
binaries cannot be downloaded, as on this project's CI. It is installed here with `re2` replaced
by `re2-wasm`, Google's own build of the same RE2 library to WebAssembly (a few seconds); the
two differ only in that `re2-wasm` asks for the `u` flag, which `re2` implies (it matches on
UTF-8 always). It is installed once per machine, into a cache folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml

Pipeline = tuple[Path, dict[str, str]]
GITLAB_CI_LOCAL_VERSION = "4.56.2"
RE2_WASM_VERSION = "1.0.2"
# A package named `re2` that npm installs in place of the native one (`overrides`).
RE2_FROM_WASM = {
    "package.json": json.dumps({"name": "re2", "version": "1.21.4", "main": "index.js",
                                "dependencies": {"re2-wasm": RE2_WASM_VERSION}}),
    "index.js": """"use strict";
const { RE2 } = require("re2-wasm");
// The native re2 treats every pattern as Unicode; re2-wasm refuses one without the `u` flag.
class UnicodeRE2 extends RE2 {
  constructor(pattern, flags = "") {
    super(pattern, flags.includes("u") ? flags : flags + "u");
  }
}
module.exports = UnicodeRE2;
module.exports.default = UnicodeRE2;
""",
}  # fmt: skip
# Lists many pipelines in one node process: each CLI start costs about a second of CPU (node
# loading gitlab-ci-local) for 0.2 s of listing. Each listing is gitlab-ci-local's own `handler`,
# the function its CLI calls with the parsed command line, given what
# `gitlab-ci-local --list-json --no-cleanup --variable NAME=value ...` parses to, and run in the
# pipeline's folder, as the CLI runs there. --no-cleanup: a listing starts no containers, and
# the cleanup would run two `docker` commands for each job. workflow:rules first (see above).
PIPELINE_JOBS = """
const [source, pipelines] = process.argv.slice(1);
const { handler } = await import(`${source}/handler.js`);
const { Utils } = await import(`${source}/utils.js`);
const { WriteStreamsMock } = await import(`${source}/write-streams.js`);
const listed = [];
for (const { folder, workflowRules, variables } of JSON.parse(pipelines)) {
  process.chdir(folder);
  const options = { rules: workflowRules, variables, cwd: ".",
                    argv: { evaluateRuleChanges: false } };
  const workflow = Utils.getRulesResult(options, null, "always").when;
  if (workflow !== "always") {
    listed.push({ workflow });
    continue;
  }
  const streams = new WriteStreamsMock();
  const variable = Object.entries(variables).map(([name, value]) => `${name}=${value}`);
  try {
    await handler({ listJson: true, cleanup: false, variable }, streams);
  } catch (error) {
    listed.push({ workflow, error: [String(error), ...streams.stderrLines].join("\\n") });
    continue;
  }
  streams.flush();
  listed.push({ workflow, jobs: JSON.parse(streams.stdoutLines.join("\\n")) });
}
console.log(JSON.stringify(listed));
"""


def install_folder() -> Path:
    """Where gitlab-ci-local is installed: $GITLAB_CI_LOCAL_HOME, or a per-version cache folder."""
    if os.environ.get("GITLAB_CI_LOCAL_HOME"):
        return Path(os.environ["GITLAB_CI_LOCAL_HOME"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = f"gitlab-ci-local-{GITLAB_CI_LOCAL_VERSION}-re2-wasm-{RE2_WASM_VERSION}"
    return cache / "torch-template" / name


def install_gitlab_ci_local() -> Path | None:
    """The folder holding node_modules/gitlab-ci-local, installed with npm if it is not there
    yet; None when this machine has no npm (the caller skips, saying so)."""
    folder = install_folder()
    npm = shutil.which("npm")
    if npm is None and not is_installed(folder):
        return None
    folder.parent.mkdir(parents=True, exist_ok=True)
    # One install at a time (two sessions' tests on one machine): the others wait for it.
    with (folder.parent / f"{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_installed(folder):
            # Into a folder beside it, renamed when complete: an install cut short is never
            # taken for a finished one.
            partial = folder.with_name(f"{folder.name}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            shim = partial / "re2-from-wasm"
            shim.mkdir(parents=True)
            for name, text in RE2_FROM_WASM.items():
                (shim / name).write_text(text, encoding="utf-8")
            manifest = {"private": True,
                        "dependencies": {"gitlab-ci-local": GITLAB_CI_LOCAL_VERSION},
                        "overrides": {"re2": f"file:./{shim.name}"}}  # fmt: skip
            (partial / "package.json").write_text(json.dumps(manifest), encoding="utf-8")
            # --install-links: the shim is copied into node_modules, where it finds re2-wasm.
            subprocess.run(
                [str(npm), "install", "--prefix", str(partial), "--install-links",
                 "--no-audit", "--no-fund"],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            shutil.rmtree(folder, ignore_errors=True)
            partial.rename(folder)
    return folder


def is_installed(folder: Path) -> bool:
    package = folder / "node_modules" / "gitlab-ci-local" / "package.json"
    if not package.is_file():
        return False
    return bool(json.loads(package.read_text())["version"] == GITLAB_CI_LOCAL_VERSION)


def pipeline_jobs(installed: Path, pipelines: list[Pipeline]) -> list[set[str]]:
    """For each pipeline (a project folder, and the predefined variables of that kind of
    pipeline), the jobs it would run; empty when workflow:rules create no pipeline at all."""
    source = installed / "node_modules" / "gitlab-ci-local" / "src"
    batch = []
    for folder, variables in pipelines:
        config = yaml.safe_load((folder / ".gitlab-ci.yml").read_text(encoding="utf-8"))
        batch.append({"folder": str(folder), "workflowRules": config["workflow"]["rules"],
                      "variables": variables})  # fmt: skip
    listed = subprocess.run(
        ["node", "--input-type=module", "-e", PIPELINE_JOBS, source.as_uri(), json.dumps(batch)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    jobs: list[set[str]] = []
    for (folder, variables), listing in zip(pipelines, json.loads(listed.stdout), strict=True):
        if listing["workflow"] == "never":
            jobs.append(set())
            continue
        assert listing["workflow"] == "always", f"workflow:rules gave {listing['workflow']!r}"
        assert "error" not in listing, f"in {folder} with {variables}: {listing['error']}"
        jobs.append({job["name"] for job in listing["jobs"] if job["when"] != "never"})
    return jobs
