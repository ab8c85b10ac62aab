"""Where a cluster's nodes run: compose (a container each) or local (a process each).

``base`` holds what both share (the Backend protocol, node handles, the cluster's state file);
this module picks one by name, importing it only when asked so that the local backend never
loads python-on-whales.
"""

from __future__ import annotations

from deploy.backends.base import BACKENDS, Backend, BackendError, read_state

__all__ = ["load_backend"]


def load_backend(name: str | None = None) -> Backend:
    """The backend called ``name``; without a name, the one the running cluster uses (compose if none)."""
    if name is None:
        state = read_state()
        name = state.backend if state else "compose"
    if name == "compose":
        from deploy.backends.compose import ComposeBackend

        return ComposeBackend()
    if name == "local":
        from deploy.backends.local import LocalBackend

        return LocalBackend()
    raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
