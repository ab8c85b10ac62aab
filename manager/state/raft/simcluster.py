"""A Raft cluster on the simulated network, with clients, faults and safety checks.

Each manager is a :class:`RaftNode` on a :class:`SimHost`, with storage that survives crashes and the
replicated store as its state machine (:mod:`manager.state.raft.simmanager` says how the clients'
read, write and cas become Store batches). Clients invoke operations against random managers and
record a history of JSON-line events for the linearizability checker. While faults come and go,
the harness checks what Raft promises at every step:

* election safety: at most one leader per term;
* log matching: two logs that hold an entry with the same index and term agree up to it;
* leader completeness: a new leader holds every entry committed before it was elected;
* state machine safety: what any manager applies at an index is what every other applied there,
  in order, so all applied sequences are prefixes of one another;
* liveness after healing: once every fault is undone, a leader appears and writes succeed, and
  every member's store snapshot is byte-identical.

Everything is driven by one :class:`Simulator` seed, so a run replays exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from manager.state.raft.core import NotLeader
from manager.state.raft.messages import ConfChange, ConfChangeType, Role
from manager.state.raft.simmanager import SimManager, SimRequest, SimStorage
from manager.state.raft.simoptions import FAULTS, RunResult, SimOptions
from manager.state.raft.types import Entry, EntryType, SnapshotMeta
from nodeagent.sim import LinkProfile, SimNetwork, Simulator

__all__ = ["FAULTS", "RaftSimCluster", "RunResult", "SimOptions"]  # the options re-exported for callers

#: A healthy run fires a few hundred events per virtual second; this many means a message storm.
_EVENTS_PER_SECOND = 20_000

class RaftSimCluster:
    """One seeded run: build the cluster, drive clients and faults, check everything."""

    def __init__(self, seed: int, options: SimOptions | None = None) -> None:
        self.seed = seed
        self.options = opts = options if options is not None else SimOptions()
        self.sim = Simulator(seed)
        self.trace: list[str] = []
        tracer = self.trace.append if opts.trace else None
        codec = None
        if opts.codec:
            from manager.state.raft.codec import RaftCodec  # only when asked: it needs the generated modules

            codec = RaftCodec()
        self.net = SimNetwork(self.sim, LinkProfile(latency=0.0005, jitter=0.001), codec=codec, tracer=tracer)
        import dataclasses

        self.raft_config = dataclasses.replace(
            opts.raft, snapshot_every=opts.snapshot_every, keep_after_snapshot=opts.keep_after_snapshot
        )
        self.names = tuple(f"m{i + 1}" for i in range(opts.managers))
        self.rng = self.sim.fork_rng("campaign")
        self.fault_rng = self.sim.fork_rng("faults")
        self.crash_rng = self.sim.fork_rng("crash-notice")  # its own, so faults draw as before
        if opts.read_mode == "mixed":
            self.read_mode = self.rng.choice(("log", "index"))
        else:
            self.read_mode = opts.read_mode
        self.incarnations: dict[str, int] = {}
        self.storages = {name: SimStorage() for name in self.names}
        self.managers: dict[str, SimManager | None] = {}
        for name in self.names:
            host = self.net.add_host(name)
            self.managers[name] = SimManager(self, name, host, self.storages[name], self.names)
        # Safety bookkeeping.
        self.violations: list[str] = []
        self.leaders: dict[int, str] = {}  # term -> the leader of that term
        self.applied_log: dict[int, tuple[int, int, bytes]] = {}  # index -> (term, type, data)
        self.committed_in: dict[int, tuple[int, int]] = {}  # index -> (term it was committed in, its term)
        self.committed_top = 0
        # (crash time, term of the crashed leader, "refusing" or "silent")
        self.failover_from: tuple[float, int, str] | None = None
        self.failovers: list[float] = []
        self.failovers_by_crash: dict[str, list[float]] = {"refusing": [], "silent": []}
        self.refusing: set[str] = set()  # crashed managers whose port refuses connections
        self.stats = {"leader_crashes": 0, "faults": 0, "snapshots_installed": 0, "elections": 0}
        # Clients.
        self.history: list[dict[str, Any]] = []
        self.value_seq = 0
        self.req_seq = 0
        self.processes = list(range(opts.clients))
        self.outstanding: dict[int, tuple[SimRequest, Any]] = {}  # client -> (request, timeout timer)
        self.written: dict[str, list[int]] = {}
        self.healed_at: float | None = None
        self.ok_writes_after_heal = 0
        self.down: set[str] = set()
        self.paused: set[str] = set()
        self.partitioned = False  # one partition at a time, so each lasts as long as it was drawn
        # Managers that are members or joining: clients and faults pick among these.
        self.targets = list(self.names)
        self.removed: set[str] = set()  # managers removed from the cluster; they are shut down for good

    # Events from managers -----------------------------------------------------------------------
    def _note(self, text: str) -> None:
        if self.options.trace:
            self.trace.append(f"{self.sim.now:.6f} {text}")

    def note(self, text: str) -> None:
        """Add a line to the trace, when tracing (for the managers)."""
        self._note(text)

    def _violation(self, text: str) -> None:
        self.violations.append(f"t={self.sim.now:.3f}s: {text}")

    def violation(self, text: str) -> None:
        """Record a violation a manager found (the store refused what it never should)."""
        self._violation(text)

    def on_soft_state(self, m: SimManager, role: Role, term: int) -> None:
        """A manager's role changed: check election safety and, for a new leader, completeness."""
        self._note(f"{m.name} {role.value} term={term} leader={m.node.leader}")
        if role != Role.LEADER:
            return
        self.stats["elections"] += 1
        other = self.leaders.setdefault(term, m.name)
        if other != m.name:
            self._violation(f"election safety: {other} and {m.name} both lead term {term}")
        log = m.node.log
        # Leader completeness covers entries committed in earlier terms; a leader of an older term
        # that wins late (while a newer leader exists) need not hold what the newer one committed.
        for index, (committed_in, eterm) in self.committed_in.items():
            if committed_in < term and index > log.offset and log.term(index) != eterm:
                self._violation(
                    f"leader completeness: {m.name} leads term {term} without entry {index}"
                    f" (term {eterm}) committed in term {committed_in}; it has term {log.term(index)} there"
                )
                break

    def on_apply(self, m: SimManager, entry: Entry) -> None:
        """A manager applies ``entry``: check it is the next index and the same everywhere."""
        if entry.type == EntryType.CONF_CHANGE:
            self.on_conf_change(ConfChange.decode(entry.data))
        if entry.index != m.applied + 1:
            self._violation(f"{m.name} applied {entry.index} right after {m.applied}: a gap")
        seen = self.applied_log.get(entry.index)
        mine = (entry.term, int(entry.type), entry.data)
        if seen is None:
            self.applied_log[entry.index] = mine
        elif seen != mine:
            self._violation(
                f"state machine safety: {m.name} applied {entry.index} with term {entry.term}, "
                f"another manager applied term {seen[0]} there"
            )

    def on_snapshot_installed(self, m: SimManager, meta: SnapshotMeta) -> None:
        """A manager installed a snapshot from its leader: check it agrees with what was applied."""
        self.stats["snapshots_installed"] += 1
        seen = self.applied_log.get(meta.index)
        if seen is not None and seen[0] != meta.term:
            self._violation(
                f"{m.name} installed a snapshot at {meta.index} of term {meta.term}, not {seen[0]}"
            )
        if meta.index < m.applied:
            self._violation(f"{m.name} installed a snapshot at {meta.index} behind its applied {m.applied}")

    def after_ready(self, m: SimManager) -> None:
        """After a manager handled its Readys: record commits by term, and finished failovers."""
        start = self.failover_from
        node = m.node
        if node.role == Role.LEADER and node.commit > self.committed_top:
            # The leader of this term has committed up to here: record in which term, and what.
            for index in range(max(self.committed_top + 1, node.log.first_index()), node.commit + 1):
                self.committed_in[index] = (node.term, node.log.entry(index).term)
            self.committed_top = node.commit
        if (
            start is not None
            and node.role == Role.LEADER
            and node.term > start[1]
            and node.log.term(node.commit) == node.term
        ):
            self.failovers.append(self.sim.now - start[0])
            self.failovers_by_crash[start[2]].append(self.sim.now - start[0])
            self.failover_from = None
            self._note(f"failover done by {m.name} in {self.sim.now - start[0]:.3f}s")

    # Clients --------------------------------------------------------------------------------
    def _client_loop(self, client: int) -> None:
        opts = self.options
        if self.sim.now >= opts.fault_s + opts.heal_s:
            return
        rng = self.rng
        key = f"k{rng.randrange(opts.keys) + 1}"
        roll = rng.random()
        value: Any
        if roll < 0.4:
            f, value = "read", None
        elif roll < 0.75:
            self.value_seq += 1
            f, value = "write", self.value_seq
        else:
            self.value_seq += 1
            known = self.written.get(key) or [self.value_seq - 1]
            f, value = "cas", [rng.choice(known[-3:]), self.value_seq]
        if f == "write":
            self.written.setdefault(key, []).append(value)
        elif f == "cas":
            self.written.setdefault(key, []).append(value[1])
        self.req_seq += 1
        process = self.processes[client]
        req = SimRequest(client, process, self.req_seq, f, key, value)
        req.manager = self.targets[rng.randrange(len(self.targets))]
        req.invoke = {"process": process, "type": "invoke", "f": f, "key": key, "value": value}
        self.history.append(req.invoke)
        timer = self.sim.call_later(opts.request_timeout_s, self._timeout, client, req)
        self.outstanding[client] = (req, timer)
        via_index = self.read_mode == "index"
        target = self.net.host(req.manager)
        target.call_later(opts.client_latency_s, self._deliver, req, via_index)

    def _deliver(self, req: SimRequest, via_index: bool) -> None:
        manager = self.managers.get(req.manager)
        if manager is not None and self.outstanding.get(req.client, (None,))[0] is req:
            manager.request(req, via_index)

    def respond(self, req: SimRequest, outcome: str, result: Any) -> None:
        """Send a manager's answer back to the client (it arrives after the client latency)."""
        self.sim.call_later(self.options.client_latency_s, self._complete, req, outcome, result)

    def _complete(self, req: SimRequest, outcome: str, result: Any) -> None:
        current = self.outstanding.get(req.client)
        if current is None or current[0] is not req:
            return  # answered after the client gave up
        current[1].cancel()
        del self.outstanding[req.client]
        if outcome == "refused":
            # Certainly not done. For a read or write that is a "fail"; a cas "fail" would claim
            # its compare did not match, so a refused cas is taken out of the history instead.
            if req.f == "cas":
                req.invoke["dropped"] = True
                self._next_op(req.client)
                return
            outcome = "fail"
        value = result if (req.f == "read" and outcome == "ok") else req.value
        self._record(req, outcome, value)
        if outcome == "ok" and req.f != "read" and self.healed_at is not None:
            self.ok_writes_after_heal += 1
        self._next_op(req.client)

    def _record(self, req: SimRequest, outcome: str, value: Any) -> None:
        event = {"process": req.process, "type": outcome, "f": req.f, "key": req.key, "value": value}
        self.history.append(event)

    def _timeout(self, client: int, req: SimRequest) -> None:
        current = self.outstanding.get(client)
        if current is None or current[0] is not req:
            return
        del self.outstanding[client]
        self._record(req, "info", req.value)
        # A process whose operation may still take effect never invokes again: use a new one.
        self.processes[client] += self.options.clients
        self._next_op(client)

    def _next_op(self, client: int) -> None:
        self.sim.call_later(self.rng.expovariate(1.0 / self.options.think_s), self._client_loop, client)

    # Faults ---------------------------------------------------------------------------------
    def _leader(self) -> str | None:
        best: tuple[int, str] | None = None
        for name, m in self.managers.items():
            if m is not None and m.node.role == Role.LEADER and (best is None or m.node.term > best[0]):
                best = (m.node.term, name)
        return best[1] if best else None

    def _crash(self, name: str) -> None:
        manager = self.managers.get(name)
        if manager is None:
            return
        kind = self.options.crashes
        if kind == "mixed":
            kind = "refusing" if self.crash_rng.random() < 0.5 else "silent"
        if name == self._leader() and self.failover_from is None:
            self.failover_from = (self.sim.now, manager.node.term, kind)
            self.stats["leader_crashes"] += 1
        self.net.crash(name)
        self.managers[name] = None
        self.down.add(name)
        self.paused.discard(name)
        self._note(f"{name} crashed {kind}")
        if kind == "refusing":
            self.refusing.add(name)
            self._close_connections(name)

    def _close_connections(self, name: str) -> None:
        """The kernel of a killed process closes its connections: every running manager that
        ``name`` can reach sees its connection break one link delay later."""
        link = self.net.default
        for peer in sorted(self.managers):
            manager = self.managers[peer]
            if manager is not None and self.net.reachable(name, peer):
                delay = link.latency + self.crash_rng.random() * link.jitter
                manager.host.call_later(delay, self._connection_broke, peer, name)

    def _connection_broke(self, peer: str, name: str) -> None:
        manager = self.managers.get(peer)
        if manager is not None:
            manager.connection_broke(name)

    def refuses(self, name: str) -> bool:
        """Whether a connection to ``name`` is refused now (it crashed that way and is still down)."""
        return name in self.refusing

    def probe_delay(self) -> float:
        """How long a connection attempt takes to be answered: one round trip."""
        link = self.net.default
        return 2 * link.latency + self.crash_rng.random() * link.jitter

    def _restart(self, name: str) -> None:
        if self.managers.get(name) is not None or name in self.removed:
            return
        host = self.net.restart(name)
        self.down.discard(name)
        self.refusing.discard(name)
        self.managers[name] = SimManager(self, name, host, self.storages[name], ())

    def _fault(self) -> None:
        opts = self.options
        now = self.sim.now
        if now >= opts.fault_s:
            return
        rng = self.fault_rng
        kind = rng.choice(opts.faults)
        self.stats["faults"] += 1
        names = list(self.targets)
        live = [n for n in names if n not in self.down]
        leader = self._leader()
        minority = (len(names) - 1) // 2
        victim = leader if (leader is not None and rng.random() < 0.5) else rng.choice(names)
        self._note(f"fault {kind} victim={victim}")
        duration = rng.uniform(0.3, 2.0)
        if kind == "crash" and victim in live and len(self.down | self.paused) < minority:
            self._crash(victim)
            self.sim.call_later(duration, self._restart, victim)
        elif kind == "restart" and victim in live:
            self._crash(victim)
            self.sim.call_later(rng.uniform(0.0, 0.1), self._restart, victim)
        elif kind == "pause" and victim in live and victim not in self.paused:
            self.net.pause(victim)
            self.paused.add(victim)
            self.sim.call_later(duration, self._resume, victim)
        elif kind == "partition" and not self.partitioned:
            self.partitioned = True
            shuffled = names[:]
            rng.shuffle(shuffled)
            cut = rng.randrange(1, len(names)) if len(names) > 1 else 1
            self.net.partition(shuffled[:cut], shuffled[cut:])
            self.sim.call_later(duration, self._heal_partition)
        elif kind == "membership":
            self._change_membership(rng)
        elif kind in ("loss", "duplicate", "reorder"):
            base = self.net.default
            amount = rng.uniform(0.05, 0.3)
            if kind == "loss":
                profile = LinkProfile(base.latency, base.jitter, loss=amount, duplicate=base.duplicate,
                                      reorder=base.reorder, reorder_delay=base.reorder_delay)
            elif kind == "duplicate":
                profile = LinkProfile(base.latency, base.jitter, loss=base.loss, duplicate=amount,
                                      reorder=base.reorder, reorder_delay=base.reorder_delay)
            else:
                profile = LinkProfile(base.latency, base.jitter, loss=base.loss, duplicate=base.duplicate,
                                      reorder=amount, reorder_delay=0.02)
            self.net.default = profile
            self.sim.call_later(duration, self._clear_link_fault, kind)
        self.sim.call_later(rng.uniform(*opts.fault_gap_s), self._fault)

    def _change_membership(self, rng: random.Random) -> None:
        """One membership step through the leader: promote a learner, remove a voter, or add one."""
        leader_name = self._leader()
        leader = self.managers.get(leader_name) if leader_name else None
        if leader is None:
            return
        conf = leader.node.conf
        if conf.learners:
            change = ConfChange(ConfChangeType.PROMOTE, conf.learners[0])
        elif len(conf.voters) >= self.options.managers and rng.random() < 0.5:
            change = ConfChange(ConfChangeType.REMOVE, rng.choice(conf.voters))
        else:
            name = f"m{len(self.storages) + 1}"
            self.storages[name] = SimStorage()
            self.managers[name] = SimManager(self, name, self.net.add_host(name), self.storages[name], ())
            self.targets.append(name)
            change = ConfChange(ConfChangeType.ADD_LEARNER, name)
        try:
            leader.node.propose_conf_change(change)
        except (NotLeader, ValueError) as exc:
            self._note(f"membership {change.type.name} {change.node_id} refused: {exc}")
            if change.type == ConfChangeType.ADD_LEARNER:
                self.removed.add(change.node_id)  # it never joined: take it away again
                self._retire(change.node_id)
            return
        self._note(f"membership {change.type.name} {change.node_id} proposed by {leader_name}")
        leader.drain()

    def on_conf_change(self, change: ConfChange) -> None:
        """A membership change was applied somewhere; a removed manager is shut down."""
        if change.type == ConfChangeType.REMOVE and change.node_id not in self.removed:
            # A removed manager leaves, as in Swarm: shut it down for good once the change commits.
            self.removed.add(change.node_id)
            self.sim.call_later(0.05, self._retire, change.node_id)

    def _retire(self, name: str) -> None:
        if name in self.targets:
            self.targets.remove(name)
        if self.managers.get(name) is not None:
            self.net.crash(name)
            self.managers[name] = None
        self.down.discard(name)
        self.paused.discard(name)
        self._note(f"retired {name}")

    def _resume(self, name: str) -> None:
        if name in self.paused:
            self.paused.discard(name)
            self.net.resume(name)

    def _heal_partition(self) -> None:
        self.partitioned = False
        self.net.heal()

    def _clear_link_fault(self, kind: str) -> None:
        base = self.net.default
        self.net.default = LinkProfile(
            base.latency,
            base.jitter,
            loss=0.0 if kind == "loss" else base.loss,
            duplicate=0.0 if kind == "duplicate" else base.duplicate,
            reorder=0.0 if kind == "reorder" else base.reorder,
            reorder_delay=base.reorder_delay,
        )

    def _heal_everything(self) -> None:
        self.partitioned = False
        self.net.heal()
        self.net.default = LinkProfile(latency=0.0005, jitter=0.001)
        for name in sorted(self.paused):
            self._resume(name)
        for name in sorted(self.down):
            self._restart(name)
        self.healed_at = self.sim.now
        self._note("heal everything")

    # Checks -----------------------------------------------------------------------------------
    def _check_logs(self) -> None:
        """Log matching: any two logs agreeing on (index, term) agree on everything before it."""
        logs = {name: {e.index: e for e in st.entries} for name, st in self.storages.items()}
        names = sorted(logs)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                la, lb = logs[a], logs[b]
                common = sorted(set(la) & set(lb), reverse=True)
                matched = False
                for index in common:
                    ea, eb = la[index], lb[index]
                    if not matched and ea.term == eb.term:
                        matched = True
                    if matched and ea != eb:
                        self._violation(f"log matching: {a} and {b} differ at {index} below a matching entry")
                        return

    def run(self, check: Callable[[list[dict[str, Any]]], tuple[bool, str]] | None = None) -> RunResult:
        """Run the whole scenario; ``check`` judges the history (True, "") when linearizable."""
        opts = self.options
        if opts.faults:
            self.sim.call_later(self.fault_rng.uniform(0.5, 1.5), self._fault)
        for client in range(opts.clients):
            self.sim.call_later(0.2 + self.rng.random() * 0.1, self._client_loop, client)
        end = opts.fault_s + opts.heal_s + opts.request_timeout_s + 0.1
        # A run that fires far more events than a healthy one is stuck in a message storm: stop it
        # and say so, rather than hang the campaign.
        budget = int(_EVENTS_PER_SECOND * end * max(1, opts.managers // 3))

        def exceeded() -> bool:
            return self.sim.events_fired > budget

        checkpoint = 2.0
        while checkpoint < opts.fault_s and not exceeded():
            self.sim.run_until(checkpoint, exceeded)
            self._check_logs()
            checkpoint += 2.0
        if not exceeded():
            self.sim.run_until(opts.fault_s, exceeded)
            self._heal_everything()
            self.sim.run_until(end, exceeded)
        if exceeded():
            self._violation(f"livelock: more than {budget} events by t={self.sim.now:.3f}s; run stopped")
        else:
            self._check_logs()
            self._final_checks()
        if check is not None:
            ok, explanation = check([e for e in self.history if "dropped" not in e])
            if not ok:
                self.violations.append(f"linearizability ({self.read_mode} reads): {explanation}")
        self.history = [e for e in self.history if "dropped" not in e]
        ops = sum(1 for e in self.history if e["type"] == "invoke")
        return RunResult(
            self.seed, self.history, self.violations, self.failovers, ops, self.trace, self.read_mode,
            self.stats, self.failovers_by_crash,
        )

    def _final_checks(self) -> None:
        live = {name: m for name, m in self.managers.items() if m is not None}
        leaders = [(m.node.term, name) for name, m in live.items() if m.node.role == Role.LEADER]
        if not leaders:
            self._violation("liveness: no leader after every fault was healed")
            return
        leader = max(leaders)[1]
        conf = live[leader].node.conf
        # Members as the leader has them: a manager whose joining never committed is not one.
        members = sorted(set(conf.voters) | set(conf.learners))
        missing = [name for name in members if name not in live]
        if missing:
            self._violation(f"liveness: members {missing} are not running after healing")
        followers = [name for name in members if name in live and live[name].node.leader == leader]
        if len(followers) < len(members):
            self._violation(f"liveness: after healing, only {followers} of {members} follow {leader}")
        if self.ok_writes_after_heal == 0:
            self._violation("liveness: no write succeeded after every fault was healed")
        applied = {name: live[name].applied for name in members if name in live}
        if len(set(applied.values())) > 1:
            self._violation(f"liveness: managers did not converge after healing: applied {applied}")
            return
        # Same entries, same state: every store must snapshot to the same bytes.
        snapshots = {name: live[name].machine.snapshot() for name in members if name in live}
        if len(set(snapshots.values())) > 1:
            first = min(snapshots)
            differ = sorted(name for name, data in snapshots.items() if data != snapshots[first])
            self._violation(f"state machine safety: the stores of {differ} differ from {first}'s")
