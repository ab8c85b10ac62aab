"""Raft encrypted at rest, and autolock, with the real docker CLI against manager processes.

Three managers and a worker run as ``python -m nodeagent`` on 127.x addresses. A secret created
through the API, and a known string written to the store (a node label), are found nowhere on
any node's disk, raw or in base64. ``docker swarm update --autolock=true`` prints the unlock key
as Swarm does; ``unlock-key --rotate`` replaces it. Every manager rotates its data key: manager2's
disk then opens under its new data key alone, not under the one it had before autolock (a copy
of its key file taken then opens nothing). manager2 restarted stays locked: its Engine
API answers with Swarm's locked message, ``docker info`` says "Swarm: locked", its cluster port
is closed and its log does not move while the others write (no part in Raft); a wrong key and
the rotated-out key are refused in Swarm's words, the current key unlocks it and it catches up.
And ``docker swarm init --autolock`` on a blank node prints the key; restarted, it is locked
until unlocked. Skipped without a docker binary.
"""

from __future__ import annotations

import base64
import pathlib
import re
import shutil
import signal
import socket
import time

import pytest
from _docker_cli import docker, requires_docker
from _procs_manager import START_S, Cluster, NodeProc, running, wait_until

from manager.state.raft.encryption import DataCipher, parse_unlock_key
from manager.state.raft.keyfile import RaftKeys
from manager.state.raft.storage import CorruptLogError, RaftStorage

pytestmark = requires_docker

SECRET = b"s3cret-autolock-5e1d07"
MARKER = "known-marker-9b2c41"
LOCKED = ('Error response from daemon: Swarm is encrypted and needs to be unlocked before it can be '
          'used. Please use "docker swarm unlock" to unlock it.')
UNLOCK_WORDS = ("To unlock a swarm manager after it restarts, run the `docker swarm unlock`\n"
                "command and provide the following key:\n\n    SWMKEY-1-")


def _forms(secret: bytes) -> list[bytes]:
    """``secret`` raw and as base64 at each alignment (the aligned middle of each)."""
    return [secret] + [base64.b64encode(b"\0" * shift + secret)[4:-4] for shift in range(3)]


def _leaks(root: pathlib.Path, secret: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.name.endswith(".log"):  # process logs are not the node's disk
            data = path.read_bytes()
            found += [f"{path} ({i})" for i, form in enumerate(_forms(secret)) if form in data]
    return found


def _managers(tmp: pathlib.Path, via: NodeProc) -> dict[str, str]:
    done = docker(tmp, via.host, "node", "ls", "--format", "{{.Hostname}}|{{.ManagerStatus}}")
    if done.returncode != 0:
        return {}
    return dict(line.split("|", 1) for line in done.stdout.splitlines() if "|" in line)


def _state(tmp: pathlib.Path, node: NodeProc) -> str:
    done = docker(tmp, node.host, "info", "--format", "{{.Swarm.LocalNodeState}}")
    return done.stdout.strip() if done.returncode == 0 else ""


def _control(tmp: pathlib.Path, node: NodeProc) -> bool:
    done = docker(tmp, node.host, "info", "--format", "{{.Swarm.ControlAvailable}}")
    return done.returncode == 0 and done.stdout.strip() == "true"


def _port_open(node: NodeProc) -> bool:
    try:
        with socket.create_connection((node.host, node.port), timeout=1):
            return True
    except OSError:
        return False


def _key_file(node: NodeProc, cluster: Cluster) -> str:
    return (cluster.workdir / node.name / "manager" / "raft" / "keys.json").read_text()


def _plain_dek(node: NodeProc, cluster: Cluster) -> bytes:
    keys = RaftKeys(cluster.workdir / node.name / "manager" / "raft" / "keys.json")
    keys.load()
    return keys.dek


def _entries_under(raft_dir: pathlib.Path, cipher: DataCipher, copy: pathlib.Path) -> int:
    """How many entries and snapshots a copy of ``raft_dir`` holds under ``cipher`` (the copy:
    opening may tidy a torn tail); CorruptLogError if some file does not open."""
    shutil.copytree(raft_dir, copy, ignore=shutil.ignore_patterns("LOCK"))
    with RaftStorage.open(copy, cipher=cipher) as storage:
        return len(storage.entries()) + (storage.snapshot is not None)


@pytest.mark.slow
def test_encrypted_at_rest_and_autolock(tmp_path: pathlib.Path) -> None:
    with running(tmp_path, 3, ["worker1"]) as cluster:
        m1, m2, m3 = cluster.managers()
        try:
            _scenario(tmp_path, cluster, m1, m2, m3)
        except AssertionError:
            print(cluster.logs())
            raise


def _scenario(tmp: pathlib.Path, cluster: Cluster, m1: NodeProc, m2: NodeProc, m3: NodeProc) -> None:
    wait_until(lambda: len(_managers(tmp, m1)) == 4 and "Leader" in _managers(tmp, m1).values(),
               timeout=START_S, what="4 nodes, a leader")
    # A manager is listed from its join on, before it runs its manager role; the scenario asks
    # every manager's Engine API and looks at every manager's Raft files, so it waits for that.
    wait_until(lambda: all(_control(tmp, m) for m in (m1, m2, m3)), timeout=START_S,
               what="every manager serving the cluster's API")

    # ---- at rest: nothing of a secret or of a stored string on any disk
    done = docker(tmp, m1.host, "secret", "create", "s1", "-", stdin=SECRET.decode())
    assert done.returncode == 0, done.stderr
    done = docker(tmp, m1.host, "node", "update", "--label-add", f"mark={MARKER}", "worker1")
    assert done.returncode == 0, done.stderr
    done = docker(tmp, m1.host, "service", "create", "--detach", "--name", "web", "--secret", "s1",
                  "--constraint", "node.role==worker", "nginx:1.25")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: docker(tmp, m3.host, "node", "inspect", "worker1", "--format",
                              "{{.Spec.Labels.mark}}").stdout.strip() == MARKER, timeout=30,
               what="the label replicated to manager3")
    wait_until(lambda: "Running" in docker(tmp, m1.host, "service", "ps", "web", "--format",
                                           "{{.CurrentState}}").stdout, timeout=60, what="web running")
    for node in cluster.nodes.values():
        root = cluster.workdir / node.name
        assert _leaks(root, SECRET) == [] and _leaks(root, MARKER.encode()) == []
        if node.role == "manager":
            segments = list(root.rglob("wal-*.log"))
            assert segments and all(s.read_bytes().startswith(b"SWLWAL2\n") for s in segments)
    control = tmp / "control"
    control.mkdir()
    (control / "b64").write_bytes(b"x" + base64.b64encode(b"ab" + SECRET))
    assert _leaks(control, SECRET) != []  # the search finds the secret where it is

    # The data keys before autolock, and a copy of manager2's key file (a disk copied then).
    old_deks = {m.name: _plain_dek(m, cluster) for m in (m1, m2, m3)}
    stolen = tmp / "stolen-keys.json"
    shutil.copy(cluster.workdir / m2.name / "manager" / "raft" / "keys.json", stolen)

    # ---- autolock on: the key, printed as Swarm prints it
    done = docker(tmp, m1.host, "swarm", "update", "--autolock=true")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Swarm updated.\n" + UNLOCK_WORDS), done.stdout
    first = re.search(r"SWMKEY-1-[A-Za-z0-9+/]{43}", done.stdout)
    assert first is not None
    quiet = docker(tmp, m2.host, "swarm", "unlock-key", "-q")
    assert (quiet.returncode, quiet.stdout.strip()) == (0, first.group(0)), quiet.stderr
    done = docker(tmp, m1.host, "swarm", "unlock-key", "--rotate")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Successfully rotated manager unlock key.\n" + UNLOCK_WORDS), done.stdout
    current = docker(tmp, m1.host, "swarm", "unlock-key", "-q").stdout.strip()
    assert current.startswith("SWMKEY-1-") and current != first.group(0)
    # Every manager re-wraps its data key under the new key (no plaintext KEK left).
    wait_until(lambda: all('"autolock": true' in _key_file(m, cluster) for m in (m1, m2, m3)),
               timeout=30, what="every manager autolocked")
    # ... and rotates its data key (swarmkit's RaftDEKManager): the rotation finishes once a
    # snapshot under the new key has replaced every file the old key sealed.
    wait_until(lambda: not any(word in _key_file(m, cluster) for m in (m1, m2, m3)
                               for word in ("pending_dek", "needs_rotation")),
               timeout=30, what="every manager's data key rotation finished")
    done = docker(tmp, m1.host, "swarm", "unlock", stdin=current + "\n")
    assert (done.returncode, done.stderr.strip()) == (1, "Error: swarm is not locked")

    # ---- manager2 restarted: locked, out of Raft
    m2.kill(signal.SIGTERM)
    m2.start()
    wait_until(lambda: _state(tmp, m2) == "locked", timeout=START_S, what="manager2 locked")
    info = docker(tmp, m2.host, "info")
    assert " Swarm: locked\n" in info.stdout, info.stdout
    done = docker(tmp, m2.host, "node", "ls")
    assert (done.returncode, done.stderr.strip()) == (1, LOCKED)
    assert not _port_open(m2)
    raft_dir = cluster.workdir / m2.name / "manager" / "raft"
    before = {p.name: p.stat().st_size for p in raft_dir.iterdir()}
    done = docker(tmp, m1.host, "secret", "create", "s2", "-", stdin="written while manager2 is locked")
    assert done.returncode == 0, done.stderr
    time.sleep(1.0)
    # No part in Raft: its cluster port stays closed and its log does not move.
    assert _state(tmp, m2) == "locked" and not _port_open(m2)
    assert {p.name: p.stat().st_size for p in raft_dir.iterdir()} == before

    # Its data key is a new one; what is on its disk opens under it alone, and neither under the
    # data key it had before autolock nor with the key file copied then.
    keys = RaftKeys(raft_dir / "keys.json")
    keys.load()
    keys.unlock(parse_unlock_key(current))
    assert keys.dek != old_deks[m2.name]
    assert _entries_under(raft_dir, DataCipher(keys.dek), tmp / "copy-new")
    stolen_keys = RaftKeys(stolen)
    stolen_keys.load()
    assert stolen_keys.dek == old_deks[m2.name]
    with pytest.raises(CorruptLogError):
        _entries_under(raft_dir, DataCipher(stolen_keys.dek), tmp / "copy-old")

    # Wrong keys: a malformed one, one that is not the swarm's, and the rotated-out one.
    done = docker(tmp, m2.host, "swarm", "unlock", stdin="SWMKEY-1-bogus\n")
    assert (done.returncode, done.stderr.strip()) == (1, "Error response from daemon: invalid key string")
    for wrong in ("SWMKEY-1-wrongwrongwrong", first.group(0)):
        done = docker(tmp, m2.host, "swarm", "unlock", stdin=wrong + "\n")
        assert (done.returncode, done.stderr.strip()) == (
            1, "Error response from daemon: swarm could not be unlocked: invalid key provided")
        assert _state(tmp, m2) == "locked"

    # ---- the current key: unlocked, back in Raft with what it missed
    began = time.monotonic()
    done = docker(tmp, m2.host, "swarm", "unlock", stdin=current + "\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    wait_until(lambda: _managers(tmp, m2).get("manager2") == "Reachable", timeout=30,
               what="manager2 Reachable after unlock")
    print(f"manager2 serving {time.monotonic() - began:.2f} s after unlock")
    wait_until(lambda: "s2" in docker(tmp, m2.host, "secret", "ls", "--format", "{{.Name}}").stdout,
               timeout=30, what="manager2 caught up")
    assert _state(tmp, m2) == "active"

    # ---- autolock off: a restart needs no key; the secrets are still nowhere in plaintext
    done = docker(tmp, m1.host, "swarm", "update", "--autolock=false")
    assert (done.returncode, done.stdout.strip()) == (0, "Swarm updated."), done.stderr
    wait_until(lambda: all('"kek"' in _key_file(m, cluster) for m in (m1, m2, m3)), timeout=30,
               what="every manager unlocked")
    done = docker(tmp, m1.host, "swarm", "unlock-key")
    assert (done.returncode, done.stderr.strip()) == (1, "no unlock key is set")
    m2.kill(signal.SIGTERM)
    m2.start()
    wait_until(lambda: _state(tmp, m2) == "active", timeout=START_S, what="manager2 active without a key")
    for node in cluster.nodes.values():
        assert _leaks(cluster.workdir / node.name, SECRET) == []


@pytest.mark.slow
def test_swarm_init_autolock_and_a_locked_single_manager(tmp_path: pathlib.Path) -> None:
    cluster = Cluster(tmp_path, time_scale=0.5)
    node = cluster.add_blank("node1")
    cluster.start_all()
    try:
        wait_until(lambda: _state(tmp_path, node) == "inactive", timeout=START_S, what="node1 up")
        done = docker(tmp_path, node.host, "swarm", "init", "--autolock", "--advertise-addr", node.host)
        assert done.returncode == 0, done.stderr
        assert UNLOCK_WORDS in done.stdout, done.stdout
        key = re.search(r"SWMKEY-1-[A-Za-z0-9+/]{43}", done.stdout)
        assert key is not None
        assert docker(tmp_path, node.host, "swarm", "unlock-key", "-q").stdout.strip() == key.group(0)
        keys = tmp_path / "node1" / "manager" / "raft" / "keys.json"
        wait_until(lambda: '"autolock": true' in keys.read_text(), timeout=30, what="the key file autolocked")
        node.kill(signal.SIGTERM)
        node.start()
        wait_until(lambda: _state(tmp_path, node) == "locked", timeout=START_S, what="node1 locked")
        done = docker(tmp_path, node.host, "service", "ls")
        assert (done.returncode, done.stderr.strip()) == (1, LOCKED)
        done = docker(tmp_path, node.host, "swarm", "unlock", stdin=key.group(0) + "\n")
        assert done.returncode == 0, done.stderr
        wait_until(lambda: docker(tmp_path, node.host, "node", "ls").returncode == 0, timeout=30,
                   what="node1 serving after unlock")
        assert _state(tmp_path, node) == "active"
    except AssertionError:
        print(cluster.logs())
        raise
    finally:
        cluster.stop_all()
