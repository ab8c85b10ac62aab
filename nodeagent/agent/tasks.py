"""The node's task runtime, wired: log store, emulated executor, worker, reporter, dispatcher client.

``python -m nodeagent`` makes one :class:`TaskRuntime` per node (managers too: every manager is a
node that can run tasks), registers its ``NodeTasks`` service on the gossip port before that port
starts, and starts it once the agent session exists. See docs/agent.md, "Tasks".
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import platform
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import prometheus_client
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from nodeagent.agent.dependencies import Dependencies
from nodeagent.agent.dispatch_client import DispatchClient
from nodeagent.agent.emulated import EmulatedExecutor
from nodeagent.agent.logs import LogStore
from nodeagent.agent.taskservice import NodeTasksServicer
from nodeagent.agent.volumes import VolumeStore
from nodeagent.agent.worker import REPORT_INTERVAL, StatusReporter, Worker
from nodeagent.images import ImageInfo, known_images
from nodeagent.transport.planes import FaultGate

__all__ = ["TaskRuntime", "rfc3339_now"]


class _TaskStates(Collector):
    """``swarmlet_agent_tasks{state}``: the node's tasks by the state their runner is in, read
    from the runners when scraped (they are the one place that state lives)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("swarmlet_agent_tasks", "Tasks this node holds, by state",
                                   labels=["state"])  # fmt: skip
        counts: dict[str, int] = {}
        for runner in self.worker.runners.values():
            counts[runner.state] = counts.get(runner.state, 0) + 1
        for state, n in sorted(counts.items()):
            family.add_metric([state], n)
        yield family


def rfc3339_now() -> str:
    """Now, as Docker stamps task statuses (RFC 3339, nanoseconds)."""
    from nodeagent.agent.logs import format_time_ns

    return format_time_ns(time.time_ns())


class TaskRuntime:
    """Everything that runs tasks on this node."""

    def __init__(self, *, node_id: str, hostname: str, listen_host: str, time_scale: float = 1.0,
                 registry: prometheus_client.CollectorRegistry | None = None, overlay: Any = None,
                 volumes_dir: str | None = None, shared_volumes_dir: str | None = None,
                 faults: FaultGate | None = None) -> None:
        """Nothing runs until :meth:`start`; metrics go to ``registry`` (the process's one);
        tasks reach each other through ``overlay`` (the node's data plane), if given; named
        volumes live under ``volumes_dir`` (none: only tmpfs and anonymous ones), shared ones
        under ``shared_volumes_dir``; ``faults`` are the node's injected link faults, applied to
        the streams with the managers."""
        self.faults = faults if faults is not None else FaultGate(None, "dispatcher")
        self.logs = LogStore(time.time_ns)
        # Secrets and configs live here, in memory only (never under the data dir).
        self.dependencies = Dependencies(node_os="linux", architecture=platform.machine() or "x86_64")
        self.volumes: VolumeStore | None = None
        if volumes_dir is not None:
            shared = pathlib.Path(shared_volumes_dir) if shared_volumes_dir else None
            self.volumes = VolumeStore(pathlib.Path(volumes_dir), shared)
        self.executor = EmulatedExecutor(
            node_id=node_id, hostname=hostname, listen_host=listen_host, logs=self.logs,
            time_scale=time_scale, files=lambda task: self.dependencies.files(task, hostname),
            overlay=overlay, volumes=self.volumes,
        )  # fmt: skip
        self._leader: Callable[[], str] = lambda: ""
        self.client: DispatchClient | None = None
        self.reporter = StatusReporter(self._send, REPORT_INTERVAL * time_scale)
        self.worker = Worker(self.executor, self.reporter, rfc3339_now, self.dependencies)
        if registry is not None:
            registry.register(_TaskStates(self.worker))
        self.node_id = node_id
        self.time_scale = time_scale
        self.service = NodeTasksServicer(self.worker.rows, self.logs, self.dependencies.rows)
        self._jobs: list[asyncio.Task[None]] = []

    def register(self, server: grpc.aio.Server) -> None:
        """Add the NodeTasks service to the gossip port's gRPC server."""
        self.service.register(server)

    async def _send(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        if self.client is None:
            raise ConnectionError("the task runtime is not connected yet")
        await self.client.send_statuses(batch)

    def start(self, leader: Callable[[], str]) -> None:
        """Follow the managers the session talks to (``leader()``; "" while it reconnects)."""
        self.client = DispatchClient(self.node_id, leader, self.worker, self.time_scale, faults=self.faults)
        loop = asyncio.get_running_loop()
        self._jobs = [
            loop.create_task(self.client.run(), name="assignments"),
            loop.create_task(self.reporter.run(), name="status-reports"),
        ]

    async def stop(self) -> None:
        """Abandon every task and stop the streams (the process is exiting)."""
        self.worker.stop()
        for job in self._jobs:
            job.cancel()
        for job in self._jobs:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job
        self._jobs.clear()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()

    def images(self) -> list[ImageInfo]:
        """The node's images for ``GET /images/json``: every emulated one, and those its tasks used."""
        return known_images(self.worker.images_used)
