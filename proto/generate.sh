#!/usr/bin/env bash
# Regenerates the Python modules for every proto/swarmlet/v1/*.proto (committed beside them).
# With --check, regenerates into a temporary folder and fails if the committed ones are stale.
set -euo pipefail
cd "$(dirname "$0")"
py=${PYTHON:-../.venv/bin/python}
out=.
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
shopt -s nullglob
protos=(swarmlet/v1/*.proto)
if [ ${#protos[@]} -eq 0 ]; then
  exit 0
fi
"$py" -m grpc_tools.protoc -I . --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" "${protos[@]}"
if [ "${1:-}" = "--check" ]; then
  stale=0
  for f in "$out"/swarmlet/v1/*.py "$out"/swarmlet/v1/*.pyi; do
    rel=${f#"$out"/}
    if ! cmp -s "$f" "$rel"; then
      echo "proto: $rel is stale; run proto/generate.sh" >&2
      stale=1
    fi
  done
  exit $stale
fi
