"""The overlay data plane: VXLAN datagrams, stream tunnels and the embedded DNS (see shell.py)."""
