"""The emulated runtime behind the executor seam: each task's container is an emulated image.

``prepare`` resolves the image (:func:`nodeagent.images.resolve`) and builds the container's view
of its task (:class:`~nodeagent.images.base.TaskEnv`); ``start`` mounts its secrets and configs
(the ``files(task)`` seam, read at start as moby sets up a container's secrets at its start, so
templates expand then), binds its listeners and runs its main process; ``wait`` watches the
process and the healthcheck; ``shutdown`` takes the task out of every load balancer
(its network endpoints, the routing mesh), waits :data:`CONVERGE_DELAY` for that to spread, sends
SIGTERM and kills at the end of the task's StopGracePeriod (10 s by default, as Docker), and a
killed process's exit code is 137 as in Docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from nodeagent.agent.exec import ContainerFacts, ExitError, UnhealthyError
from nodeagent.agent.health import HealthConfig, HealthState, run_check
from nodeagent.agent.logs import LogStore
from nodeagent.agent.volumes import VolumeStore
from nodeagent.images import resolve
from nodeagent.images.base import Process, TaskEnv, spec_env
from nodeagent.images.fs import Mount

__all__ = ["CONVERGE_DELAY", "DEFAULT_STOP_GRACE", "EmulatedController", "EmulatedExecutor"]

log = logging.getLogger(__name__)

DEFAULT_STOP_GRACE = 10.0
"""Seconds between SIGTERM and the kill when the spec gives no StopGracePeriod (Docker's)."""
_KILLED = 137
_NOWHERE = pathlib.Path("/nonexistent/swarmlet-volumes")  # no volume store: a named volume cannot be made
CONVERGE_DELAY = 0.5
"""Seconds between taking a stopping task out of the load balancers and its SIGTERM, for the
news to reach every node (moby waits 2 s; gossip broadcasts here go out at once)."""


def _slot(task: Mapping[str, Any]) -> int:
    slot = task.get("Slot")
    return slot if isinstance(slot, int) else 0


class EmulatedController:
    """One task's emulated container (an :class:`~nodeagent.agent.exec.Controller`)."""

    def __init__(self, task: Mapping[str, Any], executor: EmulatedExecutor) -> None:
        """Nothing runs until ``start``."""
        self.task = task
        self.executor = executor
        self.task_id = str(task["ID"])
        spec = task.get("Spec") or {}
        self.container: Mapping[str, Any] = spec.get("ContainerSpec") or {}
        self.container_id = hashlib.sha256(f"swarmlet-container:{self.task_id}".encode()).hexdigest()
        self.pid = 0
        self.exit_code = 0
        self.env: TaskEnv | None = None
        self.process: Process | None = None
        self._main: asyncio.Task[int] | None = None
        self._started_at = 0.0
        self._removed = False
        self._stopping: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the seam

    async def prepare(self) -> None:
        """Resolve the image and build the task's environment."""
        image = str(self.container.get("Image") or "")
        if not image:
            raise ValueError("no image specified")  # the API refuses this earlier; keep the runtime safe
        provider, repository, tag = resolve(image)
        ex = self.executor
        name = str((self.task.get("Annotations") or {}).get("Name") or self.task_id)
        service = str((self.task.get("ServiceAnnotations") or {}).get("Name") or name.split(".")[0])
        self.env = TaskEnv(
            task_id=self.task_id, task_name=name, service_name=service, slot=_slot(self.task),
            node_id=ex.node_id, node_hostname=ex.hostname, image=image, repository=repository, tag=tag,
            command=[str(c) for c in self.container.get("Command") or []],
            args=[str(a) for a in self.container.get("Args") or []],
            env=spec_env(self.container), files={}, listen_host=ex.listen_host,
            stdout=ex.logs.writer(self.task_id, "stdout"), stderr=ex.logs.writer(self.task_id, "stderr"),
            hostname=str(self.container.get("Hostname") or self.container_id[:12]),
        )  # fmt: skip
        # Volumes, binds and tmpfs (a bad one rejects the task, as Docker's container create does).
        self.env.set_mounts(ex.mounts_for(self.task, self.container_id))
        if ex.overlay is not None:  # attach to the task's overlays before its process exists
            self.env.network = ex.overlay.join(self.task)
        self.process = provider.process(self.env)

    async def start(self) -> None:
        """Mount the task's secrets and configs, bind the listeners and run the main process."""
        assert self.process is not None and self.env is not None, "start before prepare"
        try:
            files = self.executor.files_for(self.task)
        except Exception as exc:  # moby's container start wraps what the secret/config setup said
            raise RuntimeError(f"starting container failed: {exc}") from None
        self.env.files.update(files)
        await self.process.start()
        if HealthConfig.from_spec(self.container.get("Healthcheck")) is None:
            self._publish()  # running: reachable by name (with a healthcheck: once healthy)
        self.pid = self.executor.next_pid()
        self._started_at = self.executor.clock()
        self._main = asyncio.get_running_loop().create_task(self.process.run(), name=f"main-{self.task_id}")

    async def wait(self) -> None:
        """Until the process exits (ExitError if non-zero) or the healthcheck fails (UnhealthyError)."""
        assert self._main is not None and self.env is not None, "wait before start"
        health = HealthConfig.from_spec(self.container.get("Healthcheck"), self.executor.time_scale)
        checker = None
        if health is not None:
            checker = asyncio.get_running_loop().create_task(self._health(health))
        try:
            waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(asyncio.shield(self._main))}
            if checker is not None:
                waiters.add(checker)
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if checker is not None and checker.done() and not self._main.done():
                # The task fails now, as moby's Wait returns at the health event; the container
                # is stopped after (SIGTERM, then the kill at the end of the grace period).
                self._stopping = asyncio.get_running_loop().create_task(self.shutdown())
                raise UnhealthyError(self.exit_code)
            await self._finish()
        finally:
            if checker is not None:
                checker.cancel()
        if self.exit_code != 0:
            raise ExitError(self.exit_code)

    async def shutdown(self, grace: float | None = None) -> None:
        """SIGTERM, then kill after the stop grace period; the exit code is 137 when killed."""
        main = self._main
        if main is None or self.process is None:
            return
        if not main.done():
            overlay = self.executor.overlay
            if overlay is not None and overlay.withdraw(self.task_id) and grace is None:
                # Out of every load balancer first, then a pause for the news to spread before
                # SIGTERM (moby's controller: deactivateServiceBinding, then the gossip converge
                # delay); tunnels still reach the task meanwhile and it serves what is open.
                await asyncio.sleep(CONVERGE_DELAY * self.executor.time_scale)
            self.process.terminate()
            wait = self.stop_grace() if grace is None else grace
            done, _ = await asyncio.wait({asyncio.ensure_future(asyncio.shield(main))}, timeout=wait)
            if not done:
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await main
        await self._finish()

    async def remove(self) -> None:
        """Stop if still running and close the task's log."""
        if self._removed:
            return
        self._removed = True
        await self.shutdown(grace=0.0)
        self.executor.release(self.container_id)
        if self.executor.overlay is not None:
            self.executor.overlay.detach(self.task_id)
        log_ = self.executor.logs.get(self.task_id)
        if log_ is not None:
            log_.close()

    def facts(self) -> ContainerFacts:
        """ContainerStatus and the task's listeners (container port -> node address and port)."""
        listeners: list[dict[str, Any]] = []
        if self.env is not None and self._main is not None and not self._main.done():
            for target, port in sorted(self.env.ports.items()):
                listeners.append({"Protocol": "tcp", "TargetPort": target, "Addr": self.env.listen_host,
                                  "Port": port})  # fmt: skip
        cid = self.container_id if self.pid else ""
        files = sorted(self.env.files) if self.env is not None else []
        return ContainerFacts(cid, self.pid if self._main is not None and not self._main.done() else 0,
                              self.exit_code, listeners, files)  # fmt: skip

    # ------------------------------------------------------------------ inside

    def stop_grace(self) -> float:
        """StopGracePeriod from the spec (nanoseconds), else Docker's 10 s, after the time scale."""
        value = self.container.get("StopGracePeriod")
        seconds = value / 1e9 if isinstance(value, int) and value >= 0 else DEFAULT_STOP_GRACE
        return seconds * self.executor.time_scale

    async def _finish(self) -> None:
        main = self._main
        if main is None:
            return
        if main.done():
            if main.cancelled():
                self.exit_code = _KILLED
            elif main.exception() is not None:
                self.exit_code = 1
                assert self.env is not None
                self.env.stderr(f"{type(main.exception()).__name__}: {main.exception()}")
            else:
                self.exit_code = int(main.result())
            if self.executor.overlay is not None:
                self.executor.overlay.detach(self.task_id)  # exited: no longer a DNS answer
        if self.process is not None:
            with contextlib.suppress(Exception):
                await self.process.close()
        if main.done() and self.env is not None:
            # The container's secrets and configs go with its process (its tmpfs, in Docker):
            # a finished task keeps no copy of a secret while its runner waits to be removed.
            self.env.files.clear()

    def _publish(self) -> None:
        """Put the task in its networks' endpoint tables (DNS answers and VIP balancing)."""
        if self.executor.overlay is not None and self.env is not None:
            self.executor.overlay.publish(self.task, self.env.ports)

    async def _health(self, config: HealthConfig) -> None:
        """Returns once the container is unhealthy; publishes the task once it is healthy, as
        Docker adds a task to its service's load balancer only then."""
        assert self.env is not None
        state = HealthState(config.retries, config.start_period)
        published = False
        while True:
            await asyncio.sleep(config.interval)
            ok = await run_check(config, self.env)
            status = state.record(ok, self.executor.clock() - self._started_at)
            if status == "unhealthy":
                return
            if status == "healthy" and not published:
                published = True
                self._publish()


class EmulatedExecutor:
    """Makes emulated controllers for one node (an :class:`~nodeagent.agent.exec.Executor`)."""

    def __init__(self, *, node_id: str, hostname: str, listen_host: str, logs: LogStore,
                 time_scale: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 files: Callable[[Mapping[str, Any]], Mapping[str, bytes]] | None = None,
                 overlay: Any = None, volumes: VolumeStore | None = None) -> None:
        """``listen_host``: the node's address, where task listeners bind (ephemeral ports).

        ``overlay``: the node's data plane (:class:`nodeagent.overlay.shell.Overlay`), which tasks
        join when prepared, are published in once running and leave when they exit; None: none.

                ``files(task)`` gives the files mounted in a task's container (path -> bytes): its
        configs and secrets, as delivered and expanded (:meth:`Dependencies.files`); it raises
        when one cannot be mounted, and the task fails at "starting" with that error.

        ``volumes``: the node's volumes (:class:`~nodeagent.agent.volumes.VolumeStore`), which
        make a task's ``Mounts``; None: only tmpfs and anonymous volumes, in memory.
        """
        self.node_id = node_id
        self.hostname = hostname
        self.listen_host = listen_host
        self.logs = logs
        self.time_scale = time_scale
        self.clock = clock
        self._files = files
        self.overlay = overlay
        self.volumes = volumes
        self._pid = 1000

    def mounts_for(self, task: Mapping[str, Any], container_id: str) -> list[Mount]:
        """The mounts of ``task``'s container; raises MountError (the task is rejected)."""
        store = self.volumes if self.volumes is not None else VolumeStore(_NOWHERE, None)
        return store.mounts(task, container_id)

    def release(self, container_id: str) -> None:
        """The container is removed: its volumes are no longer in use."""
        if self.volumes is not None:
            self.volumes.release(container_id)

    def files_for(self, task: Mapping[str, Any]) -> Mapping[str, bytes]:
        """The files mounted in ``task``'s container."""
        return self._files(task) if self._files is not None else {}

    def next_pid(self) -> int:
        """A PID for a new container's main process, unique on this node."""
        self._pid += 1
        return self._pid

    def controller(self, task: Mapping[str, Any]) -> EmulatedController:
        """A controller for one task."""
        return EmulatedController(task, self)
