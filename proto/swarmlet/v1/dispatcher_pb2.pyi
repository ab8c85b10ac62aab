from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JoinRequest(_message.Message):
    __slots__ = ("node_id", "hostname", "role", "token", "addr", "cluster_addr", "engine_version", "nano_cpus", "memory_bytes", "os", "architecture", "csr")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ADDR_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    NANO_CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    CSR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    hostname: str
    role: str
    token: str
    addr: str
    cluster_addr: str
    engine_version: str
    nano_cpus: int
    memory_bytes: int
    os: str
    architecture: str
    csr: bytes
    def __init__(self, node_id: _Optional[str] = ..., hostname: _Optional[str] = ..., role: _Optional[str] = ..., token: _Optional[str] = ..., addr: _Optional[str] = ..., cluster_addr: _Optional[str] = ..., engine_version: _Optional[str] = ..., nano_cpus: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., os: _Optional[str] = ..., architecture: _Optional[str] = ..., csr: _Optional[bytes] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("cluster_id", "role", "managers", "leader_addr", "certificate", "root_ca", "node_id")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    ROOT_CA_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    role: str
    managers: _containers.RepeatedScalarFieldContainer[str]
    leader_addr: str
    certificate: bytes
    root_ca: bytes
    node_id: str
    def __init__(self, cluster_id: _Optional[str] = ..., role: _Optional[str] = ..., managers: _Optional[_Iterable[str]] = ..., leader_addr: _Optional[str] = ..., certificate: _Optional[bytes] = ..., root_ca: _Optional[bytes] = ..., node_id: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("heartbeat_period_ms", "managers", "leader_addr", "error", "role", "ingress")
    HEARTBEAT_PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    INGRESS_FIELD_NUMBER: _ClassVar[int]
    heartbeat_period_ms: int
    managers: _containers.RepeatedScalarFieldContainer[str]
    leader_addr: str
    error: str
    role: str
    ingress: bytes
    def __init__(self, heartbeat_period_ms: _Optional[int] = ..., managers: _Optional[_Iterable[str]] = ..., leader_addr: _Optional[str] = ..., error: _Optional[str] = ..., role: _Optional[str] = ..., ingress: _Optional[bytes] = ...) -> None: ...

class AssignmentsRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class AssignmentChange(_message.Message):
    __slots__ = ("action", "kind", "id", "object")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UPDATE: _ClassVar[AssignmentChange.Action]
        REMOVE: _ClassVar[AssignmentChange.Action]
    UPDATE: AssignmentChange.Action
    REMOVE: AssignmentChange.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    action: AssignmentChange.Action
    kind: str
    id: str
    object: bytes
    def __init__(self, action: _Optional[_Union[AssignmentChange.Action, str]] = ..., kind: _Optional[str] = ..., id: _Optional[str] = ..., object: _Optional[bytes] = ...) -> None: ...

class AssignmentsMessage(_message.Message):
    __slots__ = ("type", "store_index", "changes", "leader_addr", "error")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        COMPLETE: _ClassVar[AssignmentsMessage.Type]
        INCREMENTAL: _ClassVar[AssignmentsMessage.Type]
    COMPLETE: AssignmentsMessage.Type
    INCREMENTAL: AssignmentsMessage.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STORE_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    type: AssignmentsMessage.Type
    store_index: int
    changes: _containers.RepeatedCompositeFieldContainer[AssignmentChange]
    leader_addr: str
    error: str
    def __init__(self, type: _Optional[_Union[AssignmentsMessage.Type, str]] = ..., store_index: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[AssignmentChange, _Mapping]]] = ..., leader_addr: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class TaskStatusUpdate(_message.Message):
    __slots__ = ("task_id", "status")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    status: bytes
    def __init__(self, task_id: _Optional[str] = ..., status: _Optional[bytes] = ...) -> None: ...

class UpdateTaskStatusRequest(_message.Message):
    __slots__ = ("node_id", "updates")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    updates: _containers.RepeatedCompositeFieldContainer[TaskStatusUpdate]
    def __init__(self, node_id: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[TaskStatusUpdate, _Mapping]]] = ...) -> None: ...

class UpdateTaskStatusResponse(_message.Message):
    __slots__ = ("leader_addr", "written", "ignored")
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    leader_addr: str
    written: int
    ignored: int
    def __init__(self, leader_addr: _Optional[str] = ..., written: _Optional[int] = ..., ignored: _Optional[int] = ...) -> None: ...

class NodeTasksRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class NodeTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, tasks: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetRootCACertificateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetRootCACertificateResponse(_message.Message):
    __slots__ = ("certificate",)
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    certificate: bytes
    def __init__(self, certificate: _Optional[bytes] = ...) -> None: ...

class IssueOperatorCertificateRequest(_message.Message):
    __slots__ = ("token", "csr")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr: bytes
    def __init__(self, token: _Optional[str] = ..., csr: _Optional[bytes] = ...) -> None: ...

class IssueOperatorCertificateResponse(_message.Message):
    __slots__ = ("certificate", "root_ca")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    ROOT_CA_FIELD_NUMBER: _ClassVar[int]
    certificate: bytes
    root_ca: bytes
    def __init__(self, certificate: _Optional[bytes] = ..., root_ca: _Optional[bytes] = ...) -> None: ...

class RenewNodeCertificateRequest(_message.Message):
    __slots__ = ("csr",)
    CSR_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    def __init__(self, csr: _Optional[bytes] = ...) -> None: ...

class RenewNodeCertificateResponse(_message.Message):
    __slots__ = ("certificate", "root_ca", "leader_addr")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    ROOT_CA_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    certificate: bytes
    root_ca: bytes
    leader_addr: str
    def __init__(self, certificate: _Optional[bytes] = ..., root_ca: _Optional[bytes] = ..., leader_addr: _Optional[str] = ...) -> None: ...
