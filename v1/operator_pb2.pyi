from juggler.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_STATE_UNSPECIFIED: _ClassVar[AgentState]
    AGENT_ACTIVE: _ClassVar[AgentState]
    AGENT_DISCONNECTED: _ClassVar[AgentState]
    AGENT_UNREACHABLE: _ClassVar[AgentState]
    AGENT_DRAINING: _ClassVar[AgentState]
    AGENT_DOWN: _ClassVar[AgentState]
    AGENT_GONE: _ClassVar[AgentState]
AGENT_STATE_UNSPECIFIED: AgentState
AGENT_ACTIVE: AgentState
AGENT_DISCONNECTED: AgentState
AGENT_UNREACHABLE: AgentState
AGENT_DRAINING: AgentState
AGENT_DOWN: AgentState
AGENT_GONE: AgentState

class DrainAgentRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class DrainAgentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpAgentRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class UpAgentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentView(_message.Message):
    __slots__ = ("info", "state", "total", "allocated", "offered", "registered_time", "last_seen_time")
    INFO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    OFFERED_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    info: _common_pb2.AgentInfo
    state: AgentState
    total: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    allocated: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    offered: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    registered_time: float
    last_seen_time: float
    def __init__(self, info: _Optional[_Union[_common_pb2.AgentInfo, _Mapping]] = ..., state: _Optional[_Union[AgentState, str]] = ..., total: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., allocated: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., offered: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., registered_time: _Optional[float] = ..., last_seen_time: _Optional[float] = ...) -> None: ...

class FrameworkView(_message.Message):
    __slots__ = ("info", "connected", "registered_time", "allocated", "offered", "active_tasks")
    INFO_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_TIME_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    OFFERED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TASKS_FIELD_NUMBER: _ClassVar[int]
    info: _common_pb2.FrameworkInfo
    connected: bool
    registered_time: float
    allocated: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    offered: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    active_tasks: int
    def __init__(self, info: _Optional[_Union[_common_pb2.FrameworkInfo, _Mapping]] = ..., connected: _Optional[bool] = ..., registered_time: _Optional[float] = ..., allocated: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., offered: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., active_tasks: _Optional[int] = ...) -> None: ...

class TaskView(_message.Message):
    __slots__ = ("info", "framework_id", "agent_id", "state", "status", "history", "launched_time", "agent_hostname", "agent_address")
    INFO_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    LAUNCHED_TIME_FIELD_NUMBER: _ClassVar[int]
    AGENT_HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    info: _common_pb2.TaskInfo
    framework_id: str
    agent_id: str
    state: _common_pb2.TaskState
    status: _common_pb2.TaskStatus
    history: _containers.RepeatedCompositeFieldContainer[_common_pb2.TaskStatus]
    launched_time: float
    agent_hostname: str
    agent_address: str
    def __init__(self, info: _Optional[_Union[_common_pb2.TaskInfo, _Mapping]] = ..., framework_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.TaskState, str]] = ..., status: _Optional[_Union[_common_pb2.TaskStatus, _Mapping]] = ..., history: _Optional[_Iterable[_Union[_common_pb2.TaskStatus, _Mapping]]] = ..., launched_time: _Optional[float] = ..., agent_hostname: _Optional[str] = ..., agent_address: _Optional[str] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStateResponse(_message.Message):
    __slots__ = ("agents", "frameworks", "tasks", "completed_tasks", "leader")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORKS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_TASKS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentView]
    frameworks: _containers.RepeatedCompositeFieldContainer[FrameworkView]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskView]
    completed_tasks: _containers.RepeatedCompositeFieldContainer[TaskView]
    leader: GetLeaderResponse
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentView, _Mapping]]] = ..., frameworks: _Optional[_Iterable[_Union[FrameworkView, _Mapping]]] = ..., tasks: _Optional[_Iterable[_Union[TaskView, _Mapping]]] = ..., completed_tasks: _Optional[_Iterable[_Union[TaskView, _Mapping]]] = ..., leader: _Optional[_Union[GetLeaderResponse, _Mapping]] = ...) -> None: ...

class GetAgentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetAgentsResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentView]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentView, _Mapping]]] = ...) -> None: ...

class GetFrameworksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFrameworksResponse(_message.Message):
    __slots__ = ("frameworks",)
    FRAMEWORKS_FIELD_NUMBER: _ClassVar[int]
    frameworks: _containers.RepeatedCompositeFieldContainer[FrameworkView]
    def __init__(self, frameworks: _Optional[_Iterable[_Union[FrameworkView, _Mapping]]] = ...) -> None: ...

class GetTasksRequest(_message.Message):
    __slots__ = ("include_completed",)
    INCLUDE_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    include_completed: bool
    def __init__(self, include_completed: _Optional[bool] = ...) -> None: ...

class GetTasksResponse(_message.Message):
    __slots__ = ("tasks", "completed_tasks")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskView]
    completed_tasks: _containers.RepeatedCompositeFieldContainer[TaskView]
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskView, _Mapping]]] = ..., completed_tasks: _Optional[_Iterable[_Union[TaskView, _Mapping]]] = ...) -> None: ...

class GetLeaderRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetLeaderResponse(_message.Message):
    __slots__ = ("address", "self", "is_leader")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SELF_FIELD_NUMBER: _ClassVar[int]
    IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    address: str
    self: str
    is_leader: bool
    def __init__(self_, address: _Optional[str] = ..., self: _Optional[str] = ..., is_leader: _Optional[bool] = ...) -> None: ...
