"""``swarmlet down``: remove every container, network and volume (or process) that up made.

The join tokens, the root CA certificate and the operator certificate stay in the state folder
(no CA key is ever there); the next `swarmlet up` replaces them with those of the cluster its
manager1 makes.
"""

from __future__ import annotations

import argparse

from deploy.backends import load_backend
from deploy.backends.base import BackendError, read_state, remove_state
from deploy.commands.status import console, error

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``swarmlet down`` takes no options."""


def run(args: argparse.Namespace) -> int:
    """Remove the cluster the state file names (compose if none); exit 1 if that fails."""
    out = console()
    state = read_state()
    try:
        if state is None:
            from deploy.backends.compose import docker_engine_error

            # Nothing recorded: clean up a compose project if an engine answers, else nothing to do.
            if docker_engine_error(timeout=5.0) is not None:
                out.print("Nothing to remove: no cluster is up.")
                return 0
        backend = load_backend(state.backend if state else "compose")
        removed = backend.down()
    except BackendError as e:
        return error(str(e))
    remove_state()
    if removed:
        out.print(f"Removed ({backend.name}): " + ", ".join(removed), soft_wrap=True)
    else:
        out.print("Nothing to remove: no cluster is up.")
    return 0
