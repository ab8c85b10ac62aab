from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Envelope(_message.Message):
    __slots__ = ("sender", "payload")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    sender: str
    payload: bytes
    def __init__(self, sender: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class StreamAck(_message.Message):
    __slots__ = ("received",)
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    received: int
    def __init__(self, received: _Optional[int] = ...) -> None: ...

class LinkFaultRule(_message.Message):
    __slots__ = ("peers", "drop", "delay", "duplicate", "partition")
    PEERS_FIELD_NUMBER: _ClassVar[int]
    DROP_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedScalarFieldContainer[str]
    drop: float
    delay: float
    duplicate: float
    partition: bool
    def __init__(self, peers: _Optional[_Iterable[str]] = ..., drop: _Optional[float] = ..., delay: _Optional[float] = ..., duplicate: _Optional[float] = ..., partition: _Optional[bool] = ...) -> None: ...

class LinkFaults(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[LinkFaultRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[LinkFaultRule, _Mapping]]] = ...) -> None: ...

class MembersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MemberView(_message.Message):
    __slots__ = ("name", "address", "state", "incarnation", "role", "hostname")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    state: str
    incarnation: int
    role: str
    hostname: str
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., state: _Optional[str] = ..., incarnation: _Optional[int] = ..., role: _Optional[str] = ..., hostname: _Optional[str] = ...) -> None: ...

class MembersReply(_message.Message):
    __slots__ = ("self", "members", "health")
    SELF_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    self: str
    members: _containers.RepeatedCompositeFieldContainer[MemberView]
    health: int
    def __init__(self_, self: _Optional[str] = ..., members: _Optional[_Iterable[_Union[MemberView, _Mapping]]] = ..., health: _Optional[int] = ...) -> None: ...
