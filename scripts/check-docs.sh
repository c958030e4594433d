#!/usr/bin/env bash
# Fails when docs/generated differs from what the last build generated, i.e.
# when a .td change was committed without the regenerated reference.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! git rev-parse --git-dir > /dev/null 2>&1; then
  echo "check-docs: SKIP: not a git checkout, cannot compare docs/generated"
  exit 0
fi
if [[ ! -f docs/generated/Dialects/MoE.md ]]; then
  echo "check-docs: docs/generated/Dialects/MoE.md is missing; build first" >&2
  exit 1
fi
if ! git diff --exit-code --stat -- docs/generated; then
  echo "check-docs: docs/generated changed in this build; commit it" >&2
  exit 1
fi
if [[ -n "$(git ls-files --others --exclude-standard -- docs/generated)" ]]; then
  echo "check-docs: docs/generated has new files; commit them" >&2
  git ls-files --others --exclude-standard -- docs/generated >&2
  exit 1
fi
echo "check-docs: docs/generated is current"
