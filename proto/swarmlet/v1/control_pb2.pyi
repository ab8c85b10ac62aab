from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("id", "hostname", "role", "status", "availability", "manager_status", "engine_version", "addr", "is_self", "labels", "version", "status_message")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    MANAGER_STATUS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    IS_SELF_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    hostname: str
    role: str
    status: str
    availability: str
    manager_status: str
    engine_version: str
    addr: str
    is_self: bool
    labels: _containers.ScalarMap[str, str]
    version: int
    status_message: str
    def __init__(self, id: _Optional[str] = ..., hostname: _Optional[str] = ..., role: _Optional[str] = ..., status: _Optional[str] = ..., availability: _Optional[str] = ..., manager_status: _Optional[str] = ..., engine_version: _Optional[str] = ..., addr: _Optional[str] = ..., is_self: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., version: _Optional[int] = ..., status_message: _Optional[str] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ...) -> None: ...

class ClusterInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterInfoResponse(_message.Message):
    __slots__ = ("cluster_id", "node_id", "hostname", "leader", "term", "managers", "quorum", "raft_role", "leader_addr", "commit_index", "applied_index", "raft_voters", "raft_learners")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    RAFT_ROLE_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    RAFT_VOTERS_FIELD_NUMBER: _ClassVar[int]
    RAFT_LEARNERS_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    node_id: str
    hostname: str
    leader: str
    term: int
    managers: int
    quorum: bool
    raft_role: str
    leader_addr: str
    commit_index: int
    applied_index: int
    raft_voters: int
    raft_learners: int
    def __init__(self, cluster_id: _Optional[str] = ..., node_id: _Optional[str] = ..., hostname: _Optional[str] = ..., leader: _Optional[str] = ..., term: _Optional[int] = ..., managers: _Optional[int] = ..., quorum: _Optional[bool] = ..., raft_role: _Optional[str] = ..., leader_addr: _Optional[str] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., raft_voters: _Optional[int] = ..., raft_learners: _Optional[int] = ...) -> None: ...

class InspectNodeRequest(_message.Message):
    __slots__ = ("node", "local")
    NODE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    node: str
    local: bool
    def __init__(self, node: _Optional[str] = ..., local: _Optional[bool] = ...) -> None: ...

class UpdateNodeRequest(_message.Message):
    __slots__ = ("node", "labels_add", "labels_rm", "availability", "role", "forwarded")
    class LabelsAddEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    LABELS_ADD_FIELD_NUMBER: _ClassVar[int]
    LABELS_RM_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_FIELD_NUMBER: _ClassVar[int]
    node: str
    labels_add: _containers.ScalarMap[str, str]
    labels_rm: _containers.RepeatedScalarFieldContainer[str]
    availability: str
    role: str
    forwarded: bool
    def __init__(self, node: _Optional[str] = ..., labels_add: _Optional[_Mapping[str, str]] = ..., labels_rm: _Optional[_Iterable[str]] = ..., availability: _Optional[str] = ..., role: _Optional[str] = ..., forwarded: _Optional[bool] = ...) -> None: ...

class UpdateNodeResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("node", "force", "forwarded")
    NODE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_FIELD_NUMBER: _ClassVar[int]
    node: str
    force: bool
    forwarded: bool
    def __init__(self, node: _Optional[str] = ..., force: _Optional[bool] = ..., forwarded: _Optional[bool] = ...) -> None: ...

class RemoveNodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
