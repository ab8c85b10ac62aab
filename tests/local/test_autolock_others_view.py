"""A manager locked by autolock, as the other managers see it (issue 9).

In Swarm a locked manager runs neither the manager role nor an agent: ``docker node ls`` on the
other managers shows its MANAGER STATUS Unreachable and, once its heartbeats have been missed,
its STATUS Down (../shared/ref/real-swarm/five-nodes/x-multi.txt, "m3 as the others see it while
locked"). Unlocked, it is Ready and Reachable again. Three managers run as ``python -m nodeagent``
on 127.x addresses, driven by the real docker CLI; skipped without a docker binary.
"""

from __future__ import annotations

import pathlib
import re
import signal
import time

import pytest
from _docker_cli import docker, requires_docker
from _procs_manager import NodeProc, running, wait_until

pytestmark = requires_docker


def _rows(tmp: pathlib.Path, via: NodeProc) -> dict[str, tuple[str, str]]:
    """Hostname -> (STATUS, MANAGER STATUS) as ``docker node ls`` on ``via`` prints them."""
    done = docker(tmp, via.host, "node", "ls", "--format", "{{.Hostname}}|{{.Status}}|{{.ManagerStatus}}")
    if done.returncode != 0:
        return {}
    rows = [line.split("|") for line in done.stdout.splitlines() if line.count("|") == 2]
    return {name: (status, manager) for name, status, manager in rows}


def _state(tmp: pathlib.Path, node: NodeProc) -> str:
    done = docker(tmp, node.host, "info", "--format", "{{.Swarm.LocalNodeState}}")
    return done.stdout.strip() if done.returncode == 0 else ""


@pytest.mark.slow
def test_the_others_see_a_locked_manager_unreachable_then_down(tmp_path: pathlib.Path) -> None:
    with running(tmp_path, 3) as cluster:
        m1, m2, m3 = cluster.managers()
        try:
            wait_until(lambda: sorted(m for _, m in _rows(tmp_path, m1).values()) == [
                "Leader", "Reachable", "Reachable"], timeout=60, what="3 managers, a leader")
            done = docker(tmp_path, m1.host, "swarm", "update", "--autolock=true")
            assert done.returncode == 0, done.stderr
            key = re.search(r"SWMKEY-1-[A-Za-z0-9+/]{43}", done.stdout)
            assert key is not None, done.stdout
            keys = cluster.workdir / m2.name / "manager" / "raft" / "keys.json"
            wait_until(lambda: '"autolock": true' in keys.read_text(), timeout=30,
                       what="manager2's key file autolocked")

            m2.kill(signal.SIGTERM)
            m2.start()
            wait_until(lambda: _state(tmp_path, m2) == "locked", timeout=30, what="manager2 locked")
            # Both other managers, the leader and a follower, show it Unreachable, then Down.
            for via in (m1, m3):
                wait_until(lambda via=via: _rows(tmp_path, via).get("manager2") == ("Down", "Unreachable"),
                           timeout=30, what=f"manager2 Down and Unreachable on {via.name}")
            # It stays so while locked (no heartbeat brings it back).
            time.sleep(2.0)
            assert _rows(tmp_path, m3).get("manager2") == ("Down", "Unreachable")
            assert _rows(tmp_path, m1).get("manager2") == ("Down", "Unreachable")
            assert _state(tmp_path, m2) == "locked"

            done = docker(tmp_path, m2.host, "swarm", "unlock", stdin=key.group(0) + "\n")
            assert (done.returncode, done.stderr) == (0, ""), done.stderr
            for via in (m1, m2, m3):
                wait_until(lambda via=via: _rows(tmp_path, via).get("manager2") == ("Ready", "Reachable"),
                           timeout=30, what=f"manager2 Ready and Reachable on {via.name}")
        except AssertionError:
            print(cluster.logs())
            raise
