"""The agent's side of the node: its session with the managers (join, heartbeats)."""
