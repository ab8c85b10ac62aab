"""The network database: endpoint and peer tables of the overlays, over gossip (see core.py)."""
