#!/usr/bin/env bash
# Runs the whole test suite. pytest exits 5 when it collects nothing: that is a failure here,
# since a suite that runs no test proves nothing.
#
# Where a Docker engine answers, the images are built (or found up to date) first, outside
# pytest, so that the build's progress and times show in the log; the compose tests need them.
# Where none answers (DOCKER_HOST is honoured, as by every docker call of the project), the
# compose tests skip and say why; with CI=true they fail instead, since CI machines always have
# an engine and a skip there would hide a broken set-up (tests/needs.py decides the same way).
# The compose tests bring up their own compose project, never a cluster the user has up.
set -uo pipefail
cd "$(dirname "$0")/.."
case "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
  true|1|yes) ci=1 ;;
  *) ci=0 ;;
esac
if problem=$(docker version --format '{{.Server.Version}}' 2>&1 >/dev/null); then
  echo "swarmlet: building the images that are missing"
  if ! .venv/bin/python -m deploy.images; then
    echo "swarmlet: the image build failed" >&2
    exit 1
  fi
else
  reason=$(printf '%s\n' "$problem" | grep -v '^[[:space:]]*$' | tail -n 1)
  if [ "$ci" -eq 1 ]; then
    echo "swarmlet: CI=true and no Docker engine answers (${reason:-docker version failed}):" \
         "the compose tests will fail" >&2
  else
    echo "swarmlet: no Docker engine answers (${reason:-docker version failed});" \
         "the compose tests will be skipped"
  fi
fi
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "swarmlet: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
