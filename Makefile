# The two commands of the README: `make up` brings a cluster up, `make test` runs the tests.
# Both do every set-up step they need on a fresh machine (virtual environment, Compose v2 plugin,
# images built from Debian packages: no registry is ever used).
.PHONY: up test setup lint down images status

setup:
	@bash deploy/bootstrap.sh

up: setup
	.venv/bin/swarmlet up

down: setup
	.venv/bin/swarmlet down

status: setup
	.venv/bin/swarmlet status

# The base image (mmdebstrap + docker import) and the node image (offline wheels), each rebuilt
# only when its inputs changed.
images: setup
	.venv/bin/python -m deploy.images

lint: setup
	bash proto/generate.sh --check
	.venv/bin/ruff check .
	.venv/bin/mypy nodeagent manager deploy

test: setup lint
	bash deploy/run-tests.sh
