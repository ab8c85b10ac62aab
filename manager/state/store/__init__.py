"""The replicated store: Swarm's objects, batched transactions, optimistic concurrency, watches.

Raft replicates opaque entries; this package is what they mean. The leader's API layer builds
operations, checks them (``Store.check``), encodes them with the proposer's timestamp
(``encode_batch``) and proposes the bytes; every manager then ``apply``s the committed entry
and reaches the same state. See docs/store.md.
"""

from manager.state.store.commands import Create, Delete, Op, Update, decode_batch, encode_batch
from manager.state.store.errors import (
    Ambiguous,
    InUse,
    InvalidObject,
    NameConflict,
    NotFound,
    StoreError,
    UpdateOutOfSequence,
)
from manager.state.store.objects import (
    KINDS,
    NAMED_KINDS,
    TASK_STATES,
    StoredObject,
    default_cluster_spec,
    format_timestamp,
    new_id,
)
from manager.state.store.store import ApplyResult, Store
from manager.state.store.validate import MAX_CONFIG_BYTES, MAX_PAYLOAD_BYTES, MAX_SECRET_BYTES
from manager.state.store.watch import Change, Watch

__all__ = [
    "KINDS",
    "MAX_CONFIG_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_SECRET_BYTES",
    "NAMED_KINDS",
    "TASK_STATES",
    "Ambiguous",
    "ApplyResult",
    "Change",
    "Create",
    "Delete",
    "InUse",
    "InvalidObject",
    "NameConflict",
    "NotFound",
    "Op",
    "Store",
    "StoreError",
    "StoredObject",
    "Update",
    "UpdateOutOfSequence",
    "Watch",
    "decode_batch",
    "default_cluster_spec",
    "encode_batch",
    "format_timestamp",
    "new_id",
]
