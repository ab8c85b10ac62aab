"""swarmlet node agent: what every node runs (gossip, agent session, runtime, metrics)."""
