"""The allocator: resources a task needs before it can be scheduled (networks come later).

For now it moves each new task to pending, as swarmkit's allocator does once a task's networks
are allocated; see :mod:`manager.allocator.component`.
"""

from manager.allocator.component import ALLOCATED_MESSAGE, Allocator

__all__ = ["ALLOCATED_MESSAGE", "Allocator"]
