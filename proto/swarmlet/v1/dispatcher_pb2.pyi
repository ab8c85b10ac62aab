from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class JoinRequest(_message.Message):
    __slots__ = ("node_id", "hostname", "role", "token", "addr", "cluster_addr", "engine_version")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ADDR_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    hostname: str
    role: str
    token: str
    addr: str
    cluster_addr: str
    engine_version: str
    def __init__(self, node_id: _Optional[str] = ..., hostname: _Optional[str] = ..., role: _Optional[str] = ..., token: _Optional[str] = ..., addr: _Optional[str] = ..., cluster_addr: _Optional[str] = ..., engine_version: _Optional[str] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("cluster_id", "role", "managers", "leader_addr")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    role: str
    managers: _containers.RepeatedScalarFieldContainer[str]
    leader_addr: str
    def __init__(self, cluster_id: _Optional[str] = ..., role: _Optional[str] = ..., managers: _Optional[_Iterable[str]] = ..., leader_addr: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("node_id", "hostname", "addr", "cluster_addr", "engine_version", "sequence")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ADDR_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    hostname: str
    addr: str
    cluster_addr: str
    engine_version: str
    sequence: int
    def __init__(self, node_id: _Optional[str] = ..., hostname: _Optional[str] = ..., addr: _Optional[str] = ..., cluster_addr: _Optional[str] = ..., engine_version: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class SessionMessage(_message.Message):
    __slots__ = ("heartbeat_period_ms", "managers", "leader_addr", "error", "role")
    HEARTBEAT_PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    heartbeat_period_ms: int
    managers: _containers.RepeatedScalarFieldContainer[str]
    leader_addr: str
    error: str
    role: str
    def __init__(self, heartbeat_period_ms: _Optional[int] = ..., managers: _Optional[_Iterable[str]] = ..., leader_addr: _Optional[str] = ..., error: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...
