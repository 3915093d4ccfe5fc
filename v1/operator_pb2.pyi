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
    AGENT_GONE: _ClassVar[AgentState]

class MaintenanceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MAINTENANCE_NONE: _ClassVar[MaintenanceState]
    MAINTENANCE_DRAINING: _ClassVar[MaintenanceState]
    MAINTENANCE_DOWN: _ClassVar[MaintenanceState]

class FrameworkState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAMEWORK_STATE_UNSPECIFIED: _ClassVar[FrameworkState]
    FRAMEWORK_SUBSCRIBED: _ClassVar[FrameworkState]
    FRAMEWORK_DISCONNECTED: _ClassVar[FrameworkState]
    FRAMEWORK_TORN_DOWN: _ClassVar[FrameworkState]
AGENT_STATE_UNSPECIFIED: AgentState
AGENT_ACTIVE: AgentState
AGENT_DISCONNECTED: AgentState
AGENT_UNREACHABLE: AgentState
AGENT_GONE: AgentState
MAINTENANCE_NONE: MaintenanceState
MAINTENANCE_DRAINING: MaintenanceState
MAINTENANCE_DOWN: MaintenanceState
FRAMEWORK_STATE_UNSPECIFIED: FrameworkState
FRAMEWORK_SUBSCRIBED: FrameworkState
FRAMEWORK_DISCONNECTED: FrameworkState
FRAMEWORK_TORN_DOWN: FrameworkState

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

class Transition(_message.Message):
    __slots__ = ("source", "target", "stimulus", "time")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STIMULUS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    stimulus: str
    time: float
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ..., stimulus: _Optional[str] = ..., time: _Optional[float] = ...) -> None: ...

class AgentView(_message.Message):
    __slots__ = ("info", "state", "total", "allocated", "offered", "registered_time", "last_seen_time", "maintenance", "story", "unreachable_time")
    INFO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    OFFERED_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    MAINTENANCE_FIELD_NUMBER: _ClassVar[int]
    STORY_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_TIME_FIELD_NUMBER: _ClassVar[int]
    info: _common_pb2.AgentInfo
    state: AgentState
    total: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    allocated: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    offered: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    registered_time: float
    last_seen_time: float
    maintenance: MaintenanceState
    story: _containers.RepeatedCompositeFieldContainer[Transition]
    unreachable_time: float
    def __init__(self, info: _Optional[_Union[_common_pb2.AgentInfo, _Mapping]] = ..., state: _Optional[_Union[AgentState, str]] = ..., total: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., allocated: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., offered: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., registered_time: _Optional[float] = ..., last_seen_time: _Optional[float] = ..., maintenance: _Optional[_Union[MaintenanceState, str]] = ..., story: _Optional[_Iterable[_Union[Transition, _Mapping]]] = ..., unreachable_time: _Optional[float] = ...) -> None: ...

class FrameworkView(_message.Message):
    __slots__ = ("info", "connected", "registered_time", "allocated", "offered", "active_tasks", "state", "story")
    INFO_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_TIME_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    OFFERED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TASKS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STORY_FIELD_NUMBER: _ClassVar[int]
    info: _common_pb2.FrameworkInfo
    connected: bool
    registered_time: float
    allocated: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    offered: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    active_tasks: int
    state: FrameworkState
    story: _containers.RepeatedCompositeFieldContainer[Transition]
    def __init__(self, info: _Optional[_Union[_common_pb2.FrameworkInfo, _Mapping]] = ..., connected: _Optional[bool] = ..., registered_time: _Optional[float] = ..., allocated: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., offered: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., active_tasks: _Optional[int] = ..., state: _Optional[_Union[FrameworkState, str]] = ..., story: _Optional[_Iterable[_Union[Transition, _Mapping]]] = ...) -> None: ...

class TaskView(_message.Message):
    __slots__ = ("info", "framework_id", "agent_id", "state", "status", "history", "launched_time", "agent_hostname", "agent_address", "kill_requested")
    INFO_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    LAUNCHED_TIME_FIELD_NUMBER: _ClassVar[int]
    AGENT_HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    KILL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    info: _common_pb2.TaskInfo
    framework_id: str
    agent_id: str
    state: _common_pb2.TaskState
    status: _common_pb2.TaskStatus
    history: _containers.RepeatedCompositeFieldContainer[_common_pb2.TaskStatus]
    launched_time: float
    agent_hostname: str
    agent_address: str
    kill_requested: bool
    def __init__(self, info: _Optional[_Union[_common_pb2.TaskInfo, _Mapping]] = ..., framework_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.TaskState, str]] = ..., status: _Optional[_Union[_common_pb2.TaskStatus, _Mapping]] = ..., history: _Optional[_Iterable[_Union[_common_pb2.TaskStatus, _Mapping]]] = ..., launched_time: _Optional[float] = ..., agent_hostname: _Optional[str] = ..., agent_address: _Optional[str] = ..., kill_requested: _Optional[bool] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ("stories",)
    STORIES_FIELD_NUMBER: _ClassVar[int]
    stories: bool
    def __init__(self, stories: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("stories",)
    STORIES_FIELD_NUMBER: _ClassVar[int]
    stories: bool
    def __init__(self, stories: _Optional[bool] = ...) -> None: ...

class GetAgentsResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentView]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentView, _Mapping]]] = ...) -> None: ...

class GetFrameworksRequest(_message.Message):
    __slots__ = ("stories",)
    STORIES_FIELD_NUMBER: _ClassVar[int]
    stories: bool
    def __init__(self, stories: _Optional[bool] = ...) -> None: ...

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

class GetRolesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoleView(_message.Message):
    __slots__ = ("role", "weight", "quota", "allocated", "offered", "frameworks")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    QUOTA_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    OFFERED_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORKS_FIELD_NUMBER: _ClassVar[int]
    role: str
    weight: float
    quota: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    allocated: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    offered: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    frameworks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, role: _Optional[str] = ..., weight: _Optional[float] = ..., quota: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., allocated: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., offered: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., frameworks: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRolesResponse(_message.Message):
    __slots__ = ("roles",)
    ROLES_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedCompositeFieldContainer[RoleView]
    def __init__(self, roles: _Optional[_Iterable[_Union[RoleView, _Mapping]]] = ...) -> None: ...

class UpdateWeightsRequest(_message.Message):
    __slots__ = ("weights",)
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    weights: _containers.ScalarMap[str, float]
    def __init__(self, weights: _Optional[_Mapping[str, float]] = ...) -> None: ...

class UpdateWeightsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateQuotaRequest(_message.Message):
    __slots__ = ("role", "limit", "remove")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    role: str
    limit: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    remove: bool
    def __init__(self, role: _Optional[str] = ..., limit: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ..., remove: _Optional[bool] = ...) -> None: ...

class UpdateQuotaResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
