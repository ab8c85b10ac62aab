"""Subcommands of the swarmlet command line, one module each."""
