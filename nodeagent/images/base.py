"""What an emulated image is given and what it must provide.

An image (:class:`ImageProvider`) makes one :class:`Process` per task: the emulated container's
main process. The agent's controller (:mod:`nodeagent.agent.emulated`) calls ``start()`` (bind
listeners; a failure fails the task at "starting"), then ``run()`` until it returns the exit code.
To stop it, the controller calls ``terminate()`` (SIGTERM) and, after the task's stop grace
period, cancels ``run()`` (SIGKILL, exit code 137). A process that ignores SIGTERM, as a shell's
``sleep`` does as PID 1, simply keeps running until it is killed, as in Docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from nodeagent.images.fs import ContainerFS, FsError, Mount
from nodeagent.overlay.splice import register_listener, unregister_listener

__all__ = [
    "FsError",
    "ImageInfo",
    "ImageProvider",
    "ListeningProcess",
    "Process",
    "TaskEnv",
    "TaskNetworkAPI",
    "WaitingProcess",
    "image_info",
    "spec_env",
]


@dataclass(frozen=True)
class ImageInfo:
    """One image as the node's ``GET /images/json`` lists it."""

    name: str  # repository, e.g. "nginx" or "traefik/whoami"
    tag: str  # e.g. "latest"
    id: str  # "sha256:<64 hex>", stable for the same name and tag
    size: int  # bytes, as Docker reports an image's size
    created: int  # Unix seconds


class TaskNetworkAPI(Protocol):
    """What a task's processes use to reach other tasks over its overlays
    (:class:`nodeagent.overlay.shell.TaskNetwork`)."""

    def resolve(self, name: str) -> list[str]:
        """Addresses for a name, as the node's embedded DNS answers this task ([] when unknown)."""
        ...

    async def connect(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A stream to a task (or a VIP) by name or overlay address; OSError as a socket would."""
        ...


@dataclass
class TaskEnv:
    """What an emulated process sees of its task, its node and its container."""

    task_id: str
    task_name: str  # <service>.<slot>.<task id> (global: <service>.<node id>.<task id>)
    service_name: str
    slot: int
    node_id: str
    node_hostname: str
    image: str  # the image reference as the spec has it (e.g. "nginx:1.25")
    repository: str  # normalised repository ("nginx", "traefik/whoami")
    tag: str
    command: list[str]  # ContainerSpec.Command (the entrypoint override); [] for the image's own
    args: list[str]  # ContainerSpec.Args
    env: dict[str, str]
    files: dict[str, bytes]  # absolute path -> content: mounted configs and secrets
    listen_host: str  # the node's address: listeners bind here on an ephemeral port
    stdout: Callable[[str], None]  # write one line (no newline) to the task's log
    stderr: Callable[[str], None]
    ports: dict[int, int] = field(default_factory=dict)  # container port -> the port really bound
    hostname: str = ""  # the container's hostname (Docker: the first 12 characters of its ID)
    network: TaskNetworkAPI | None = None  # the task's overlays; None when it is on none
    mounts: list[Mount] = field(default_factory=list)  # ContainerSpec.Mounts: volumes, binds, tmpfs
    fs: ContainerFS = field(init=False)

    def __post_init__(self) -> None:
        """The container's file system over ``files`` (shared, so later mounts show) and ``mounts``."""
        self.fs = ContainerFS(self.files, self.mounts)

    def set_mounts(self, mounts: list[Mount]) -> None:
        """Mount ``mounts`` (the controller does it before the process starts)."""
        self.mounts = list(mounts)
        self.fs = ContainerFS(self.files, self.mounts)

    def read_file(self, path: str) -> bytes | None:
        """A file's content (a secret or config, a mount's, the container's own), or None."""
        return self.fs.read(posixpath.normpath(path))

    def write_file(self, path: str, data: bytes, *, append: bool = False) -> None:
        """Write or append a file of the container; FsError (the kernel's words) when refused."""
        self.fs.write(path, data, append=append)

    def port_for(self, container_port: int) -> int | None:
        """The port bound for ``container_port`` (for healthchecks that dial localhost)."""
        return self.ports.get(container_port)


class Process:
    """The emulated main process of a task. Subclasses override ``run`` (and maybe the others)."""

    def __init__(self, env: TaskEnv) -> None:
        """Keep the task's environment; nothing runs yet."""
        self.env = env
        self.terminated = asyncio.Event()

    async def start(self) -> None:
        """Bind listeners and get ready; raise to fail the task at "starting"."""

    async def run(self) -> int:
        """Run until the process exits; return its exit code."""
        return 0

    def terminate(self) -> None:
        """SIGTERM: a process that honours it returns from ``run`` soon after."""
        self.terminated.set()

    async def close(self) -> None:
        """Release what ``start`` bound (called once the process has exited or was killed)."""


class WaitingProcess(Process):
    """A server's main process: runs until SIGTERM, then exits 0."""

    async def run(self) -> int:
        """Wait for SIGTERM."""
        await self.terminated.wait()
        return 0


class ListeningProcess(WaitingProcess):
    """A server: one listener on an ephemeral port of the node's address, recorded as the task's
    ``container_port`` (the task's published/overlay traffic is sent there), closed at the end."""

    def __init__(self, env: TaskEnv) -> None:
        """No listener until :meth:`listen`."""
        super().__init__(env)
        self.server: asyncio.Server | None = None

    async def listen(
        self, container_port: int,
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ) -> int:
        """Bind ``handler`` on the node's address and record it as ``container_port``; the host port."""
        self.server = await asyncio.start_server(handler, self.env.listen_host, 0)
        register_listener(self.server)
        port = int(self.server.sockets[0].getsockname()[1])
        self.env.ports[container_port] = port
        return port

    async def close(self) -> None:
        """Close the listener."""
        if self.server is not None:
            unregister_listener(self.server)
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 0.5)
            self.server = None


class ImageProvider(Protocol):
    """An emulated image, registered in the ``swarmlet.images`` entry point group."""

    names: tuple[str, ...]
    """Repositories it emulates ("nginx", "traefik/whoami"); "*" for the image of last resort."""

    def describe(self, repository: str, tag: str) -> ImageInfo:
        """What ``docker image ls`` shows for this repository and tag."""
        ...

    def process(self, env: TaskEnv) -> Process:
        """A new main process for one task."""
        ...


def image_info(repository: str, tag: str, size: int, created: int = 1_700_000_000) -> ImageInfo:
    """An ImageInfo whose ID is a stable digest of the repository and tag."""
    import hashlib

    digest = hashlib.sha256(f"swarmlet:{repository}:{tag}".encode()).hexdigest()
    return ImageInfo(repository, tag, f"sha256:{digest}", size, created)


def spec_env(container: Mapping[str, Any]) -> dict[str, str]:
    """ContainerSpec.Env ("K=V" strings) as a dict."""
    out: dict[str, str] = {}
    for item in container.get("Env") or []:
        if isinstance(item, str):
            key, _, value = item.partition("=")
            out[key] = value
    return out
