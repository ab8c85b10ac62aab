"""Encrypted at rest and autolock on the compose cluster, with the real docker CLI and `swarmlet chaos`.

A secret created through the API, and a known string written to the store (a node label), are
found nowhere in any manager's data volume (WAL, snapshots, keys) nor in what a worker's
container wrote, raw or in base64. Then `docker swarm update --autolock=true`, `unlock-key
--rotate`, and `swarmlet chaos restart manager2`: manager2 reports locked, takes no part in Raft
(its control port does not answer, its log does not move while the others write), refuses a
wrong key and the rotated-out one in Swarm's words, and with the current key is back and caught
up. Autolock is turned off again at the end.
"""

from __future__ import annotations

import base64
import io
import re
import subprocess
import tarfile
import time

from deploy.backends.base import NodeHandle
from manager.controlapi.client import list_nodes
from tests.compose.helpers import backend, docker_cli, node, swarmlet, wait_for

SECRET = b"s3cret-compose-autolock-71c3"
MARKER = "known-marker-compose-4d2e"
LOCKED = ('Error response from daemon: Swarm is encrypted and needs to be unlocked before it can be '
          'used. Please use "docker swarm unlock" to unlock it.')
INVALID = "Error response from daemon: swarm could not be unlocked: invalid key provided"
DATA = "/var/lib/swarmlet"


def docker(target: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    host = node(target).docker_host
    assert host, f"{target} publishes no Engine API"
    return docker_cli(host, *args, stdin=stdin)


def _forms(secret: bytes) -> list[bytes]:
    return [secret] + [base64.b64encode(b"\0" * shift + secret)[4:-4] for shift in range(3)]


def _files(ref: str, paths: list[str]) -> dict[str, bytes]:
    """The regular files under ``paths`` of a container, read from the host (docker cp)."""
    out: dict[str, bytes] = {}
    for path in paths:
        done = subprocess.run(["docker", "cp", f"{ref}:{path}", "-"], capture_output=True, timeout=120,
                              check=False)
        if done.returncode != 0:
            continue
        with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    out[f"{path}:{member.name}"] = handle.read()
    return out


def _copied(diff: list[str]) -> list[str]:
    """The paths to copy out of a container to hold every file ``docker diff`` lists added (A) or
    changed (C), each once: an added folder whole, not its entries again; a changed entry with
    entries listed under it is a folder that changed by them (``C /usr`` for ``A
    /usr/sbin/docker-init``), so only they are copied, not the image's whole /usr."""
    entries = {line[2:]: line[:1] for line in diff if line[:1] in ("A", "C", "D")}
    wanted = [DATA] + [p for p, kind in entries.items() if kind in ("A", "C")
                       and not p.startswith(("/proc", "/sys", "/dev"))
                       and not (kind == "C" and any(q.startswith(p + "/") for q in entries))]  # fmt: skip
    return sorted({p for p in wanted if not any(p.startswith(q + "/") for q in wanted)})


def _written(n: NodeHandle) -> dict[str, bytes]:
    """What a node's container holds of its own: its data directory and every file it added or
    changed on its root file system (docker diff)."""
    diff = subprocess.run(["docker", "diff", n.ref], capture_output=True, text=True, timeout=60, check=False)
    return _files(n.ref, _copied(diff.stdout.splitlines()))


def _leaks(files: dict[str, bytes], secret: bytes) -> list[str]:
    return [f"{name} ({i})" for name, data in files.items() for i, form in enumerate(_forms(secret))
            if form in data]


def _state(target: str) -> str:
    done = docker(target, "info", "--format", "{{.Swarm.LocalNodeState}}")
    return done.stdout.strip() if done.returncode == 0 else ""


def _raft_sizes(target: str) -> str:
    done = subprocess.run(["docker", "exec", node(target).ref, "sh", "-c",
                           f"ls -l {DATA}/manager/raft | grep -v peers.json"],
                          capture_output=True, text=True, timeout=30, check=False)
    return done.stdout


def _keys(target: str) -> str:
    done = subprocess.run(["docker", "exec", node(target).ref, "cat", f"{DATA}/manager/raft/keys.json"],
                          capture_output=True, text=True, timeout=30, check=False)
    return done.stdout


def _control_answers(target: str) -> bool:
    addr = node(target).control_addr
    try:
        return bool(addr) and bool(list_nodes(str(addr), timeout=2.0))
    except Exception:
        return False


def test_nothing_in_plaintext_on_any_disk(cluster: str) -> None:
    done = docker("manager1", "secret", "create", "at_rest", "-", stdin=SECRET.decode())
    assert done.returncode == 0, done.stderr
    try:
        done = docker("manager1", "node", "update", "--label-add", f"mark={MARKER}", "worker1")
        assert done.returncode == 0, done.stderr
        done = docker("manager1", "service", "create", "--detach", "--name", "atrest", "--secret", "at_rest",
                      "--constraint", "node.role==worker", "--replicas", "2", "nginx:1.25")
        assert done.returncode == 0, done.stderr
        wait_for("the label on manager3", lambda: docker("manager3", "node", "inspect", "worker1", "--format",
                                                         "{{.Spec.Labels.mark}}").stdout.strip() == MARKER,
                 timeout=30)
        wait_for("atrest running", lambda: docker("manager1", "service", "ps", "atrest", "--format",
                                                  "{{.CurrentState}}").stdout.count("Running") == 2,
                 timeout=60)
        scanned = 0
        for n in backend().nodes():
            files = _written(n)
            scanned += len(files)
            assert _leaks(files, SECRET) == [], n.hostname
            assert _leaks(files, MARKER.encode()) == [], n.hostname
            if n.role == "manager":
                segments = [data for name, data in files.items() if re.search(r"/wal-[0-9a-f-]+\.log$", name)]
                assert segments and all(s.startswith(b"SWLWAL2\n") for s in segments), n.hostname
        assert scanned > 0
        assert _leaks({"control": b"x" + base64.b64encode(b"a" + SECRET)}, SECRET)  # the search finds it
    finally:  # the session's cluster as found: later tests count worker1's labels and the secrets
        docker("manager1", "service", "rm", "atrest")
        docker("manager1", "node", "update", "--label-rm", "mark", "worker1")
        wait_for("atrest gone", lambda: docker("manager1", "secret", "rm", "at_rest").returncode == 0,
                 timeout=60)


def test_autolock_restart_manager2(cluster: str) -> None:
    done = docker("manager1", "swarm", "update", "--autolock=true")
    assert done.returncode == 0, done.stderr
    first = re.search(r"SWMKEY-1-[A-Za-z0-9+/]{43}", done.stdout)
    assert first is not None and done.stdout.startswith("Swarm updated.\n"), done.stdout
    done = docker("manager1", "swarm", "unlock-key", "--rotate", "-q")
    assert done.returncode == 0, done.stderr
    current = done.stdout.strip()
    assert current.startswith("SWMKEY-1-") and current != first.group(0)
    try:
        wait_for("every manager autolocked under the rotated key",
                 lambda: all('"autolock": true' in _keys(m) for m in ("manager1", "manager2", "manager3")),
                 timeout=30)
        swarmlet("chaos", "restart", "manager2")
        wait_for("manager2 locked", lambda: _state("manager2") == "locked", timeout=60, interval=0.5)
        assert " Swarm: locked\n" in docker("manager2", "info").stdout
        done = docker("manager2", "node", "ls")
        assert (done.returncode, done.stderr.strip()) == (1, LOCKED)
        before = _raft_sizes("manager2")
        assert "wal-" in before
        done = docker("manager1", "secret", "create", "while_locked", "-", stdin="x")
        assert done.returncode == 0, done.stderr
        time.sleep(2.0)
        assert not _control_answers("manager2") and _raft_sizes("manager2") == before
        for wrong in ("SWMKEY-1-wrongwrongwrong", first.group(0)):
            done = docker("manager2", "swarm", "unlock", stdin=wrong + "\n")
            assert (done.returncode, done.stderr.strip()) == (1, INVALID)
        assert _state("manager2") == "locked"
        done = docker("manager2", "swarm", "unlock", stdin=current + "\n")
        assert done.returncode == 0, done.stderr
        wait_for("manager2 caught up", lambda: "while_locked" in docker(
            "manager2", "secret", "ls", "--format", "{{.Name}}").stdout, timeout=60, interval=0.5)
        assert _state("manager2") == "active" and _control_answers("manager2")
    finally:
        docker("manager2", "swarm", "unlock", stdin=current + "\n")
        done = docker("manager1", "swarm", "update", "--autolock=false")
        assert done.returncode == 0, done.stderr
        docker("manager1", "secret", "rm", "while_locked")
