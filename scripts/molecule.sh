#!/usr/bin/env bash
# Run Molecule scenarios one after the other (`molecule test -s NAME` each, from the repository root)
# and print each scenario's wall time and the total. Stops at the first failing scenario; Molecule
# has already destroyed its lab by then (destroy: always).
#
#   scripts/molecule.sh [SCENARIO...]     default: every molecule/*/molecule.yml
#
# Needs root, the virtualenv's bin on PATH (molecule calls ansible-config) and the checkout linked
# as a collection (scripts/setup.sh); `make molecule` provides all three.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export ANSIBLE_COLLECTIONS_PATH="${ANSIBLE_COLLECTIONS_PATH:-$ROOT/.build/collections}"
# Scenarios live in molecule/ at the repository root (Molecule would suggest extensions/molecule).
export MOLECULE_GLOB="molecule/*/molecule.yml"

if [ "$#" -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=()
  for file in molecule/*/molecule.yml; do
    scenarios+=("$(basename "$(dirname "$file")")")
  done
fi

summary=()
suite_start=$(date +%s)
status=0
for scenario in "${scenarios[@]}"; do
  start=$(date +%s)
  echo "molecule: === scenario $scenario ==="
  if molecule test -s "$scenario"; then
    result=passed
  else
    result=FAILED
    status=1
  fi
  summary+=("$(printf '%-12s %4d s  %s' "$scenario" "$(($(date +%s) - start))" "$result")")
  [ "$status" -eq 0 ] || break
done

echo "molecule: scenario     time  result"
for line in "${summary[@]}"; do
  echo "molecule: $line"
done
echo "molecule: ${#summary[@]} of ${#scenarios[@]} scenarios in $(($(date +%s) - suite_start)) s"
exit "$status"
