from juggler.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KillRecord(_message.Message):
    __slots__ = ("framework_id", "task_id", "agent_id", "kill_policy", "requested_time")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    KILL_POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_TIME_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    task_id: str
    agent_id: str
    kill_policy: _common_pb2.KillPolicy
    requested_time: float
    def __init__(self, framework_id: _Optional[str] = ..., task_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., kill_policy: _Optional[_Union[_common_pb2.KillPolicy, _Mapping]] = ..., requested_time: _Optional[float] = ...) -> None: ...

class RoleConfig(_message.Message):
    __slots__ = ("role", "weight", "quota")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    QUOTA_FIELD_NUMBER: _ClassVar[int]
    role: str
    weight: float
    quota: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    def __init__(self, role: _Optional[str] = ..., weight: _Optional[float] = ..., quota: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ...) -> None: ...
