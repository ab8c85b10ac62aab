"""The node agent's CPU at start, per role, in the node image (docs/bringup.md, "The agent's start").

    python bench/agent_start.py [--image swarmlet/node:TAG] [--runs 3] [--prefix ab]

Starts, one container at a time on a private Docker network (no port published), a bootstrap
manager (``--bootstrap``: it makes the root CA and the join tokens), then, against it, a manager
and a worker that join with those tokens. Each reads its own CPU when it logs "node agent
ready (X s of CPU)" (``time.process_time()``: Python's start, the imports and the agent's start).
Prints each run's figure and the median per role. One container runs at a time, so the
figure is the agent's own, not the contention of five starting together. Every container and the
network are removed at the end, also after a failure.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

_READY = re.compile(r"node agent ready \(([0-9.]+) s of CPU\)")
_WAIT_SECONDS = 60.0


def _docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _ready_cpu(name: str) -> float:
    """The CPU the container's agent logged at ready; waits for the line."""
    deadline = time.monotonic() + _WAIT_SECONDS
    while time.monotonic() < deadline:
        found = _READY.search(_logs(name))
        if found:
            return float(found.group(1))
        time.sleep(0.2)
    raise RuntimeError(f"{name}: no 'node agent ready' within {_WAIT_SECONDS:.0f} s:\n{_logs(name)}")


def _logs(name: str) -> str:
    done = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def _run(name: str, image: str, network: str, hostname: str, args: list[str],
         mounts: Sequence[str] = ()) -> None:
    volumes = [flag for mount in mounts for flag in ("-v", mount)]
    _docker("run", "-d", "--name", name, "--hostname", hostname, "--network", network, "--init",
            *volumes, image, f"--hostname={hostname}", *args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="swarmlet/node:latest")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prefix", default="agentstart", help="names of the containers and network")
    opts = parser.parse_args()
    network = f"{opts.prefix}-net"
    names: list[str] = []
    figures: dict[str, list[float]] = {"bootstrap manager": [], "joining manager": [], "worker": []}
    _docker("network", "create", network)
    try:
        with tempfile.TemporaryDirectory(prefix=f"{opts.prefix}-") as folder:
            for run in range(1, opts.runs + 1):
                boot = f"{opts.prefix}-manager1-{run}"
                names.append(boot)
                _run(boot, opts.image, network, "manager1",
                     ["--role=manager", "--bootstrap", "--manager-token-file=/tmp/mt",
                      "--worker-token-file=/tmp/wt"])
                figures["bootstrap manager"].append(_ready_cpu(boot))
                for token in ("mt", "wt"):
                    path = os.path.join(folder, token)
                    with open(path, "w", encoding="utf-8") as out:
                        out.write(_docker("exec", boot, "cat", f"/tmp/{token}").strip() + "\n")
                tokens = [f"{folder}/mt:/run/mt:ro", f"{folder}/wt:/run/wt:ro"]
                join = f"--join={boot}:2377"
                second = f"{opts.prefix}-manager2-{run}"
                names.append(second)
                _run(second, opts.image, network, "manager2",
                     ["--role=manager", join, "--token-file=/run/mt", "--manager-token-file=/run/mt",
                      "--worker-token-file=/run/wt"], tokens)
                figures["joining manager"].append(_ready_cpu(second))
                worker = f"{opts.prefix}-worker1-{run}"
                names.append(worker)
                _run(worker, opts.image, network, "worker1", ["--role=worker", join, "--token-file=/run/wt"],
                     tokens)
                figures["worker"].append(_ready_cpu(worker))
                _docker("rm", "-f", boot, second, worker)
                print(f"run {run}: " + ", ".join(f"{role} {cpu[-1]:.2f}" for role, cpu in figures.items()),
                      flush=True)
    finally:
        if names:
            _docker("rm", "-f", *names, check=False)
        _docker("network", "rm", network, check=False)
    for role, cpu in figures.items():
        print(f"{role}: median {statistics.median(cpu):.2f} s of CPU at ready "
              f"({', '.join(f'{c:.2f}' for c in cpu)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
