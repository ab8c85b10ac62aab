"""``swarmlet check linearizable FILE [--model register|kv]``: is a recorded history linearizable?

Exit codes: 0 linearizable, 1 not linearizable (the operations that cannot be ordered are printed),
2 malformed or unreadable input (the line is named), 3 unknown (the search needed more memory
than --max-memory-mb allows).
"""

from __future__ import annotations

import argparse
import json
import sys

from manager.check.history import HistoryError, read_history
from manager.check.linearizable import DEFAULT_MEMORY_BUDGET, check_history
from manager.check.models import MODELS

__all__ = ["add_arguments", "run"]

EXIT_LINEARIZABLE = 0
EXIT_NOT_LINEARIZABLE = 1
EXIT_MALFORMED = 2
EXIT_UNKNOWN = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``swarmlet check linearizable``."""
    parser.add_argument("file", metavar="FILE", help="history as JSON lines, one event per line")
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="kv",
        help="kv: one register per key, checked per key (default); register: one register",
    )
    parser.add_argument(
        "--max-memory-mb",
        type=int,
        default=DEFAULT_MEMORY_BUDGET >> 20,
        help="memory the search of one key may use before the verdict is 'unknown' (default %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """Check the history; the exit code is the verdict."""
    try:
        events, lines = read_history(args.file)
        if args.max_memory_mb < 1:
            print("swarmlet check linearizable: --max-memory-mb must be at least 1", file=sys.stderr)
            return EXIT_MALFORMED
        result = check_history(events, args.model, lines=lines, memory_budget=args.max_memory_mb << 20)
    except HistoryError as exc:
        print(f"swarmlet check linearizable: {args.file}: {exc}", file=sys.stderr)
        return EXIT_MALFORMED
    except OSError as exc:
        print(f"swarmlet check linearizable: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_MALFORMED
    print(result.explanation)
    if result.ok:
        return EXIT_LINEARIZABLE
    if result.unknown:
        return EXIT_UNKNOWN
    print("operations that cannot be ordered:")
    for op in result.unorderable:
        mark = "  <- returned before it could be ordered" if op.get("blocking") else ""
        shown = {k: v for k, v in op.items() if k != "blocking"}
        print(f"  {json.dumps(shown)}{mark}")
    return EXIT_NOT_LINEARIZABLE
