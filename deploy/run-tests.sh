#!/usr/bin/env bash
# Runs the whole test suite. pytest exits 5 when it collects nothing: that is a failure here,
# since a suite that runs no test proves nothing.
#
# Where a Docker engine answers, the images are built (or found up to date) first, outside
# pytest, so that the build's progress and times show in the log; the compose tests need them.
# Where none answers, the compose tests skip and say why.
set -uo pipefail
cd "$(dirname "$0")/.."
if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  echo "swarmlet: building the images that are missing"
  if ! .venv/bin/python -m deploy.images; then
    echo "swarmlet: the image build failed" >&2
    exit 1
  fi
else
  echo "swarmlet: no Docker engine answers; the compose tests will be skipped"
fi
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "swarmlet: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
