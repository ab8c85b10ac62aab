from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RaftMessageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RAFT_MESSAGE_TYPE_UNSPECIFIED: _ClassVar[RaftMessageType]
    RAFT_MESSAGE_TYPE_APPEND: _ClassVar[RaftMessageType]
    RAFT_MESSAGE_TYPE_APPEND_RESP: _ClassVar[RaftMessageType]
    RAFT_MESSAGE_TYPE_VOTE: _ClassVar[RaftMessageType]
    RAFT_MESSAGE_TYPE_VOTE_RESP: _ClassVar[RaftMessageType]
    RAFT_MESSAGE_TYPE_PRE_VOTE: _ClassVar[RaftMessageType]
    RAFT_MESSAGE_TYPE_PRE_VOTE_RESP: _ClassVar[RaftMessageType]
    RAFT_MESSAGE_TYPE_HEARTBEAT: _ClassVar[RaftMessageType]
    RAFT_MESSAGE_TYPE_HEARTBEAT_RESP: _ClassVar[RaftMessageType]
    RAFT_MESSAGE_TYPE_SNAPSHOT: _ClassVar[RaftMessageType]
    RAFT_MESSAGE_TYPE_TIMEOUT_NOW: _ClassVar[RaftMessageType]
    RAFT_MESSAGE_TYPE_READ_INDEX: _ClassVar[RaftMessageType]
    RAFT_MESSAGE_TYPE_READ_INDEX_RESP: _ClassVar[RaftMessageType]
    RAFT_MESSAGE_TYPE_TRANSFER_LEADER: _ClassVar[RaftMessageType]

class RaftEntryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RAFT_ENTRY_TYPE_NORMAL: _ClassVar[RaftEntryType]
    RAFT_ENTRY_TYPE_CONF_CHANGE: _ClassVar[RaftEntryType]
RAFT_MESSAGE_TYPE_UNSPECIFIED: RaftMessageType
RAFT_MESSAGE_TYPE_APPEND: RaftMessageType
RAFT_MESSAGE_TYPE_APPEND_RESP: RaftMessageType
RAFT_MESSAGE_TYPE_VOTE: RaftMessageType
RAFT_MESSAGE_TYPE_VOTE_RESP: RaftMessageType
RAFT_MESSAGE_TYPE_PRE_VOTE: RaftMessageType
RAFT_MESSAGE_TYPE_PRE_VOTE_RESP: RaftMessageType
RAFT_MESSAGE_TYPE_HEARTBEAT: RaftMessageType
RAFT_MESSAGE_TYPE_HEARTBEAT_RESP: RaftMessageType
RAFT_MESSAGE_TYPE_SNAPSHOT: RaftMessageType
RAFT_MESSAGE_TYPE_TIMEOUT_NOW: RaftMessageType
RAFT_MESSAGE_TYPE_READ_INDEX: RaftMessageType
RAFT_MESSAGE_TYPE_READ_INDEX_RESP: RaftMessageType
RAFT_MESSAGE_TYPE_TRANSFER_LEADER: RaftMessageType
RAFT_ENTRY_TYPE_NORMAL: RaftEntryType
RAFT_ENTRY_TYPE_CONF_CHANGE: RaftEntryType

class RaftEntry(_message.Message):
    __slots__ = ("index", "term", "type", "data")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    index: int
    term: int
    type: RaftEntryType
    data: bytes
    def __init__(self, index: _Optional[int] = ..., term: _Optional[int] = ..., type: _Optional[_Union[RaftEntryType, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class RaftConfState(_message.Message):
    __slots__ = ("voters", "learners")
    VOTERS_FIELD_NUMBER: _ClassVar[int]
    LEARNERS_FIELD_NUMBER: _ClassVar[int]
    voters: _containers.RepeatedScalarFieldContainer[str]
    learners: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, voters: _Optional[_Iterable[str]] = ..., learners: _Optional[_Iterable[str]] = ...) -> None: ...

class RaftSnapshotMeta(_message.Message):
    __slots__ = ("index", "term", "conf")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    CONF_FIELD_NUMBER: _ClassVar[int]
    index: int
    term: int
    conf: RaftConfState
    def __init__(self, index: _Optional[int] = ..., term: _Optional[int] = ..., conf: _Optional[_Union[RaftConfState, _Mapping]] = ...) -> None: ...

class RaftMessage(_message.Message):
    __slots__ = ("type", "to", "sender", "term", "log_term", "index", "entries", "commit", "reject", "reject_hint", "snapshot", "snapshot_data", "context", "target")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LOG_TERM_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    REJECT_FIELD_NUMBER: _ClassVar[int]
    REJECT_HINT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_DATA_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    type: RaftMessageType
    to: str
    sender: str
    term: int
    log_term: int
    index: int
    entries: _containers.RepeatedCompositeFieldContainer[RaftEntry]
    commit: int
    reject: bool
    reject_hint: int
    snapshot: RaftSnapshotMeta
    snapshot_data: bytes
    context: bytes
    target: str
    def __init__(self, type: _Optional[_Union[RaftMessageType, str]] = ..., to: _Optional[str] = ..., sender: _Optional[str] = ..., term: _Optional[int] = ..., log_term: _Optional[int] = ..., index: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[RaftEntry, _Mapping]]] = ..., commit: _Optional[int] = ..., reject: _Optional[bool] = ..., reject_hint: _Optional[int] = ..., snapshot: _Optional[_Union[RaftSnapshotMeta, _Mapping]] = ..., snapshot_data: _Optional[bytes] = ..., context: _Optional[bytes] = ..., target: _Optional[str] = ...) -> None: ...

class RaftStreamAck(_message.Message):
    __slots__ = ("received",)
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    received: int
    def __init__(self, received: _Optional[int] = ...) -> None: ...
