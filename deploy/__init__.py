"""Bringing swarmlet clusters up and down, chaos, and the swarmlet command line."""
