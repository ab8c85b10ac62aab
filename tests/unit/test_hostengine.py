"""The host engine's API client (deploy.hostengine) against a stand-in engine on a unix socket
(and on TCP): the requests the docker CLI would make, the answers read back, and the commands
`swarmlet up` asks it in place of the CLI spawning no docker process."""

from __future__ import annotations

import http.server
import json
import pathlib
import socketserver
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from deploy import hostengine, images
from deploy.backends.compose import ComposeBackend, docker_engine_error
from deploy.hostengine import HostEngine, HostEngineError, host_engine

NODE = {
    "Id": "c1" * 32, "Name": "/demo-manager1-1",
    "Config": {"Hostname": "manager1", "Labels": {"com.docker.compose.project": "demo",
                                                  "com.docker.compose.service": "manager1"}},
    "State": {"Status": "running"},
    "NetworkSettings": {"Ports": {"2375/tcp": [{"HostIp": "127.9.1.1", "HostPort": "2375"}],
                                  "2377/tcp": [{"HostIp": "127.9.1.1", "HostPort": "2377"}]},
                        "Networks": {"demo_cluster": {"IPAddress": "172.30.0.2"}}},
}
PROMETHEUS = {"Id": "p1" * 32, "Name": "/demo-prometheus-1",
              "Config": {"Hostname": "p", "Labels": {"com.docker.compose.service": "prometheus"}},
              "State": {"Status": "running"}, "NetworkSettings": {}}


class Engine:
    """What the stand-in engine holds, and the requests it was sent."""

    def __init__(self) -> None:
        self.images = {"swarmlet/node:abc": {"Id": "sha256:1", "Size": 200}}
        self.containers = {c["Id"]: c for c in (NODE, PROMETHEUS)}
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []

    def answer(self, method: str, target: str) -> tuple[int, Any]:
        url = urllib.parse.urlsplit(target)
        path, query = urllib.parse.unquote(url.path), urllib.parse.parse_qs(url.query)
        self.requests.append((method, path, query))
        if (method, path) == ("GET", "/version"):
            return 200, {"Version": "20.10.24", "ApiVersion": "1.41"}
        if method == "GET" and path.startswith("/images/") and path.endswith("/json"):
            name = path[len("/images/"):-len("/json")]
            found = self.images.get(name)
            return (200, found) if found else (404, {"message": f"No such image: {name}"})
        if method == "POST" and path.startswith("/images/") and path.endswith("/tag"):
            name = path[len("/images/"):-len("/tag")]
            if name not in self.images:
                return 404, {"message": f"No such image: {name}"}
            self.images[f"{query['repo'][0]}:{query['tag'][0]}"] = self.images[name]
            return 201, None
        if (method, path) == ("GET", "/containers/json"):
            labels = json.loads(query["filters"][0])["label"]
            listed = [{"Id": c["Id"]} for c in self.containers.values()
                      if all(self._has(c, label) for label in labels)]
            return 200, listed
        if method == "GET" and path.startswith("/containers/") and path.endswith("/json"):
            found = self.containers.get(path.split("/")[2])
            return (200, found) if found else (404, {"message": "No such container"})
        return 404, {"message": "page not found"}

    @staticmethod
    def _has(container: dict[str, Any], label: str) -> bool:
        key, _, value = label.partition("=")
        labels = container["Config"]["Labels"]
        return key in labels and (not value or labels[key] == value)


def _handler(engine: Engine) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            status, body = engine.answer(self.command, self.path)
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def address_string(self) -> str:
            return "unix"

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A stand-in engine on a unix socket, which DOCKER_HOST names; no docker CLI may run."""
    fake = Engine()
    path = tmp_path / "docker.sock"
    server = _UnixServer(str(path), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for key in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS", "DOCKER_CONTEXT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")

    def no_cli(argv: list[str], *args: object, **kwargs: object) -> None:
        pytest.fail(f"ran {argv}: the engine's socket should have been asked")

    monkeypatch.setattr(subprocess, "run", no_cli)
    monkeypatch.setattr(subprocess, "Popen", no_cli)
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def test_requests_are_the_clis_and_answers_are_read_back(engine: Engine) -> None:
    client = host_engine()
    assert client is not None
    assert client.version()["ApiVersion"] == "1.41"
    assert client.image("swarmlet/node:abc") == {"Id": "sha256:1", "Size": 200}
    assert client.image("swarmlet/node:nope") is None
    client.tag("swarmlet/node:abc", "swarmlet/node:latest")
    assert engine.requests[-1] == ("POST", "/images/swarmlet/node:abc/tag",
                                   {"repo": ["swarmlet/node"], "tag": ["latest"]})
    assert client.image("swarmlet/node:latest") == {"Id": "sha256:1", "Size": 200}
    with pytest.raises(HostEngineError) as err:
        client.tag("swarmlet/node:nope", "swarmlet/node:latest")
    assert (str(err.value), err.value.status) == ("No such image: swarmlet/node:nope", 404)
    listed = client.containers(["com.docker.compose.project=demo"])
    assert [c["Id"] for c in listed] == [NODE["Id"]]
    method, path, query = engine.requests[-1]
    assert (method, path, query["all"]) == ("GET", "/containers/json", ["1"])
    assert client.inspect("gone") is None


def test_compose_backend_lists_its_nodes_over_the_socket(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setenv("SWARMLET_STATE", str(tmp_path / "state"))
    backend = ComposeBackend(project="demo")
    [node] = backend.nodes()  # the project's Prometheus is no node
    assert (node.hostname, node.role, node.state) == ("manager1", "manager", "running")
    assert (node.docker_host, node.control_addr, node.admin_addr) == (
        "tcp://127.9.1.1:2375", "127.9.1.1:2377", "172.30.0.2:7946")
    assert ComposeBackend(project="other").nodes() == []
    assert docker_engine_error() is None


def test_images_present_are_reused_and_latest_tagged_once(engine: Engine) -> None:
    assert images.inspect_image("swarmlet/node:nope") is None
    images._point_latest("swarmlet/node:abc", "swarmlet/node:latest")
    images._point_latest("swarmlet/node:abc", "swarmlet/node:latest")
    tags = [r for r in engine.requests if r[0] == "POST"]
    assert len(tags) == 1 and engine.images["swarmlet/node:latest"]["Id"] == "sha256:1"


def test_an_engine_that_is_not_there_is_named(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = HostEngine(f"unix://{tmp_path}/none.sock", timeout=2.0)
    with pytest.raises(HostEngineError) as err:
        client.version()
    assert str(err.value).startswith(f"cannot connect to the Docker daemon at unix://{tmp_path}/none.sock")
    assert err.value.status is None
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    message = docker_engine_error()
    assert message is not None and message.startswith("No Docker engine is reachable: cannot connect")


def test_a_tcp_docker_host_is_asked_over_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Engine()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = HostEngine(f"tcp://127.0.0.1:{server.server_address[1]}")
        assert client.image("swarmlet/node:abc") == {"Id": "sha256:1", "Size": 200}
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("env", "config", "wanted"), [
    ({}, None, "unix:///var/run/docker.sock"),
    ({"DOCKER_HOST": "unix:///run/other.sock"}, None, "unix:///run/other.sock"),
    ({"DOCKER_HOST": "tcp://10.0.0.5:2375"}, None, "tcp://10.0.0.5:2375"),
    ({"DOCKER_HOST": "tcp://10.0.0.5:2376", "DOCKER_TLS_VERIFY": "1"}, None, None),
    ({"DOCKER_CERT_PATH": "/certs"}, None, None),
    ({"DOCKER_HOST": "ssh://me@box"}, None, None),
    ({"DOCKER_CONTEXT": "remote"}, None, None),
    ({}, {"currentContext": "remote"}, None),
    ({}, {"currentContext": "default"}, "unix:///var/run/docker.sock"),
    ({"DOCKER_HOST": "unix:///run/other.sock"}, {"currentContext": "remote"}, "unix:///run/other.sock"),
])
def test_the_cli_is_left_to_what_this_client_cannot_do_as_it_would(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, env: dict[str, str],
    config: dict[str, str] | None, wanted: str | None,
) -> None:
    for key in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS", "DOCKER_CONTEXT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    found = hostengine.host_engine()
    assert (found.host if found is not None else None) == wanted


class NodeEngine(http.server.BaseHTTPRequestHandler):
    """A node's Engine API as `swarmlet up` asks it while it waits: a manager (NODES_ANSWER) or,
    with NOT_MANAGER set, a worker that refuses as Swarm does."""

    protocol_version = "HTTP/1.1"
    not_manager = False

    def do_GET(self) -> None:
        if self.path == "/_ping":
            status, data, kind = 200, b"OK", "text/plain"
        elif self.not_manager:
            status, kind = 503, "application/json"
            data = json.dumps({"message": "This node is not a swarm manager."}).encode()
        elif self.path == "/info":
            status, data, kind = 200, json.dumps({"Swarm": {"NodeID": "m1"}}).encode(), "application/json"
        elif self.path == "/nodes":
            described = {"Hostname": "manager1", "Engine": {"EngineVersion": "0.1.0"}}
            nodes = [{"ID": "m1", "Description": described,
                      "Spec": {"Role": "manager", "Availability": "active"}, "Status": {"State": "ready"},
                      "ManagerStatus": {"Leader": True, "Reachability": "reachable"}}]
            status, data, kind = 200, json.dumps(nodes).encode(), "application/json"
        else:
            status, data, kind = 404, b'{"message": "page not found"}', "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("not_manager", [False, True])
def test_a_nodes_engine_api_is_read_as_node_ls_and_refusals_keep_swarms_words(not_manager: bool) -> None:
    from deploy import engine

    handler = type("Handler", (NodeEngine,), {"not_manager": not_manager})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host = f"tcp://127.0.0.1:{server.server_address[1]}"
    try:
        assert engine.ping(host)
        if not_manager:
            with pytest.raises(engine.EngineError) as err:
                engine.node_rows(host)
            assert (str(err.value), err.value.status) == ("This node is not a swarm manager.", 503)
        else:
            [row] = engine.node_rows(host)
            assert (row.hostname, row.status, row.manager_status, row.is_self) == (
                "manager1", "Ready", "Leader", True)
    finally:
        server.shutdown()
        server.server_close()
    assert not engine.ping(host)  # nothing listens there now
    with pytest.raises(engine.EngineError, match="did not answer"):
        engine.node_rows(host)
