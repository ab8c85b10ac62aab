"""The filter pipeline: can this task run on this node, and if not, how Swarm says so.

Every rule lives here, in swarmkit's pipeline order (``manager/scheduler/pipeline.go``); a node
is charged to the first filter it fails, and a task that fits nowhere gets
``"no suitable node (" + explanations + ")"`` with the explanations sorted by how many nodes
failed them (most first; ties keep pipeline order, as Go's insertion sort does for so few):

========================  ====================================================  ==========
filter                    Swarm's explanation (for n nodes)                     asked when
========================  ====================================================  ==========
ready                     ``1 node not available for new tasks`` / ``n nodes``  always
resources                 ``insufficient resources on 1 node`` / ``n nodes``    reserves CPU or memory
constraints               ``scheduling constraints not satisfied on 1 node``    has constraints
platform                  ``unsupported platform on 1 node``                    has Placement.Platforms
host-ports                ``host-mode port already in use on 1 node``           publishes host-mode ports
max-replicas              ``max replicas per node limit exceed`` (no count)     MaxReplicas > 0
========================  ====================================================  ==========

"ready" is swarmkit's ReadyFilter: the node is ``ready`` *and* its availability is ``active``
(pause and drain both mean "not available for new tasks"). swarmkit's plugin and CSI volume
filters have nothing to check in swarmlet (emulated engines have every plugin; no CSI volumes).

Each filter can also say, for one node, why it passed or failed and what would change the
answer (:meth:`Filter.diagnose`): that is what :mod:`manager.scheduler.explain` shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from manager.scheduler.nodeinfo import NodeInfo, TaskNeeds

__all__ = [
    "CONSTRAINTS",
    "FILTERS",
    "HOST_PORTS",
    "MAX_REPLICAS",
    "PLATFORM",
    "READY",
    "RESOURCES",
    "Filter",
    "enabled_filters",
    "explanation",
    "first_failure",
    "format_cpus",
    "format_memory",
    "no_suitable_node",
]


def _nodes(count: int) -> str:
    return "1 node" if count == 1 else f"{count} nodes"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def format_cpus(nano: int) -> str:
    """NanoCPUs as docker shows CPUs: ``0.5``, ``2``, ``64``."""
    return f"{nano / 1e9:.2f}".rstrip("0").rstrip(".")


def format_memory(size: int) -> str:
    """Bytes in binary units, as ``docker node inspect --pretty`` shows memory."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.4g} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    raise AssertionError("unreachable")


class Filter:
    """One rule of the pipeline. ``static`` filters never change their answer within a batch."""

    name = "filter"
    static = True
    words = "filter failed on"  # swarmkit's explanation, with the node count after it

    def enabled(self, needs: TaskNeeds) -> bool:
        """Is this filter asked for this task at all (swarmkit's SetTask)?"""
        return True

    def check(self, needs: TaskNeeds, node: NodeInfo) -> bool:
        """Can the task run on the node, as far as this filter is concerned?"""
        raise NotImplementedError

    def explain(self, count: int) -> str:
        """Swarm's words for ``count`` nodes failing this filter."""
        return f"{self.words} {_nodes(count)}"

    def diagnose(self, needs: TaskNeeds, node: NodeInfo) -> tuple[str, str]:
        """Why the filter passes or fails on this node, and (on failure) what would fix it."""
        raise NotImplementedError


class _Ready(Filter):
    name = "ready"

    def check(self, needs: TaskNeeds, node: NodeInfo) -> bool:
        return node.ready

    def explain(self, count: int) -> str:
        return f"{_nodes(count)} not available for new tasks"

    def diagnose(self, needs: TaskNeeds, node: NodeInfo) -> tuple[str, str]:
        if node.ready:
            return "node is ready and active", ""
        if node.state != "ready":
            return (
                f"node is {node.state}, not ready",
                "start the node, or wait until its agent reports ready again",
            )
        return (
            f"node availability is {node.availability}",
            f"docker node update --availability active {node.hostname or node.id}",
        )


class _Resources(Filter):
    name = "resources"
    static = False
    words = "insufficient resources on"

    def enabled(self, needs: TaskNeeds) -> bool:
        return needs.nano_cpus > 0 or needs.memory_bytes > 0

    def check(self, needs: TaskNeeds, node: NodeInfo) -> bool:
        return needs.nano_cpus <= node.cpu_free and needs.memory_bytes <= node.mem_free

    def diagnose(self, needs: TaskNeeds, node: NodeInfo) -> tuple[str, str]:
        parts, fixes = [], []
        if needs.nano_cpus:
            parts.append(
                f"reserves {format_cpus(needs.nano_cpus)} CPU, "
                f"{format_cpus(node.cpu_free)} of {format_cpus(node.cpu_total)} free"
            )
            if needs.nano_cpus > node.cpu_free:
                fixes.append(f"{format_cpus(needs.nano_cpus - node.cpu_free)} more CPU")
        if needs.memory_bytes:
            parts.append(
                f"reserves {format_memory(needs.memory_bytes)} memory, "
                f"{format_memory(node.mem_free)} of {format_memory(node.mem_total)} free"
            )
            if needs.memory_bytes > node.mem_free:
                fixes.append(f"{format_memory(needs.memory_bytes - node.mem_free)} more memory")
        fix = ""
        if fixes:
            fix = "free or add " + " and ".join(fixes) + " on this node, or lower the reservation"
        return "; ".join(parts), fix


class _Constraints(Filter):
    name = "constraints"
    words = "scheduling constraints not satisfied on"

    def enabled(self, needs: TaskNeeds) -> bool:
        return bool(needs.constraints)

    def check(self, needs: TaskNeeds, node: NodeInfo) -> bool:
        facts = node.facts
        return all(c.holds_facts(facts) for c in needs.constraints)

    def diagnose(self, needs: TaskNeeds, node: NodeInfo) -> tuple[str, str]:
        failed, fixes = [], []
        for c in needs.constraints:
            if c.holds_facts(node.facts):
                continue
            value = c.value_in(node.facts)
            if value is None:
                failed.append(f"{c}: Swarm knows no such key, no node can match it")
                fixes.append("use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, "
                             "node.labels.KEY or engine.labels.KEY")  # fmt: skip
                continue
            failed.append(f"{c}: the node has {value!r}" if value else f"{c}: the node has none")
            fixes.append(_constraint_fix(c.key, c.equal, c.value, node))
        if not failed:
            return "every constraint holds: " + ", ".join(str(c) for c in needs.constraints), ""
        return "; ".join(failed), "; ".join(f for f in fixes if f)


def _constraint_fix(key: str, equal: bool, value: str, node: NodeInfo) -> str:
    lowered, target = key.lower(), node.hostname or node.id
    if lowered.startswith("node.labels."):
        label = key[len("node.labels.") :]
        if equal:
            return f"docker node update --label-add {label}={value} {target}"
        return f"docker node update --label-rm {label} {target}"
    if lowered.startswith("engine.labels."):
        label = key[len("engine.labels.") :]
        verb = "set" if equal else "remove"
        return f"{verb} the engine label {label} in the node's engine configuration"
    if lowered == "node.role":
        if equal and value.lower() in ("manager", "worker"):
            verb = "promote" if value.lower() == "manager" else "demote"
            return f"docker node {verb} {target}"
        if equal:
            return ""
        return f"docker node {'demote' if value.lower() == 'manager' else 'promote'} {target}"
    return ""  # id, hostname, address and platform are facts of the node: another node must serve


class _Platform(Filter):
    name = "platform"
    words = "unsupported platform on"

    def enabled(self, needs: TaskNeeds) -> bool:
        return bool(needs.platforms)

    def check(self, needs: TaskNeeds, node: NodeInfo) -> bool:
        return any(
            (not os or os == node.os) and (not arch or arch == node.arch) for os, arch in needs.platforms
        )

    def diagnose(self, needs: TaskNeeds, node: NodeInfo) -> tuple[str, str]:
        wanted = ", ".join(f"{os or '*'}/{arch or '*'}" for os, arch in needs.platforms)
        reason = f"node is {node.os or '?'}/{node.arch or '?'}; the image runs on {wanted}"
        return reason, "" if self.check(needs, node) else "run it on a node of a supported platform"


class _HostPorts(Filter):
    name = "host-ports"
    static = False
    words = "host-mode port already in use on"

    def enabled(self, needs: TaskNeeds) -> bool:
        return bool(needs.host_ports)

    def check(self, needs: TaskNeeds, node: NodeInfo) -> bool:
        used = node.ports
        return not used or not any(port in used for port in needs.host_ports)

    def diagnose(self, needs: TaskNeeds, node: NodeInfo) -> tuple[str, str]:
        taken = sorted(p for p in needs.host_ports if p in node.ports)
        if not taken:
            ports = ", ".join(f"{port}/{proto}" for proto, port in sorted(needs.host_ports))
            return f"host-mode ports {ports} are free", ""
        held = ", ".join(f"{port}/{proto} by task {node.ports[(proto, port)]}" for proto, port in taken)
        return f"host-mode port in use: {held}", "publish in ingress mode, or another port, or add a node"


class _MaxReplicas(Filter):
    name = "max-replicas"
    static = False

    def enabled(self, needs: TaskNeeds) -> bool:
        return needs.max_replicas > 0

    def check(self, needs: TaskNeeds, node: NodeInfo) -> bool:
        return node.by_service.get(needs.service_id, 0) < needs.max_replicas

    def explain(self, count: int) -> str:
        return "max replicas per node limit exceed"  # swarmkit's words, without a count

    def diagnose(self, needs: TaskNeeds, node: NodeInfo) -> tuple[str, str]:
        have = node.by_service.get(needs.service_id, 0)
        reason = f"{_plural(have, 'task')} of the service on this node, at most {needs.max_replicas} allowed"
        if have < needs.max_replicas:
            return reason, ""
        return reason, "raise --replicas-max-per-node, or add nodes that pass the other filters"


READY = _Ready()
RESOURCES = _Resources()
CONSTRAINTS = _Constraints()
PLATFORM = _Platform()
HOST_PORTS = _HostPorts()
MAX_REPLICAS = _MaxReplicas()
FILTERS: tuple[Filter, ...] = (READY, RESOURCES, CONSTRAINTS, PLATFORM, HOST_PORTS, MAX_REPLICAS)
"""swarmkit's defaultFilters order: Ready, Resource, (Plugin), Constraint, Platform, HostPort, MaxReplicas."""


def enabled_filters(needs: TaskNeeds) -> tuple[Filter, ...]:
    """The filters this task asks, in pipeline order."""
    return tuple(f for f in FILTERS if f.enabled(needs))


def first_failure(filters: Iterable[Filter], needs: TaskNeeds, node: NodeInfo) -> Filter | None:
    """The first filter the node fails (the one swarmkit charges it to), or None if it fits."""
    for f in filters:
        if not f.check(needs, node):
            return f
    return None


def explanation(failures: Mapping[Filter, int]) -> str:
    """swarmkit's Pipeline.Explain: explanations by failure count, most first, joined by "; "."""
    order = {f: i for i, f in enumerate(FILTERS)}
    ranked = sorted((f for f, n in failures.items() if n > 0), key=lambda f: (-failures[f], order[f]))
    return "; ".join(f.explain(failures[f]) for f in ranked)


def no_suitable_node(explained: str) -> str:
    """A pending task's Status.Err, built as swarmkit's noSuitableNode builds it."""
    return f"no suitable node ({explained})" if explained else "no suitable node"
