# The two commands of the README: `make up` brings a cluster up, `make test` runs the tests.
# Both do every set-up step they need on a fresh machine.
.PHONY: up test setup lint down

setup:
	@bash deploy/bootstrap.sh

up: setup
	.venv/bin/swarmlet up

down: setup
	.venv/bin/swarmlet down

lint: setup
	bash proto/generate.sh --check
	.venv/bin/ruff check .
	.venv/bin/mypy nodeagent manager deploy

test: setup lint
	bash deploy/run-tests.sh
