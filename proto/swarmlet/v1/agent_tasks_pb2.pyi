from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListTasksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TaskRow(_message.Message):
    __slots__ = ("task_id", "name", "image", "state", "desired_state", "address", "files")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DESIRED_STATE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    name: str
    image: str
    state: str
    desired_state: str
    address: str
    files: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_id: _Optional[str] = ..., name: _Optional[str] = ..., image: _Optional[str] = ..., state: _Optional[str] = ..., desired_state: _Optional[str] = ..., address: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskRow]
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskRow, _Mapping]]] = ...) -> None: ...

class TaskLogsRequest(_message.Message):
    __slots__ = ("task_id", "follow", "tail", "since_ns")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_NS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    follow: bool
    tail: int
    since_ns: int
    def __init__(self, task_id: _Optional[str] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., since_ns: _Optional[int] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("time_ns", "stream", "line", "task_id")
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    time_ns: int
    stream: str
    line: bytes
    task_id: str
    def __init__(self, time_ns: _Optional[int] = ..., stream: _Optional[str] = ..., line: _Optional[bytes] = ..., task_id: _Optional[str] = ...) -> None: ...

class ListPayloadsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PayloadRow(_message.Message):
    __slots__ = ("kind", "id", "name", "size", "templated")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATED_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    name: str
    size: int
    templated: bool
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., size: _Optional[int] = ..., templated: _Optional[bool] = ...) -> None: ...

class ListPayloadsResponse(_message.Message):
    __slots__ = ("payloads",)
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    payloads: _containers.RepeatedCompositeFieldContainer[PayloadRow]
    def __init__(self, payloads: _Optional[_Iterable[_Union[PayloadRow, _Mapping]]] = ...) -> None: ...
