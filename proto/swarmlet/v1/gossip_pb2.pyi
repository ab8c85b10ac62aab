from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MemberWireState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMBER_WIRE_STATE_ALIVE: _ClassVar[MemberWireState]
    MEMBER_WIRE_STATE_SUSPECT: _ClassVar[MemberWireState]
    MEMBER_WIRE_STATE_DEAD: _ClassVar[MemberWireState]
    MEMBER_WIRE_STATE_LEFT: _ClassVar[MemberWireState]
MEMBER_WIRE_STATE_ALIVE: MemberWireState
MEMBER_WIRE_STATE_SUSPECT: MemberWireState
MEMBER_WIRE_STATE_DEAD: MemberWireState
MEMBER_WIRE_STATE_LEFT: MemberWireState

class SwimNodeMeta(_message.Message):
    __slots__ = ("node_id", "role", "addr", "labels", "version")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: str
    addr: str
    labels: _containers.RepeatedCompositeFieldContainer[SwimLabel]
    version: str
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[str] = ..., addr: _Optional[str] = ..., labels: _Optional[_Iterable[_Union[SwimLabel, _Mapping]]] = ..., version: _Optional[str] = ...) -> None: ...

class SwimLabel(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class SwimPing(_message.Message):
    __slots__ = ("seq", "target", "source")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    target: str
    source: str
    def __init__(self, seq: _Optional[int] = ..., target: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class SwimIndirectPing(_message.Message):
    __slots__ = ("seq", "target", "target_addr", "source")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TARGET_ADDR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    target: str
    target_addr: str
    source: str
    def __init__(self, seq: _Optional[int] = ..., target: _Optional[str] = ..., target_addr: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class SwimAck(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class SwimNack(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class SwimAlive(_message.Message):
    __slots__ = ("incarnation", "node", "address", "meta")
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    incarnation: int
    node: str
    address: str
    meta: SwimNodeMeta
    def __init__(self, incarnation: _Optional[int] = ..., node: _Optional[str] = ..., address: _Optional[str] = ..., meta: _Optional[_Union[SwimNodeMeta, _Mapping]] = ...) -> None: ...

class SwimSuspect(_message.Message):
    __slots__ = ("incarnation", "node", "source")
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    incarnation: int
    node: str
    source: str
    def __init__(self, incarnation: _Optional[int] = ..., node: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class SwimDead(_message.Message):
    __slots__ = ("incarnation", "node", "source")
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    incarnation: int
    node: str
    source: str
    def __init__(self, incarnation: _Optional[int] = ..., node: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class SwimUserMsg(_message.Message):
    __slots__ = ("origin", "msg_id", "topic", "payload")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    MSG_ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    origin: str
    msg_id: int
    topic: str
    payload: bytes
    def __init__(self, origin: _Optional[str] = ..., msg_id: _Optional[int] = ..., topic: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class SwimPushPullEntry(_message.Message):
    __slots__ = ("name", "address", "meta", "incarnation", "state")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    meta: SwimNodeMeta
    incarnation: int
    state: MemberWireState
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., meta: _Optional[_Union[SwimNodeMeta, _Mapping]] = ..., incarnation: _Optional[int] = ..., state: _Optional[_Union[MemberWireState, str]] = ...) -> None: ...

class SwimPushPull(_message.Message):
    __slots__ = ("source", "entries", "join", "reply")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    JOIN_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    source: str
    entries: _containers.RepeatedCompositeFieldContainer[SwimPushPullEntry]
    join: bool
    reply: bool
    def __init__(self, source: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[SwimPushPullEntry, _Mapping]]] = ..., join: _Optional[bool] = ..., reply: _Optional[bool] = ...) -> None: ...

class SwimCompound(_message.Message):
    __slots__ = ("parts",)
    PARTS_FIELD_NUMBER: _ClassVar[int]
    parts: _containers.RepeatedCompositeFieldContainer[GossipMessage]
    def __init__(self, parts: _Optional[_Iterable[_Union[GossipMessage, _Mapping]]] = ...) -> None: ...

class GossipMessage(_message.Message):
    __slots__ = ("ping", "indirect_ping", "ack", "nack", "alive", "suspect", "dead", "user", "push_pull", "compound")
    PING_FIELD_NUMBER: _ClassVar[int]
    INDIRECT_PING_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    NACK_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    SUSPECT_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    PUSH_PULL_FIELD_NUMBER: _ClassVar[int]
    COMPOUND_FIELD_NUMBER: _ClassVar[int]
    ping: SwimPing
    indirect_ping: SwimIndirectPing
    ack: SwimAck
    nack: SwimNack
    alive: SwimAlive
    suspect: SwimSuspect
    dead: SwimDead
    user: SwimUserMsg
    push_pull: SwimPushPull
    compound: SwimCompound
    def __init__(self, ping: _Optional[_Union[SwimPing, _Mapping]] = ..., indirect_ping: _Optional[_Union[SwimIndirectPing, _Mapping]] = ..., ack: _Optional[_Union[SwimAck, _Mapping]] = ..., nack: _Optional[_Union[SwimNack, _Mapping]] = ..., alive: _Optional[_Union[SwimAlive, _Mapping]] = ..., suspect: _Optional[_Union[SwimSuspect, _Mapping]] = ..., dead: _Optional[_Union[SwimDead, _Mapping]] = ..., user: _Optional[_Union[SwimUserMsg, _Mapping]] = ..., push_pull: _Optional[_Union[SwimPushPull, _Mapping]] = ..., compound: _Optional[_Union[SwimCompound, _Mapping]] = ...) -> None: ...
