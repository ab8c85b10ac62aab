"""Linearizability checking of operation histories (register and kv models).

``swarmlet check linearizable FILE`` is the command line over :func:`check_history`.
"""

from manager.check.history import HistoryError, Operation, load_history, parse_operations, read_history
from manager.check.linearizable import CheckResult, check_history, check_operations

__all__ = [
    "CheckResult",
    "HistoryError",
    "Operation",
    "check_history",
    "check_operations",
    "load_history",
    "parse_operations",
    "read_history",
]
