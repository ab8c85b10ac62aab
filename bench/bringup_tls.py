"""What mutual TLS costs at bring-up: `swarmlet up` with TLS (the default) against `--no-tls`
nodes (``SWARMLET_NO_TLS=1``), alternated in the same run.

    .venv/bin/python bench/bringup_tls.py --runs 3 --backend local

Each run brings up a cluster of its own project (``bench-tls``, 3 managers and 2 workers, its
own state folder), times the command until it has seen every node Ready and a leader (its exit),
and removes the project. With TLS every node's join fetches and checks the root CA, sends a CSR
and gets a certificate, and every gRPC connection makes a TLS handshake. Prints the median of
each and the ratio TLS / plaintext.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROJECT = "bench-tls"


def _swarmlet(state: pathlib.Path, tls: bool, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SWARMLET_STATE=str(state), PYTHONPATH=f"{ROOT}:{ROOT / 'proto'}")
    env.pop("SWARMLET_NO_TLS", None)
    if not tls:
        env["SWARMLET_NO_TLS"] = "1"
    return subprocess.run([sys.executable, "-m", "deploy.cli", "--project", PROJECT, *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900, check=False)


def one(backend: str, tls: bool) -> float:
    """Seconds from the start of `swarmlet up` to its exit (every node Ready, a leader)."""
    state = pathlib.Path(tempfile.mkdtemp(prefix="bench-tls-"))
    try:
        began = time.monotonic()
        up = _swarmlet(state, tls, "up", "--backend", backend)
        took = time.monotonic() - began
        if up.returncode != 0:
            kind = "tls" if tls else "plaintext"
            raise RuntimeError(f"swarmlet up failed ({kind}):\n{up.stdout}\n{up.stderr}")
        return took
    finally:
        _swarmlet(state, tls, "down")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each (alternated)")
    parser.add_argument("--backend", default="local", choices=("local", "compose"))
    args = parser.parse_args()
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.runs):
        for tls in (True, False):
            took = one(args.backend, tls)
            times[tls].append(took)
            print(f"{'mutual TLS' if tls else 'plaintext':10s} {took:6.2f} s", flush=True)
    with_tls, plain = statistics.median(times[True]), statistics.median(times[False])
    load = os.getloadavg()[0]
    print(f"median     mutual TLS {with_tls:.2f} s, plaintext {plain:.2f} s, ratio {with_tls / plain:.2f} "
          f"(load average {load:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
