"""The `swarmlet up` command's own time, from an strace of its process tree (images built).

    .venv/bin/python bench/uptrace.py --runs 2 [--project uptrace] [--tree PATH]

(``--tree``: another checkout's `swarmlet`, e.g. the main branch's, run the same way.)

    .venv/bin/python bench/uptrace.py --cpu --runs 3 [--tree PATH]

instead stops `up` where it would exec compose and prints the CPU it used until then (its own
and its children's: the docker CLI runs), the wall time and how many modules it had imported.

Each run is ``strace -f -tt -e trace=execve,exit_group`` of `swarmlet --project P up`, then
`swarmlet down`. From the trace:

  to compose     the interpreter's exec to the exec of `docker compose up` of the nodes
                 (Python's start, the CLI's imports, the checks, the images, the state)
  compose        that compose's run, until it exits (the engine creating and starting the nodes)
  after compose  its exit to `up`'s exit (the wait for 5 Ready and a leader, then the tables)
  docker runs    how many docker CLI processes `up` started (compose's plugin not counted)
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
_LINE = re.compile(r"^(\d+)\s+(\d\d):(\d\d):(\d\d\.\d+) (.*)$")


def phases(trace: str) -> dict[str, float]:
    """The phases of one trace (``strace -f -tt`` output), in seconds; docker runs as a count."""
    events = []
    for line in trace.splitlines():
        m = _LINE.match(line)
        if m:
            pid, h, mi, s, rest = m.groups()
            events.append((pid, int(h) * 3600 + int(mi) * 60 + float(s), rest))
    root, start, _ = events[0]
    compose_pid, compose_exec = "", float("nan")
    docker_runs = set()
    for pid, at, rest in events:
        if not rest.startswith("execve(") or not rest.endswith("= 0"):
            continue
        if rest.startswith('execve("/usr/local/bin/docker"') or re.match(r'execve\("[^"]*/docker"', rest):
            docker_runs.add(pid)
        if not compose_pid and '"up", "--detach"' in rest and '"prometheus"' not in rest:
            compose_pid, compose_exec = pid, at
    docker_runs.discard(compose_pid)
    exits = {pid: at for pid, at, rest in events if rest.startswith("+++ exited")}
    end = exits[root]
    compose_end = exits.get(compose_pid, float("nan"))
    return {"to compose": compose_exec - start, "compose": compose_end - compose_exec,
            "after compose": end - compose_end, "total": end - start, "docker runs": float(len(docker_runs))}


# Run in the traced tree's interpreter: `up` until compose's exec, then its CPU, and exit.
_UNTIL_COMPOSE = """
import os, resource, subprocess, sys, time
run = subprocess.run
def stop_at_compose(argv, *args, **kwargs):
    if "up" in argv and "--detach" in argv:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        print(f"{me.ru_utime + me.ru_stime:.3f} {kids.ru_utime + kids.ru_stime:.3f} "
              f"{time.time() - float(os.environ['UPTRACE_START']):.3f} {len(sys.modules)}", file=sys.stderr)
        os._exit(0)
    return run(argv, *args, **kwargs)
subprocess.run = stop_at_compose
from deploy import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def until_compose(swarmlet: list[str], root: pathlib.Path, env: dict[str, str]) -> list[float]:
    """CPU of `up` (own, children), wall time and modules imported, until compose's exec."""
    env = dict(env, UPTRACE_START=repr(time.time()))
    proc = subprocess.run([swarmlet[0], "-c", _UNTIL_COMPOSE, *swarmlet[3:], "up"], cwd=root, env=env,
                          capture_output=True, text=True, check=False)
    return [float(x) for x in proc.stderr.strip().splitlines()[-1].split()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--project", default="uptrace")
    parser.add_argument("--tree", type=pathlib.Path, default=ROOT, help="the checkout whose swarmlet runs")
    parser.add_argument("--cpu", action="store_true", help="CPU until compose's exec, no strace")
    args = parser.parse_args()
    root = args.tree.resolve()
    state = pathlib.Path(tempfile.mkdtemp(prefix=f"{args.project}-"))
    env = dict(os.environ, SWARMLET_STATE=str(state), PYTHONPATH=f"{root}:{root / 'proto'}")
    env.pop("SWARMLET_PROJECT", None)
    swarmlet = [str(root / ".venv" / "bin" / "python"), "-m", "deploy.cli", "--project", args.project]
    if args.cpu:
        print("run      cpu self  cpu children          wall       modules")
        for i in range(args.runs):
            try:
                found = until_compose(swarmlet, root, env)
            finally:
                subprocess.run([*swarmlet, "down"], cwd=root, env=env, capture_output=True, check=False)
            print(f"{i + 1:3d}  " + "  ".join(f"{x:12.3f}" for x in found[:3]) + f"  {found[3]:12.0f}")
        return 0
    names = ("to compose", "compose", "after compose", "total", "docker runs")
    print("run  " + "  ".join(f"{n:>13s}" for n in names))
    for i in range(args.runs):
        with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
            try:
                up = subprocess.run(["strace", "-f", "-tt", "-e", "trace=execve,exit_group", "-o", out.name,
                                     *swarmlet, "up"], cwd=root, env=env, capture_output=True, text=True,
                                    check=False)
                found = phases(out.read())
            finally:
                subprocess.run([*swarmlet, "down"], cwd=root, env=env, capture_output=True, check=False)
        if up.returncode != 0:
            print(f"{i + 1:3d}  up failed:\n{up.stdout}\n{up.stderr}")
            return 1
        print(f"{i + 1:3d}  " + "  ".join(f"{found[n]:13.3f}" if n != "docker runs" else f"{found[n]:13.0f}"
                                          for n in names), flush=True)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
