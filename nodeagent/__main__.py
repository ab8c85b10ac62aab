"""``python -m nodeagent``: the node agent every swarmlet node runs (see nodeagent.node)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from nodeagent.options import OptionsError, parse_options

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Parse the configuration, run the agent, return the exit code (2: bad configuration)."""
    try:
        options = parse_options(
            sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ
        )
    except OptionsError as exc:
        print(f"swarmlet: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=options.log_level.upper(),
        format=f"%(asctime)s %(levelname)s {options.hostname} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # gRPC's C core logs connection churn (peers going away) at info level on stderr; in a node's
    # log that is noise next to the agent's own lines. Set before grpc is first imported.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # Start-up makes hundreds of thousands of objects that live as long as the process (modules,
    # classes, protobuf descriptors) and almost no garbage; the collector would walk them again
    # and again while they are made: a fifth of the imports' CPU (0.06-0.09 s of 0.31-0.35 s in
    # the node image). It is off until the agent has started, and then those objects are moved
    # out of its reach for good (gc.freeze), so later collections do not walk them either.
    gc.disable()
    # Imported after the options are good, so that `--help` and bad flags answer at once.
    from nodeagent.node import run_agent

    try:
        return asyncio.run(run_agent(options, on_ready=_collect_from_now_on))
    finally:
        gc.enable()  # also after a start that failed, for a caller that goes on


def _collect_from_now_on() -> None:
    gc.freeze()
    gc.enable()


if __name__ == "__main__":
    exit_code = main()
    # Everything durable is fsynced and every server closed by now. Skipping the interpreter's
    # teardown (module finalizers, gRPC's C core) saves 0.15-0.3 s on a busy machine, which is
    # most of the one-second SIGTERM budget; logs are flushed first.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
