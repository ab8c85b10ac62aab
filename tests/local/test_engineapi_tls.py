"""The Engine API over TLS with client certificates (dockerd's ``--tlsverify``), with the real docker CLI.

A node started with ``--tlsverify --tlscacert --tlscert --tlskey`` (certificates made by
deploy/enginetls.py, as an administrator makes them for dockerd) answers the CLI that has
``DOCKER_TLS_VERIFY=1`` and ``DOCKER_CERT_PATH``: ``docker swarm init`` and ``docker node ls``
work. Plain HTTP, TLS without a client certificate, and a client certificate of another CA are
all refused at the handshake; nothing is answered. Bad flags stop the agent with exit 2.
"""

from __future__ import annotations

import os
import pathlib
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from _docker_cli import DOCKER, requires_docker
from _procs_manager import ROOT, Cluster, wait_until

from deploy.enginetls import EngineTls, engine_tls_env

pytestmark = requires_docker


def _cli(tmp: pathlib.Path, host: str, *args: str, cert_path: pathlib.Path | None,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert DOCKER is not None
    env = {"PATH": os.environ.get("PATH", ""), "DOCKER_CONFIG": str(tmp / "docker-config"), "HOME": str(tmp),
           "DOCKER_HOST": f"tcp://{host}:2375"}
    if cert_path is not None:
        env |= {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(cert_path)}
    return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=60, input=stdin)


def _https(host: str, context: ssl.SSLContext) -> str:
    with urllib.request.urlopen(f"https://{host}:2375/_ping", context=context, timeout=5) as reply:
        return str(reply.read().decode())


def test_the_engine_api_over_tls_answers_only_certified_clients(tmp_path: pathlib.Path) -> None:
    certs = EngineTls.create(tmp_path / "engine-tls")
    cluster = Cluster(tmp_path)
    node = cluster.add_blank("node1")
    cert, key = certs.add_server("node1", [node.host])
    node.args += ["--tlsverify", "--tlscacert", str(certs.ca_cert), "--tlscert", str(cert),
                  "--tlskey", str(key)]
    cluster.start_all()
    try:
        wait_until(lambda: _cli(tmp_path, node.host, "info", "--format", "{{.Swarm.LocalNodeState}}",
                                cert_path=certs.folder).stdout.strip() == "inactive", 30, 0.2, "node1 up")
        done = _cli(tmp_path, node.host, "swarm", "init", "--advertise-addr", node.host,
                    cert_path=certs.folder)
        assert done.returncode == 0, done.stderr
        assert "Swarm initialized: current node" in done.stdout
        wait_until(lambda: "Leader" in _cli(tmp_path, node.host, "node", "ls", cert_path=certs.folder).stdout,
                   30, 0.2, "node ls over TLS")
        # The lines `swarmlet env` would print for it.
        lines = engine_tls_env(certs, f"tcp://{node.host}:2375")
        assert lines[1:] == ["export DOCKER_TLS_VERIFY=1",
                             f"export DOCKER_CERT_PATH={certs.folder.resolve()}"]

        # Plain HTTP: no answer.
        plain = _cli(tmp_path, node.host, "info", cert_path=None)
        assert plain.returncode != 0 and "Swarm" not in plain.stdout
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://{node.host}:2375/_ping", timeout=5)
        # TLS that trusts the server but presents no certificate: refused at the handshake.
        anonymous = ssl.create_default_context(cafile=str(certs.ca_cert))
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            _https(node.host, anonymous)
        # A client certificate of another CA: refused too.
        stranger = EngineTls.create(tmp_path / "other-ca")
        foreign = ssl.create_default_context(cafile=str(certs.ca_cert))
        foreign.load_cert_chain(str(stranger.client_cert), str(stranger.client_key))
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            _https(node.host, foreign)
        done = _cli(tmp_path, node.host, "info", cert_path=stranger.folder)
        assert done.returncode != 0
        # The administrator's client certificate: answered.
        mine = ssl.create_default_context(cafile=str(certs.ca_cert))
        mine.load_cert_chain(str(certs.client_cert), str(certs.client_key))
        assert _https(node.host, mine) == "OK"
    except AssertionError:
        print(cluster.logs())
        raise
    finally:
        cluster.stop_all()


def test_tlsverify_without_its_files_stops_the_agent(tmp_path: pathlib.Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "proto"), env.get("PYTHONPATH", "")])
    certs = EngineTls.create(tmp_path / "engine-tls")
    for extra, words in (
        (["--tlsverify"], "--tlsverify needs --tlscacert, --tlscert, --tlskey"),
        (["--tlscacert", str(certs.ca_cert)], "--tlscacert is only used with --tlsverify"),
    ):
        done = subprocess.run([sys.executable, "-m", "nodeagent", "--no-swarm", "--hostname", "n",
                               "--advertise-addr", "127.0.0.1", "--data-dir", str(tmp_path / "n"), *extra],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and words in done.stderr, done.stderr
