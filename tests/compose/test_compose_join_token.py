"""A node with a wrong or missing join token stops with a message; the cluster is unchanged."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from deploy.images import NODE_IMAGE
from manager.ca import ClusterCredentials
from manager.ca.tokens import rotate_token
from tests.compose.helpers import PROJECT, STATE, backend, status_json

REFUSED = "A valid join token is necessary to join this cluster"


def join_with(token_dir: pathlib.Path | None, name: str) -> subprocess.CompletedProcess[str]:
    """Run a worker container next to the cluster, as compose would, and wait for it to exit.

    The container is named after the test's project and removed whatever happens: a node that
    does not exit within the timeout must not outlive the test."""
    container = f"{PROJECT}-{name}"
    cmd = ["docker", "run", "--rm", "--init", "--name", container, "--network", backend().network,
           "--hostname", name]
    if token_dir is not None:
        cmd += ["-v", f"{token_dir}:/run/secrets:ro"]
    cmd += [NODE_IMAGE, "--role=worker", "--join=manager1:2377,manager2:2377,manager3:2377",
            "--token-file=/run/secrets/worker_token"]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def ids() -> set[tuple[str, str]]:
    return {(r["id"], r["status"]) for r in status_json()}


def test_wrong_token_stops_the_joining_node(cluster: str, tmp_path: pathlib.Path) -> None:
    before = ids()
    # This cluster's CA digest, but a secret that is none of its tokens': the managers refuse it.
    ours = (STATE / "worker_token").read_text().strip()
    (tmp_path / "worker_token").write_text(rotate_token(ours) + "\n")
    proc = join_with(tmp_path, "intruder")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert REFUSED in proc.stdout + proc.stderr
    assert ids() == before
    assert all(r["hostname"] != "intruder" for r in status_json())


def test_another_clusters_token_is_never_sent(cluster: str, tmp_path: pathlib.Path) -> None:
    before = ids()
    other = ClusterCredentials.create()  # well formed, but another CA's: the node sees it first
    other.write(tmp_path)
    proc = join_with(tmp_path, "stranger-ca")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    digest = other.worker_token.split("-")[2]
    assert f"remote CA does not match fingerprint. Expected: {digest}" in proc.stdout + proc.stderr
    assert ids() == before


@pytest.mark.parametrize("content", ["", "SWMTKN-1-notatoken\n"])
def test_missing_or_malformed_token_stops_the_joining_node(
    cluster: str, tmp_path: pathlib.Path, content: str
) -> None:
    before = ids()
    if content:
        (tmp_path / "worker_token").write_text(content)
    proc = join_with(tmp_path, "stranger")
    output = proc.stdout + proc.stderr
    assert proc.returncode in (2, 3), output
    assert "token" in output.lower()
    assert ids() == before
