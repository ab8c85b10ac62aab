"""Bring-up time: `swarmlet up` (images built) until 5 nodes are Ready and a leader exists.

    .venv/bin/python bench/bringup.py --runs 5 [--project bench-bringup]

Each run brings up a cluster of its own compose project (``bench-bringup`` unless ``--project``
names another; its own addresses and state folder), times the whole command, then reads where
the time went from the containers' start times (``docker inspect``) and the node agents' own
log lines, and removes the project. The phases, from the moment `swarmlet up` was started:

  compose    the first container started (CLI start, compose loading the project, the network)
  started    the last container started
  imported   the last agent's first log line (Python start and imports, after its container)
  gossip     the last agent that knows every other member alive
  leader     the first Raft leader
  joined     the last node's join accepted ("joined cluster")
  ready      `swarmlet up` saw 5 Ready and a leader (its own figure), and the command's exit

and, apart, ``cpu``: the most CPU one agent had used when it logged "node agent ready" (seconds
of CPU, not a time: Python's start, the imports and the agent's start, managers' role included),
from agents that log it.

and ``term``: the last Raft term any node logged a leader for (2 when the first leader kept its
place; more when leaders changed during the bring-up);

and, apart, when the cluster's Prometheus container started (``prom``): `up` starts it once the
nodes are started and does not wait for it, so it is in none of the phases above.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROJECT = "bench-bringup"
PHASES = ("compose", "started", "imported", "gossip", "leader", "joined", "ready", "exit", "prom", "cpu",
          "term")
_READY_CPU = re.compile(r"node agent ready \(([0-9.]+) s of CPU\)")
_LEADER_TERM = re.compile(r"raft: leader is now \S+ \(term (\d+)\)")
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _swarmlet(state: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SWARMLET_STATE=str(state), PYTHONPATH=f"{ROOT}:{ROOT / 'proto'}")
    env.pop("SWARMLET_PROJECT", None)
    return subprocess.run([sys.executable, "-m", "deploy.cli", "--project", PROJECT, *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=False)


def _epoch(text: str) -> float:
    """Docker's RFC 3339 time with nanoseconds, or an agent log stamp (UTC), as epoch seconds."""
    if "T" in text:
        base, _, frac = text.rstrip("Z").partition(".")
        stamp = datetime.datetime.fromisoformat(base).replace(tzinfo=datetime.UTC)
        return stamp.timestamp() + float(f"0.{frac or '0'}")
    stamp = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def _containers(nodes: bool = True) -> list[dict[str, object]]:
    """The project's node containers (or, with ``nodes=False``, the others: its Prometheus)."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"],
                         capture_output=True, text=True, check=True).stdout.split()
    if not ids:
        return []
    found = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                                      check=True).stdout)
    def is_node(container: dict[str, Any]) -> bool:
        service = container["Config"]["Labels"].get("com.docker.compose.service", "")
        return bool(re.fullmatch(r"(manager|worker)\d+", service))

    return [c for c in found if is_node(c) == nodes]


def _log_times(container: str) -> list[tuple[float, str]]:
    proc = subprocess.run(["docker", "logs", container], capture_output=True, text=True, check=False)
    lines = []
    for line in (proc.stdout + proc.stderr).splitlines():
        match = _STAMP.match(line)
        if match:
            lines.append((_epoch(match.group(1)), line))
    return sorted(lines)


def one_run(state: pathlib.Path, extra: list[str], keep: pathlib.Path | None = None) -> dict[str, float]:
    """One `swarmlet up`, its phases in seconds from the start, then `swarmlet down`."""
    start = time.time()
    up = _swarmlet(state, "up", "--timeout", "60", *extra)
    end = time.time()
    try:
        if up.returncode != 0:
            tails = {str(c["Name"]): [line for _, line in _log_times(str(c["Id"]))][-8:]
                     for c in _containers()}
            shown = "\n".join(f"{name}:\n  " + "\n  ".join(lines) for name, lines in tails.items())
            raise RuntimeError(f"swarmlet up failed:\n{up.stdout}\n{up.stderr}\n{shown}")
        after = re.search(r"Ready, leader \S+: ([0-9.]+) s after start, ([0-9.]+) s in all", up.stdout)
        containers = _containers()
        started = [_epoch(str(c["State"]["StartedAt"])) for c in containers]  # type: ignore[index]
        logs = {str(c["Name"]).lstrip("/"): _log_times(str(c["Id"])) for c in containers}
        first = [lines[0][0] for lines in logs.values() if lines]
        members = len(containers) - 1
        gossip = []
        for lines in logs.values():
            alive = [t for t, line in lines if " is alive at incarnation" in line]
            if len(alive) >= members:
                gossip.append(alive[members - 1])
        leader = [t for lines in logs.values() for t, line in lines if "raft: leader is now" in line]
        joined = [min(t for t, line in lines if "joined cluster" in line)
                  for lines in logs.values() if any("joined cluster" in line for _, line in lines)]
        phases = {
            "compose": min(started) - start, "started": max(started) - start,
            "imported": max(first) - start if first else float("nan"),
            "gossip": max(gossip) - start if len(gossip) == len(containers) else float("nan"),
            "leader": min(leader) - start if leader else float("nan"),
            "joined": max(joined) - start if len(joined) == len(containers) else float("nan"),
            "exit": end - start,
        }
        # `up`'s own "in all" figure ends when it saw the cluster ready (before its last prints).
        phases["ready"] = float(after.group(2)) if after else float("nan")
        others = [_epoch(str(c["State"]["StartedAt"])) for c in _containers(nodes=False)]  # type: ignore[index]
        phases["prom"] = max(others) - start if others else float("nan")
        cpu = [float(m.group(1)) for lines in logs.values() for _, line in lines
               if (m := _READY_CPU.search(line))]
        phases["cpu"] = max(cpu) if cpu else float("nan")
        # The last Raft term any node logged: a cluster that elected once and kept its leader
        # ends in term 2 (the first manager's campaign); more means leaders changed while coming up.
        terms = [int(m.group(1)) for lines in logs.values() for _, line in lines
                 if (m := _LEADER_TERM.search(line))]
        phases["term"] = max(terms) if terms else float("nan")
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for name, lines in logs.items():
                (keep / f"{name}.log").write_text("".join(line + "\n" for _, line in lines))
        return phases
    finally:
        _swarmlet(state, "down")


def main() -> int:
    global PROJECT
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--publish", default=None, help="passed to `swarmlet up --publish` (\"\" for none)")
    parser.add_argument("--project", default=PROJECT, help=f"the compose project (default {PROJECT})")
    parser.add_argument("--keep-logs", type=pathlib.Path, default=None, metavar="DIR",
                        help="save each run's node logs under DIR/run-N/ before the project is removed")
    args = parser.parse_args()
    PROJECT = args.project
    extra = [] if args.publish is None else ["--publish", args.publish]
    state = pathlib.Path(tempfile.mkdtemp(prefix=f"{PROJECT}-"))
    runs = []
    print("run  " + "  ".join(f"{p:>8s}" for p in PHASES)
          + "   (seconds from the start of `swarmlet up`; cpu: see above)")
    failed = 0
    for i in range(args.runs):
        try:
            keep = args.keep_logs / f"run-{i + 1}" if args.keep_logs else None
            phases = one_run(state, extra, keep)
        except RuntimeError as e:
            # Seen here: Docker's embedded DNS answering "not found" for every other container
            # of the fresh network for over a minute (a known intermittent engine problem).
            failed += 1
            print(f"{i + 1:3d}  failed: " + "\n     ".join(str(e).splitlines()[-12:]), flush=True)
            continue
        runs.append(phases)
        print(f"{i + 1:3d}  " + "  ".join(f"{phases[p]:8.2f}" for p in PHASES), flush=True)
    if not runs:
        return 1
    print("med  " + "  ".join(f"{statistics.median(r[p] for r in runs):8.2f}" for p in PHASES))
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; goal: 5 Ready and a leader within 2 s; "
          f"{failed} of {args.runs} runs failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
