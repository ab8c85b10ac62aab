"""swarmlet node agent: what every node runs (gossip, agent session, runtime, metrics)."""

__version__ = "0.1.0"
"""swarmlet's version (pyproject.toml reads it from here): a constant, because reading it from the
installed package's metadata meant importing importlib.metadata at every start (0.06 s of CPU)."""
