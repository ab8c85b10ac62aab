"""The replicated store: a deterministic state machine fed by committed Raft entries.

Every manager applies the same entries in the same order and reaches byte-identical state
(compare ``snapshot()``s). So inside ``apply``: no clock, no randomness, no iteration over
anything unordered; the proposer's timestamp and IDs come in the batch and the entry's index
becomes Version.Index of what it writes. A batch is all or nothing: the first failing operation
rejects it whole, and a rejected batch changes nothing (but its index still counts as applied,
since every manager rejects it the same way).

Watches are told after ``apply`` returns, not inside it: ``apply`` only queues each watch's
changes, and the caller (the shell that applies committed entries) then calls
``notify_watches()``, which runs the ``on_change`` callbacks. A callback that raises is handed to
``on_watch_error`` and counted in ``watch_errors``; it never turns a committed entry into an error.

Rules of a batch: each object is written at most once in it (its version is the entry's index,
which a second write in the same batch could not have read); Update and a versioned Delete must
carry the object's current version, else "update out of sequence".
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from manager.state.store.commands import (
    Create,
    Delete,
    Op,
    Update,
    canonical_json,
    check_ops,
    decode_batch,
    loads_strict,
)
from manager.state.store.errors import (
    Ambiguous,
    InUse,
    InvalidObject,
    NameConflict,
    NotFound,
    StoreError,
    UpdateOutOfSequence,
)
from manager.state.store.objects import KINDS, NAMED_KINDS, TASK_STATES, StoredObject, freeze
from manager.state.store.validate import check_create, check_update, name_conflict_message
from manager.state.store.watch import Change, Watch

__all__ = ["ApplyResult", "Store"]

SNAPSHOT_VERSION = 1
_TASK_INDEXES = ("ServiceID", "NodeID")  # task fields (in ``extra``) that find() can select by
_CHECK_NOW = "1970-01-01T00:00:00Z"  # check() writes nothing, so any timestamp will do
_RUNNING = TASK_STATES.index("running")


@dataclass(frozen=True)
class ApplyResult:
    """What applying one entry did: ``ok`` with its changes, or the error that rejected it whole."""

    ok: bool
    error: StoreError | None = None
    changes: list[Change] = field(default_factory=list)


class _Txn:
    """The staged writes of one batch over the committed state; nothing is visible until commit."""

    def __init__(self, store: Store, index: int, now: str) -> None:
        self.store = store
        self.index = index
        self.now = now
        self.staged: dict[tuple[str, str], StoredObject | None] = {}
        self.names: dict[tuple[str, str], str | None] = {}  # (kind, lower name) -> id, None: freed
        self.changes: list[Change] = []

    def get(self, kind: str, id_: str) -> StoredObject | None:
        key = (kind, id_)
        if key in self.staged:
            return self.staged[key]
        return self.store._objects[kind].get(id_)

    def objects(self, kind: str) -> Iterator[StoredObject]:
        """Every object of ``kind`` as this transaction sees it, in ID order."""
        committed = self.store._objects[kind]
        ids = set(committed) | {i for (k, i) in self.staged if k == kind}
        for id_ in sorted(ids):
            obj = self.get(kind, id_)
            if obj is not None:
                yield obj

    def name_owner(self, kind: str, name: str) -> str | None:
        key = (kind, name.lower())
        if key in self.names:
            return self.names[key]
        return self.store._names[kind].get(key[1])

    def run(self, op: Op) -> None:
        key = (op.kind, op.id)
        if key in self.staged:
            raise InvalidObject(f"{op.kind} {op.id} is written twice in one transaction")
        if isinstance(op, Create):
            self._create(op)
        elif isinstance(op, Update):
            self._update(op)
        else:
            self._delete(op)

    def _create(self, op: Create) -> None:
        if self.get(op.kind, op.id) is not None:
            raise NameConflict(f"{op.kind} {op.id} already exists")
        spec, status, extra = freeze(op.spec), freeze(op.status or {}), freeze(op.extra or {})
        check_create(op.kind, spec, status, extra)
        if op.kind == "service":
            self._check_refs(spec)
        obj = StoredObject(op.kind, op.id, self.index, self.now, self.now, spec, status, extra)
        if op.kind in NAMED_KINDS:
            if self.name_owner(op.kind, obj.name) is not None:
                raise NameConflict(name_conflict_message(op.kind, obj.name))
            self.names[(op.kind, obj.name.lower())] = op.id
        self.staged[(op.kind, op.id)] = obj
        self.changes.append(Change(self.index, "create", op.kind, obj))

    def _update(self, op: Update) -> None:
        current = self.get(op.kind, op.id)
        if current is None:
            raise NotFound(f"{op.kind} {op.id} not found")
        if op.version != current.version:
            raise UpdateOutOfSequence()
        spec = None if op.spec is None else freeze(op.spec)
        status = None if op.status is None else freeze(op.status)
        extra = None if op.extra is None else freeze(op.extra)
        new_spec = check_update(current, spec, status, extra)
        if op.kind == "service" and spec is not None:
            self._check_refs(spec)
        obj = StoredObject(
            op.kind,
            op.id,
            self.index,
            current.created_at,
            self.now,
            current.spec if new_spec is None else freeze(new_spec),
            current.status if status is None else status,
            current.extra if extra is None else extra,
        )
        # Names of named kinds cannot change (check_update refuses renames), so no index update.
        self.staged[(op.kind, op.id)] = obj
        self.changes.append(Change(self.index, "update", op.kind, obj))

    def _delete(self, op: Delete) -> None:
        current = self.get(op.kind, op.id)
        if current is None:
            raise NotFound(f"{op.kind} {op.id} not found")
        if op.version is not None and op.version != current.version:
            raise UpdateOutOfSequence()
        self._check_unused(current)
        if op.kind in NAMED_KINDS:
            self.names[(op.kind, current.name.lower())] = None
        self.staged[(op.kind, op.id)] = None
        self.changes.append(Change(self.index, "remove", op.kind, current))

    def _check_refs(self, spec: Any) -> None:
        """A service's secrets and configs exist under the names it gives (swarmkit's words)."""
        for kind in ("secret", "config"):
            key = "Secret" if kind == "secret" else "Config"
            missing = []
            for ref in _refs(spec, kind):
                found = self.get(kind, str(ref.get(f"{key}ID")))
                if found is None or found.name != ref.get(f"{key}Name"):
                    missing.append(str(ref.get(f"{key}Name") or ""))
            if missing:
                noun = kind if len(missing) == 1 else kind + "s"
                raise InvalidObject(f"{noun} not found: {', '.join(missing)}")

    def _check_unused(self, obj: StoredObject) -> None:
        """Refuse to remove a secret, config or network that something still uses, as Swarm does."""
        if obj.kind in ("secret", "config"):
            users = [s.name for s in self.objects("service") if obj.id in _payload_refs(s, obj.kind)]
            if users:
                noun = "service" if len(users) == 1 else "services"
                raise InvalidObject(
                    f"{obj.kind} '{obj.name}' is in use by the following {noun}: {', '.join(users)}"
                )
        elif obj.kind == "network":
            for service in self.objects("service"):
                if _network_refs(service.spec.get("TaskTemplate")) & {obj.id, obj.name}:
                    raise InUse(f"network {obj.id} is in use by service {service.id}")
            for task in self.objects("task"):
                refs = _network_refs(task.spec) | _attachment_refs(task.extra)
                if obj.id in refs and _task_alive(task):
                    raise InUse(f"network {obj.id} is in use by task {task.id}")


def _refs(spec: Any, kind: str) -> list[dict[str, Any]]:
    """The secret (or config) references of a service's Spec, as given."""
    template = spec.get("TaskTemplate") if isinstance(spec, dict) else None
    container = template.get("ContainerSpec") if isinstance(template, dict) else None
    refs = (
        container.get("Secrets" if kind == "secret" else "Configs") if isinstance(container, dict) else None
    )
    return [r for r in _list(refs) if isinstance(r, dict)]


def _payload_refs(service: StoredObject, kind: str) -> set[str]:
    """IDs of the secrets (or configs) a service's tasks mount."""
    key = "SecretID" if kind == "secret" else "ConfigID"
    return {r[key] for r in _refs(service.spec, kind) if isinstance(r.get(key), str)}


def _list(value: Any) -> list[Any]:
    """``value`` if it is a JSON array, else [] (specs are only loosely checked)."""
    return value if isinstance(value, list) else []


def _network_refs(spec: Any) -> set[str]:
    """Network IDs (or names, before the API layer resolved them) in a Networks list of a spec."""
    if not isinstance(spec, dict):
        return set()
    nets = _list(spec.get("Networks"))
    return {n["Target"] for n in nets if isinstance(n, dict) and isinstance(n.get("Target"), str)}


def _attachment_refs(extra: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for att in _list(extra.get("NetworksAttachments")):
        net = att.get("Network") if isinstance(att, dict) else None
        if isinstance(net, dict) and isinstance(net.get("ID"), str):
            out.add(net["ID"])
    return out


def _task_alive(task: StoredObject) -> bool:
    """A task still holds its network while it is, or is meant to be, at most running (swarmkit's test)."""

    def position(state: Any) -> int:
        return TASK_STATES.index(state) if state in TASK_STATES else 0

    return (
        position(task.extra.get("DesiredState")) <= _RUNNING
        and position(task.status.get("State")) <= _RUNNING
    )


def _by_id(obj: StoredObject) -> str:
    return obj.id


class Store:
    """The state machine: objects by kind and ID, the applied index, and the open watches."""

    def __init__(
        self,
        *,
        history: int = 10_000,
        on_watch_error: Callable[[Watch, Exception], None] | None = None,
    ) -> None:
        """``history``: how many recent changes to keep for watches that start in the past.

        ``on_watch_error(watch, exc)`` hears of every ``on_change`` callback that raised (the
        shell logs it and counts it in a metric); it must not raise itself.
        """
        self.applied_index = 0
        self.on_watch_error = on_watch_error
        self.watch_errors = 0  # on_change callbacks that raised, since this store was made
        self._to_notify: list[Watch] = []  # watches with changes queued since notify_watches()
        self._objects: dict[str, dict[str, StoredObject]] = {k: {} for k in KINDS}
        self._names: dict[str, dict[str, str]] = {k: {} for k in KINDS}  # lower name -> id, named kinds
        self._watches: list[Watch] = []
        # Tasks by ServiceID and by NodeID (swarmkit's ByServiceID/ByNodeID): orchestrators and
        # dispatcher sessions pick a few tasks out of many, often.
        self._task_index: dict[str, dict[str, set[str]]] = {f: {} for f in _TASK_INDEXES}
        self._history: deque[Change] = deque(maxlen=max(history, 0))
        self._history_floor = 1  # every change with index >= this is in _history (or still to come)

    # ---- writes (committed entries only) ------------------------------------------------------

    def apply(self, index: int, data: bytes) -> ApplyResult:
        """Apply the batch committed at ``index``: all of it, or (ok=False, error) and nothing.

        Empty ``data`` (a new leader's no-op entry) applies nothing. An index at or below
        ``applied_index`` is refused without effect (a replay after restart); gaps are allowed
        (entries the store never sees, such as membership changes).
        """
        if index <= self.applied_index:
            error = InvalidObject(f"entry {index} is at or below the applied index {self.applied_index}")
            return ApplyResult(False, error)
        self.applied_index = index
        if not data:
            return ApplyResult(True)
        try:
            ops, now = decode_batch(data)
            txn = _Txn(self, index, now)
            for op in ops:
                txn.run(op)
        except StoreError as exc:
            return ApplyResult(False, exc)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as exc:
            # A shape no rule foresaw: every manager runs the same code and fails the same way,
            # so rejecting the batch keeps them in step where raising would stop them all.
            return ApplyResult(False, InvalidObject(f"invalid transaction: {type(exc).__name__}: {exc}"))
        self._commit(txn)
        self._publish(txn.changes)
        return ApplyResult(True, None, txn.changes)

    def check(self, ops: Sequence[Op]) -> None:
        """Raise the StoreError ``apply`` would give these operations on the current state.

        For the proposer, before it proposes: a batch that passes may still fail at apply if
        another write commits first (then with "update out of sequence" or a name conflict).
        """
        try:
            check_ops(ops)
            txn = _Txn(self, self.applied_index + 1, _CHECK_NOW)
            for op in ops:
                txn.run(op)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as exc:
            raise InvalidObject(f"invalid transaction: {type(exc).__name__}: {exc}") from None

    def _commit(self, txn: _Txn) -> None:
        for (kind, id_), obj in txn.staged.items():
            if kind == "task":
                self._index_task(self._objects[kind].get(id_), remove=True)
                self._index_task(obj, remove=False)
            if obj is None:
                del self._objects[kind][id_]
            else:
                self._objects[kind][id_] = obj
        for (kind, lname), owner in txn.names.items():
            if owner is None:
                self._names[kind].pop(lname, None)
            else:
                self._names[kind][lname] = owner

    def _index_task(self, task: StoredObject | None, *, remove: bool) -> None:
        if task is None:
            return
        for field_name, index in self._task_index.items():
            value = task.extra.get(field_name)
            if not isinstance(value, str) or not value:
                continue
            if remove:
                ids = index.get(value)
                if ids is not None:
                    ids.discard(task.id)
                    if not ids:
                        del index[value]
            else:
                index.setdefault(value, set()).add(task.id)

    def _publish(self, changes: list[Change]) -> None:
        if not changes:
            return
        kept = self._history.maxlen or 0
        dropped = len(self._history) + len(changes) - kept
        if dropped > 0:
            # The oldest changes fall out; history stays complete only after the last one dropped.
            held = len(self._history)
            last = self._history[dropped - 1] if dropped <= held else changes[dropped - 1 - held]
            self._history_floor = max(self._history_floor, last.index + 1)
        self._history.extend(changes)
        self._queue_notifications(changes)

    def _queue_notifications(self, changes: Sequence[Change]) -> None:
        for w in list(self._watches):
            if w._deliver(changes) and w not in self._to_notify:
                self._to_notify.append(w)

    def notify_watches(self) -> int:
        """Tell every watch that has received changes since the last call; returns how many failed.

        Called by whoever applies entries, once ``apply`` (or ``restore``) has returned, so every
        callback sees the whole batch committed and may read the store or poll. A callback that
        raises does not stop the others: it goes to ``on_watch_error`` and ``watch_errors``.
        """
        woken, self._to_notify = self._to_notify, []
        failed = 0
        for w in woken:
            if w.closed:
                continue
            try:
                w._notify()
            except Exception as exc:  # a broken watcher must not fail the write or starve the others
                failed += 1
                self.watch_errors += 1
                if self.on_watch_error is not None:
                    with contextlib.suppress(Exception):  # the hook is the shell's logger: nothing to tell
                        self.on_watch_error(w, exc)
        return failed

    # ---- reads ----------------------------------------------------------------------------------

    def _table(self, kind: str) -> dict[str, StoredObject]:
        table = self._objects.get(kind)
        if table is None:
            raise InvalidObject(f"unknown object kind {kind!r}")
        return table

    def get(self, kind: str, id: str) -> StoredObject:
        """The object with exactly this ID; NotFound ("service x not found") otherwise."""
        obj = self._table(kind).get(id)
        if obj is None:
            raise NotFound(f"{kind} {id} not found")
        return obj

    def find(
        self,
        kind: str,
        *,
        name: str | None = None,
        filters: Callable[[StoredObject], bool] | None = None,
        service_id: str | None = None,
        node_id: str | None = None,
    ) -> list[StoredObject]:
        """Objects of ``kind``, sorted by ID, that match every criterion given.

        ``name`` matches exactly but case-insensitively; ``service_id`` and ``node_id`` select
        tasks by their ServiceID / NodeID through an index (for other kinds they match nothing).
        """
        table = self._table(kind)
        if service_id is not None or node_id is not None:
            if kind != "task":
                return []
            picked: set[str] | None = None
            for field_name, value in (("ServiceID", service_id), ("NodeID", node_id)):
                if value is not None:
                    ids = self._task_index[field_name].get(value, set())
                    picked = ids if picked is None else picked & ids
            candidates = [table[i] for i in picked or ()]
            if name is not None:
                candidates = [o for o in candidates if o.name.lower() == name.lower()]
        elif name is not None and kind in NAMED_KINDS:
            owner = self._names[kind].get(name.lower())
            candidates = [table[owner]] if owner is not None else []
        else:
            candidates = list(table.values())
            if name is not None:
                lname = name.lower()
                candidates = [o for o in candidates if o.name.lower() == lname]
        if filters is not None:
            candidates = [o for o in candidates if filters(o)]
        # Filter first, sort what is left: most finds pick a few tasks out of many.
        candidates.sort(key=_by_id)
        return candidates

    def lookup(self, kind: str, id_or_name_or_prefix: str) -> StoredObject:
        """Docker's lookup: a full ID, else an exact name, else a unique ID prefix.

        NotFound "service x not found"; Ambiguous "service x is ambiguous (2 matches found)".
        """
        key = id_or_name_or_prefix
        table = self._table(kind)
        if key in table:
            return table[key]
        if not key:
            raise NotFound(f"{kind} {key} not found")
        matches = self.find(kind, name=key)
        if not matches:
            matches = [table[i] for i in sorted(table) if i.startswith(key)]
        if not matches:
            raise NotFound(f"{kind} {key} not found")
        if len(matches) > 1:
            raise Ambiguous(f"{kind} {key} is ambiguous ({len(matches)} matches found)")
        return matches[0]

    def count(self, kind: str) -> int:
        """How many objects of ``kind`` there are."""
        return len(self._table(kind))

    # ---- watches --------------------------------------------------------------------------------

    def watch(
        self,
        kinds: Collection[str] | None = None,
        *,
        from_index: int | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> Watch:
        """Subscribe to committed changes of ``kinds`` (None: all), in commit order.

        ``from_index``: also replay kept changes with index >= from_index (InvalidObject if
        they are no longer kept); None: only changes committed from now on. ``on_change`` is
        called (with no arguments) by ``notify_watches()``, after ``apply`` has returned,
        whenever changes were queued for this watch.
        """
        wanted: frozenset[str] | None = None
        if kinds is not None:
            wanted = frozenset(kinds)
            unknown = sorted(wanted - set(KINDS))
            if unknown:
                raise InvalidObject(f"unknown object kind {unknown[0]!r}")
        w = Watch(wanted, on_change, self._unsubscribe, from_index or 0)
        if from_index is not None:
            if from_index < self._history_floor and from_index <= self.applied_index:
                raise InvalidObject(
                    f"cannot watch from index {from_index}: "
                    f"changes before index {self._history_floor} are no longer kept"
                )
            w._deliver(self._history)
        self._watches.append(w)
        return w

    def _unsubscribe(self, w: Watch) -> None:
        if w in self._watches:
            self._watches.remove(w)

    # ---- snapshots ------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as canonical JSON: byte-identical on managers that applied the same log."""
        records = [self._objects[k][i].to_record() for k in KINDS for i in sorted(self._objects[k])]
        return canonical_json({"v": SNAPSHOT_VERSION, "index": self.applied_index, "objects": records})

    def restore(self, data: bytes, index: int) -> None:
        """Replace the state with a snapshot taken at or before ``index``; InvalidObject, unchanged, if bad.

        Open watches receive the difference (creates, updates, removes) at ``index``, so an
        orchestrator that was watching stays in step without re-reading everything; as after
        ``apply``, their callbacks run at the next ``notify_watches()``.
        """
        objects, names = _parse_snapshot(data, index)
        changes: list[Change] = []
        for kind in KINDS:
            old, new = self._objects[kind], objects[kind]
            for id_ in sorted(set(old) | set(new)):
                before, after = old.get(id_), new.get(id_)
                if after is None and before is not None:
                    changes.append(Change(index, "remove", kind, before))
                elif before is None and after is not None:
                    changes.append(Change(index, "create", kind, after))
                elif before is not None and after is not None and before != after:
                    changes.append(Change(index, "update", kind, after))
        self._objects, self._names = objects, names
        self._task_index = {f: {} for f in _TASK_INDEXES}
        for task in objects["task"].values():
            self._index_task(task, remove=False)
        self.applied_index = index
        self._history.clear()
        self._history_floor = index + 1
        self._queue_notifications(changes)


def _parse_snapshot(
    data: bytes, index: int
) -> tuple[dict[str, dict[str, StoredObject]], dict[str, dict[str, str]]]:
    raw = loads_strict(data, frozen=True)
    if (
        not isinstance(raw, dict)
        or raw.get("v") != SNAPSHOT_VERSION
        or not isinstance(raw.get("objects"), list)
    ):
        raise InvalidObject("malformed snapshot: not a version 1 store snapshot")
    taken = raw.get("index")
    if isinstance(taken, bool) or not isinstance(taken, int) or taken > index:
        raise InvalidObject(f"malformed snapshot: taken at index {taken!r}, restored at {index}")
    objects: dict[str, dict[str, StoredObject]] = {k: {} for k in KINDS}
    names: dict[str, dict[str, str]] = {k: {} for k in KINDS}
    for rec in raw["objects"]:
        obj = _record_to_object(rec, taken)
        if obj.id in objects[obj.kind]:
            raise InvalidObject(f"malformed snapshot: {obj.kind} {obj.id} appears twice")
        objects[obj.kind][obj.id] = obj
        if obj.kind in NAMED_KINDS:
            lname = obj.name.lower()
            if lname in names[obj.kind]:
                raise InvalidObject(f"malformed snapshot: two {obj.kind}s named {obj.name}")
            names[obj.kind][lname] = obj.id
    return objects, names


def _record_to_object(rec: Any, taken: int) -> StoredObject:
    if not isinstance(rec, dict):
        raise InvalidObject("malformed snapshot: an object record is not a JSON object")
    kind, id_, version = rec.get("Kind"), rec.get("ID"), rec.get("Version")
    if kind not in KINDS or not isinstance(id_, str) or not id_:
        raise InvalidObject(f"malformed snapshot: bad kind or ID in {str(rec)[:80]}")
    if isinstance(version, bool) or not isinstance(version, int) or not 0 < version <= taken:
        raise InvalidObject(f"malformed snapshot: {kind} {id_} has version {version!r}")
    parts = [rec.get(k) for k in ("CreatedAt", "UpdatedAt", "Spec", "Status", "Extra")]
    if not (
        isinstance(parts[0], str)
        and isinstance(parts[1], str)
        and all(isinstance(p, dict) for p in parts[2:])
    ):
        raise InvalidObject(f"malformed snapshot: {kind} {id_} is incomplete")
    return StoredObject(
        kind, id_, version, parts[0], parts[1], freeze(parts[2]), freeze(parts[3]), freeze(parts[4])
    )
