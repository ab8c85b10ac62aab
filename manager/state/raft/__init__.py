"""Raft consensus among managers: a core without I/O, durable storage, and the gRPC shell."""
