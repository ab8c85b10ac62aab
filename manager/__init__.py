"""swarmlet manager components: Raft, the replicated store, orchestration, control API."""
