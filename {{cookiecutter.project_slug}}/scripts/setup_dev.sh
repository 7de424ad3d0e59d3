#!/usr/bin/env bash
# One command from a fresh clone to a working environment: `bash scripts/setup_dev.sh`.
# Creates .venv with the project and its dev tools, then trains the smoke config once.
# On a machine without a GPU, run it as `UV_TORCH_BACKEND=cpu bash scripts/setup_dev.sh`
# to get the small CPU build of torch instead of the CUDA one.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
  echo "setup_dev: uv is not installed. Fix: python3 -m pip install uv (or see https://docs.astral.sh/uv/)" >&2
  exit 1
fi

# .python-version holds the lowest supported Python; uv picks it (or a newer one you name).
[ -d .venv ] || uv venv .venv
# Compile bytecode once now, so the first runs do not pay for it.
UV_COMPILE_BYTECODE=1 uv pip install --python .venv -e . --group dev

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
.venv/bin/python -m {{ cookiecutter.package_name }}.train --config configs/smoke.yaml  # into outputs/smoke/<time>

echo
echo "Ready. Activate with: source .venv/bin/activate"
echo "Then: nox (all checks), python -m {{ cookiecutter.package_name }}.train --config configs/default.yaml"
