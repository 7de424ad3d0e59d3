#!/usr/bin/env bash
# One command from a fresh clone to a working environment: `bash scripts/setup_dev.sh`.
# Creates .venv with exactly what uv.lock pins (the project and its dev tools), adds this
# machine's torch, then trains the smoke config once. On a machine without a GPU, run it as
# `UV_TORCH_BACKEND=cpu bash scripts/setup_dev.sh` to get the small CPU build of torch instead
# of the CUDA one. A fresh project has no uv.lock yet: the first run makes it, and the smoke
# config's loss baseline (baselines/smoke.json, which `nox -s smoke` and CI check), to be committed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
  echo "setup_dev: uv is not installed. Fix: python3 -m pip install uv (or see https://docs.astral.sh/uv/)" >&2
  exit 1
fi

# This script's environment is .venv, whatever the caller's shell says: inside another tool's
# environment (an activated venv, a nox session), uv would otherwise sync into that one.
export UV_PROJECT_ENVIRONMENT="$PWD/.venv"
unset VIRTUAL_ENV

new_lock=no
if [ ! -f uv.lock ]; then
  echo "setup_dev: no uv.lock yet; locking every dependency except torch (from PyPI)"
  uv lock
  new_lock=yes
fi
# .python-version holds the lowest supported Python; uv picks it (or a newer one you name).
# --locked: fail, rather than re-resolve, when pyproject.toml and uv.lock disagree (fix: uv lock).
# --inexact: keep torch, which uv.lock leaves out.
uv sync --locked --inexact
# torch as pyproject.toml's range asks, in the build uv picks for this machine (CUDA, or CPU
# with UV_TORCH_BACKEND=cpu). Run from / so that uv skips this folder's [tool.uv], which
# excludes torch from every resolution made here; what uv.lock installed above stays as it is.
# Bytecode for all of .venv is compiled once now, so the first runs do not pay for it
# (UV_COMPILE_BYTECODE=0 skips that).
UV_COMPILE_BYTECODE="${UV_COMPILE_BYTECODE:-1}" \
  uv --directory / pip install --python "$PWD/.venv" -r "$PWD/pyproject.toml"

# Hooks run the tools in .venv (offline, same versions as nox). git starts hooks with the
# caller's PATH, so put .venv/bin first in each hook script, whether or not .venv is activated.
if [ -d .git ]; then
  .venv/bin/pre-commit install --hook-type pre-commit --hook-type commit-msg
  for hook in .git/hooks/pre-commit .git/hooks/commit-msg; do
    if ! grep -q "torch-template: venv" "$hook"; then
      # Single quotes on purpose: $PATH and $(git ...) must expand when the hook runs, not now.
      # shellcheck disable=SC2016
      sed -i.bak '1a\
export PATH="$(git rev-parse --show-toplevel)/.venv/bin:$PATH"  # torch-template: venv
' "$hook"
      rm -f "$hook.bak"
    fi
  done
else
  echo "setup_dev: not a git repository; run git init, then this script again for the hooks" >&2
fi
.venv/bin/python -m {{ cookiecutter.package_name }}.health_check
new_baseline=no
if [ ! -f baselines/smoke.json ]; then
  echo "setup_dev: no baselines/smoke.json yet; the smoke run makes it (python -m {{ cookiecutter.package_name }}.baseline)"
  .venv/bin/python -m {{ cookiecutter.package_name }}.baseline update --config configs/smoke.yaml  # into outputs/smoke/<time>
  new_baseline=yes
else
  .venv/bin/python -m {{ cookiecutter.package_name }}.train --config configs/smoke.yaml  # into outputs/smoke/<time>
fi

echo
echo "Ready. Activate with: source .venv/bin/activate"
echo "Then: nox (all checks), python -m {{ cookiecutter.package_name }}.train --config configs/default.yaml"
new_files=""
[ "$new_lock" = yes ] && new_files="uv.lock"
[ "$new_baseline" = yes ] && new_files="${new_files:+$new_files }baselines/smoke.json"
if [ -n "$new_files" ]; then
  echo
  echo "New: $new_files. Commit them, so that every clone, CI run and image installs the same"
  echo "packages (uv.lock) and CI holds training to the same losses (baselines/smoke.json):"
  echo "  git add $new_files && git commit -m 'build: lock the environment and the smoke baseline'"
fi
