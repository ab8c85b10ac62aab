"""``swarmlet check linearizable FILE [--model register|kv] [--explain] [--timeout S]``.

Is a recorded history linearizable? Exit codes: 0 linearizable (with ``--explain``, a legal order
is printed), 1 not linearizable (the operations that cannot be ordered are printed), 2 malformed or
unreadable input (the line is named), 3 unknown (the search needed more memory than
--max-memory-mb allows, or more time than --timeout).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from manager.check.history import HistoryError, Operation, parse_operations, read_history
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
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="time the whole check may take before the verdict is 'unknown' (default: no limit)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="when linearizable, print the legal order found (key by key) and what did not take effect",
    )


def run(args: argparse.Namespace) -> int:
    """Check the history; the exit code is the verdict."""
    try:
        events, lines = read_history(args.file)
        if args.max_memory_mb < 1:
            print("swarmlet check linearizable: --max-memory-mb must be at least 1", file=sys.stderr)
            return EXIT_MALFORMED
        if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
            message = "--timeout must be a positive number of seconds"
            print(f"swarmlet check linearizable: {message}", file=sys.stderr)
            return EXIT_MALFORMED
        result = check_history(
            events, args.model, lines=lines, memory_budget=args.max_memory_mb << 20, timeout=args.timeout
        )
    except HistoryError as exc:
        print(f"swarmlet check linearizable: {args.file}: {exc}", file=sys.stderr)
        return EXIT_MALFORMED
    except OSError as exc:
        print(f"swarmlet check linearizable: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_MALFORMED
    print(result.explanation)
    if result.ok:
        if args.explain:
            _print_order(result.order, parse_operations(events, lines), args.model)
        return EXIT_LINEARIZABLE
    if result.unknown:
        return EXIT_UNKNOWN
    print("operations that cannot be ordered:")
    for op in result.unorderable:
        mark = "  <- returned before it could be ordered" if op.get("blocking") else ""
        shown = {k: v for k, v in op.items() if k != "blocking"}
        print(f"  {json.dumps(shown)}{mark}")
    return EXIT_NOT_LINEARIZABLE


def _print_order(order: list[Operation], ops: list[Operation], model: str) -> None:
    """The legal order found, numbered per key, then the operations it leaves out.

    Keys are independent registers (the kv model checks each on its own), so the order is given
    key by key; interleaving them by real time would add nothing to the proof.
    """
    placed = {op.call for op in order}
    key_seen: object = object()  # no key equals it, so the first heading is always printed
    number = 0
    for op in order:
        if op.key != key_seen:
            key_seen = op.key
            number = 0
            if op.key is not None:
                where = f"key {json.dumps(op.key)}"
            else:
                where = "the register" if model == "register" else "the operations without a key"
            print(f"a legal order for {where}:")
        number += 1
        print(f"  {number}. {json.dumps(op.describe())}")
    left_out = [op for op in ops if op.call not in placed]
    if left_out:
        print(
            "not in the order (failed reads and writes, info reads, info writes and cas taken not to"
            " have happened):"
        )
        for op in left_out:
            print(f"  {json.dumps(op.describe())}")
