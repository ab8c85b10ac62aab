"""The cluster's replicated state: Raft (``raft/``) and the object store it applies (``store/``)."""
