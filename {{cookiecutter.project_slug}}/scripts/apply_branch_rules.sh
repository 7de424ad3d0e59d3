#!/usr/bin/env bash
# Apply .github/rulesets/protected-branches.json to the GitHub repository: no direct pushes,
# force pushes or deletion of main and develop; a pull request with one approval after its last
# push and the CI checks passing on an up-to-date branch (CONTRIBUTING.md, "Branches").
# Run it again after changing the file: it updates the ruleset of the same name in place.
#
#   bash scripts/apply_branch_rules.sh [OWNER/REPO]     (default: the repository of this clone)
#
# Needs the GitHub CLI logged in as a repository admin (`gh auth login`). Rulesets work in public
# repositories on every plan and in private ones on GitHub Pro, Team and Enterprise.
set -euo pipefail

ruleset_file="$(dirname "$0")/../.github/rulesets/protected-branches.json"
repository="${1:-$(gh repo view --json nameWithOwner --jq .nameWithOwner)}"
name="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["name"])' "$ruleset_file")"

# This repository's own rulesets only (an organization's apply on top and are left alone).
existing="$(gh api "repos/$repository/rulesets?includes_parents=false" \
  --jq "[.[] | select(.name == \"$name\") | .id] | first // empty")"
if [[ -n "$existing" ]]; then
  gh api --method PUT "repos/$repository/rulesets/$existing" --input "$ruleset_file" --silent
  echo "Updated the ruleset '$name' (id $existing) of $repository."
else
  gh api --method POST "repos/$repository/rulesets" --input "$ruleset_file" --silent
  echo "Created the ruleset '$name' on $repository."
fi
echo "Check it: https://github.com/$repository/rules"
