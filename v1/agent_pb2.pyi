from juggler.v1 import common_pb2 as _common_pb2
from juggler.v1 import executor_pb2 as _executor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecutorState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTOR_STATE_UNSPECIFIED: _ClassVar[ExecutorState]
    EXECUTOR_PULLING: _ClassVar[ExecutorState]
    EXECUTOR_LAUNCHING: _ClassVar[ExecutorState]
    EXECUTOR_CONNECTED: _ClassVar[ExecutorState]
    EXECUTOR_DISCONNECTED: _ClassVar[ExecutorState]
    EXECUTOR_EXITED: _ClassVar[ExecutorState]
EXECUTOR_STATE_UNSPECIFIED: ExecutorState
EXECUTOR_PULLING: ExecutorState
EXECUTOR_LAUNCHING: ExecutorState
EXECUTOR_CONNECTED: ExecutorState
EXECUTOR_DISCONNECTED: ExecutorState
EXECUTOR_EXITED: ExecutorState

class AgentMessage(_message.Message):
    __slots__ = ("register", "reregister", "heartbeat", "status_update", "batch")
    class Register(_message.Message):
        __slots__ = ("agent", "version")
        AGENT_FIELD_NUMBER: _ClassVar[int]
        VERSION_FIELD_NUMBER: _ClassVar[int]
        agent: _common_pb2.AgentInfo
        version: str
        def __init__(self, agent: _Optional[_Union[_common_pb2.AgentInfo, _Mapping]] = ..., version: _Optional[str] = ...) -> None: ...
    class Reregister(_message.Message):
        __slots__ = ("agent", "tasks", "running", "version")
        AGENT_FIELD_NUMBER: _ClassVar[int]
        TASKS_FIELD_NUMBER: _ClassVar[int]
        RUNNING_FIELD_NUMBER: _ClassVar[int]
        VERSION_FIELD_NUMBER: _ClassVar[int]
        agent: _common_pb2.AgentInfo
        tasks: _containers.RepeatedCompositeFieldContainer[_common_pb2.TaskStatus]
        running: _containers.RepeatedCompositeFieldContainer[AgentMessage.RunningTask]
        version: str
        def __init__(self, agent: _Optional[_Union[_common_pb2.AgentInfo, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[_common_pb2.TaskStatus, _Mapping]]] = ..., running: _Optional[_Iterable[_Union[AgentMessage.RunningTask, _Mapping]]] = ..., version: _Optional[str] = ...) -> None: ...
    class RunningTask(_message.Message):
        __slots__ = ("task", "framework", "launched_time", "next_update")
        TASK_FIELD_NUMBER: _ClassVar[int]
        FRAMEWORK_FIELD_NUMBER: _ClassVar[int]
        LAUNCHED_TIME_FIELD_NUMBER: _ClassVar[int]
        NEXT_UPDATE_FIELD_NUMBER: _ClassVar[int]
        task: _common_pb2.TaskInfo
        framework: _common_pb2.FrameworkInfo
        launched_time: float
        next_update: _common_pb2.TaskStatus
        def __init__(self, task: _Optional[_Union[_common_pb2.TaskInfo, _Mapping]] = ..., framework: _Optional[_Union[_common_pb2.FrameworkInfo, _Mapping]] = ..., launched_time: _Optional[float] = ..., next_update: _Optional[_Union[_common_pb2.TaskStatus, _Mapping]] = ...) -> None: ...
    class Heartbeat(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    class StatusUpdate(_message.Message):
        __slots__ = ("status", "latest_state")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        LATEST_STATE_FIELD_NUMBER: _ClassVar[int]
        status: _common_pb2.TaskStatus
        latest_state: _common_pb2.TaskState
        def __init__(self, status: _Optional[_Union[_common_pb2.TaskStatus, _Mapping]] = ..., latest_state: _Optional[_Union[_common_pb2.TaskState, str]] = ...) -> None: ...
    class Batch(_message.Message):
        __slots__ = ("messages",)
        MESSAGES_FIELD_NUMBER: _ClassVar[int]
        messages: _containers.RepeatedCompositeFieldContainer[AgentMessage]
        def __init__(self, messages: _Optional[_Iterable[_Union[AgentMessage, _Mapping]]] = ...) -> None: ...
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    REREGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STATUS_UPDATE_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    register: AgentMessage.Register
    reregister: AgentMessage.Reregister
    heartbeat: AgentMessage.Heartbeat
    status_update: AgentMessage.StatusUpdate
    batch: AgentMessage.Batch
    def __init__(self, register: _Optional[_Union[AgentMessage.Register, _Mapping]] = ..., reregister: _Optional[_Union[AgentMessage.Reregister, _Mapping]] = ..., heartbeat: _Optional[_Union[AgentMessage.Heartbeat, _Mapping]] = ..., status_update: _Optional[_Union[AgentMessage.StatusUpdate, _Mapping]] = ..., batch: _Optional[_Union[AgentMessage.Batch, _Mapping]] = ...) -> None: ...

class MasterMessage(_message.Message):
    __slots__ = ("registered", "run_task", "kill_task", "acknowledgement", "heartbeat", "shutdown", "batch")
    class Registered(_message.Message):
        __slots__ = ("agent_id", "heartbeat_interval_seconds", "master_address", "masters")
        AGENT_ID_FIELD_NUMBER: _ClassVar[int]
        HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
        MASTER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
        MASTERS_FIELD_NUMBER: _ClassVar[int]
        agent_id: str
        heartbeat_interval_seconds: float
        master_address: str
        masters: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, agent_id: _Optional[str] = ..., heartbeat_interval_seconds: _Optional[float] = ..., master_address: _Optional[str] = ..., masters: _Optional[_Iterable[str]] = ...) -> None: ...
    class RunTask(_message.Message):
        __slots__ = ("framework", "task")
        FRAMEWORK_FIELD_NUMBER: _ClassVar[int]
        TASK_FIELD_NUMBER: _ClassVar[int]
        framework: _common_pb2.FrameworkInfo
        task: _common_pb2.TaskInfo
        def __init__(self, framework: _Optional[_Union[_common_pb2.FrameworkInfo, _Mapping]] = ..., task: _Optional[_Union[_common_pb2.TaskInfo, _Mapping]] = ...) -> None: ...
    class KillTask(_message.Message):
        __slots__ = ("framework_id", "task_id", "kill_policy")
        FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
        TASK_ID_FIELD_NUMBER: _ClassVar[int]
        KILL_POLICY_FIELD_NUMBER: _ClassVar[int]
        framework_id: str
        task_id: str
        kill_policy: _common_pb2.KillPolicy
        def __init__(self, framework_id: _Optional[str] = ..., task_id: _Optional[str] = ..., kill_policy: _Optional[_Union[_common_pb2.KillPolicy, _Mapping]] = ...) -> None: ...
    class Acknowledgement(_message.Message):
        __slots__ = ("framework_id", "task_id", "uuid")
        FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
        TASK_ID_FIELD_NUMBER: _ClassVar[int]
        UUID_FIELD_NUMBER: _ClassVar[int]
        framework_id: str
        task_id: str
        uuid: bytes
        def __init__(self, framework_id: _Optional[str] = ..., task_id: _Optional[str] = ..., uuid: _Optional[bytes] = ...) -> None: ...
    class Heartbeat(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    class Shutdown(_message.Message):
        __slots__ = ("message",)
        MESSAGE_FIELD_NUMBER: _ClassVar[int]
        message: str
        def __init__(self, message: _Optional[str] = ...) -> None: ...
    class Batch(_message.Message):
        __slots__ = ("messages",)
        MESSAGES_FIELD_NUMBER: _ClassVar[int]
        messages: _containers.RepeatedCompositeFieldContainer[MasterMessage]
        def __init__(self, messages: _Optional[_Iterable[_Union[MasterMessage, _Mapping]]] = ...) -> None: ...
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    RUN_TASK_FIELD_NUMBER: _ClassVar[int]
    KILL_TASK_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGEMENT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    registered: MasterMessage.Registered
    run_task: MasterMessage.RunTask
    kill_task: MasterMessage.KillTask
    acknowledgement: MasterMessage.Acknowledgement
    heartbeat: MasterMessage.Heartbeat
    shutdown: MasterMessage.Shutdown
    batch: MasterMessage.Batch
    def __init__(self, registered: _Optional[_Union[MasterMessage.Registered, _Mapping]] = ..., run_task: _Optional[_Union[MasterMessage.RunTask, _Mapping]] = ..., kill_task: _Optional[_Union[MasterMessage.KillTask, _Mapping]] = ..., acknowledgement: _Optional[_Union[MasterMessage.Acknowledgement, _Mapping]] = ..., heartbeat: _Optional[_Union[MasterMessage.Heartbeat, _Mapping]] = ..., shutdown: _Optional[_Union[MasterMessage.Shutdown, _Mapping]] = ..., batch: _Optional[_Union[MasterMessage.Batch, _Mapping]] = ...) -> None: ...

class SignalRequest(_message.Message):
    __slots__ = ("task_id", "framework_id", "signal")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    framework_id: str
    signal: str
    def __init__(self, task_id: _Optional[str] = ..., framework_id: _Optional[str] = ..., signal: _Optional[str] = ...) -> None: ...

class SignalResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TopRequest(_message.Message):
    __slots__ = ("task_id", "framework_id", "ps_args")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    PS_ARGS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    framework_id: str
    ps_args: str
    def __init__(self, task_id: _Optional[str] = ..., framework_id: _Optional[str] = ..., ps_args: _Optional[str] = ...) -> None: ...

class TopResponse(_message.Message):
    __slots__ = ("titles", "processes")
    class Process(_message.Message):
        __slots__ = ("fields",)
        FIELDS_FIELD_NUMBER: _ClassVar[int]
        fields: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, fields: _Optional[_Iterable[str]] = ...) -> None: ...
    TITLES_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    titles: _containers.RepeatedScalarFieldContainer[str]
    processes: _containers.RepeatedCompositeFieldContainer[TopResponse.Process]
    def __init__(self, titles: _Optional[_Iterable[str]] = ..., processes: _Optional[_Iterable[_Union[TopResponse.Process, _Mapping]]] = ...) -> None: ...

class RemoveWritableLayerRequest(_message.Message):
    __slots__ = ("framework_id", "name")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    name: str
    def __init__(self, framework_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class RemoveWritableLayerResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class ImageLayer(_message.Message):
    __slots__ = ("diff_id", "size", "images")
    DIFF_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    diff_id: str
    size: int
    images: int
    def __init__(self, diff_id: _Optional[str] = ..., size: _Optional[int] = ..., images: _Optional[int] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("id", "digest", "references", "created", "size", "layers", "containers", "config")
    ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    id: str
    digest: str
    references: _containers.RepeatedScalarFieldContainer[str]
    created: str
    size: int
    layers: _containers.RepeatedCompositeFieldContainer[ImageLayer]
    containers: int
    config: str
    def __init__(self, id: _Optional[str] = ..., digest: _Optional[str] = ..., references: _Optional[_Iterable[str]] = ..., created: _Optional[str] = ..., size: _Optional[int] = ..., layers: _Optional[_Iterable[_Union[ImageLayer, _Mapping]]] = ..., containers: _Optional[int] = ..., config: _Optional[str] = ...) -> None: ...

class PullImageRequest(_message.Message):
    __slots__ = ("reference", "username", "password")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    reference: str
    username: str
    password: str
    def __init__(self, reference: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class PullImageProgress(_message.Message):
    __slots__ = ("layer", "status", "current", "total", "image")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    layer: str
    status: str
    current: int
    total: int
    image: Image
    def __init__(self, layer: _Optional[str] = ..., status: _Optional[str] = ..., current: _Optional[int] = ..., total: _Optional[int] = ..., image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class ListImagesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListImagesResponse(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ...) -> None: ...

class RemoveImageRequest(_message.Message):
    __slots__ = ("reference",)
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    def __init__(self, reference: _Optional[str] = ...) -> None: ...

class RemoveImageResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTagsRequest(_message.Message):
    __slots__ = ("repository", "username", "password")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    repository: str
    username: str
    password: str
    def __init__(self, repository: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class ListTagsResponse(_message.Message):
    __slots__ = ("tags",)
    TAGS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tags: _Optional[_Iterable[str]] = ...) -> None: ...

class ImportImageChunk(_message.Message):
    __slots__ = ("name", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    data: bytes
    def __init__(self, name: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("task_id", "framework_id", "follow", "tail", "stdout", "stderr", "stdout_from", "stderr_from")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FROM_FIELD_NUMBER: _ClassVar[int]
    STDERR_FROM_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    framework_id: str
    follow: bool
    tail: int
    stdout: bool
    stderr: bool
    stdout_from: int
    stderr_from: int
    def __init__(self, task_id: _Optional[str] = ..., framework_id: _Optional[str] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., stdout: _Optional[bool] = ..., stderr: _Optional[bool] = ..., stdout_from: _Optional[int] = ..., stderr_from: _Optional[int] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("stream", "data", "offset")
    class Stream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STREAM_UNSPECIFIED: _ClassVar[LogChunk.Stream]
        STDOUT: _ClassVar[LogChunk.Stream]
        STDERR: _ClassVar[LogChunk.Stream]
    STREAM_UNSPECIFIED: LogChunk.Stream
    STDOUT: LogChunk.Stream
    STDERR: LogChunk.Stream
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    stream: LogChunk.Stream
    data: bytes
    offset: int
    def __init__(self, stream: _Optional[_Union[LogChunk.Stream, str]] = ..., data: _Optional[bytes] = ..., offset: _Optional[int] = ...) -> None: ...

class GetAgentStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetAgentStateResponse(_message.Message):
    __slots__ = ("agent", "tasks", "executors")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    agent: _common_pb2.AgentInfo
    tasks: _containers.RepeatedCompositeFieldContainer[_common_pb2.TaskStatus]
    executors: _containers.RepeatedCompositeFieldContainer[ExecutorView]
    def __init__(self, agent: _Optional[_Union[_common_pb2.AgentInfo, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[_common_pb2.TaskStatus, _Mapping]]] = ..., executors: _Optional[_Iterable[_Union[ExecutorView, _Mapping]]] = ...) -> None: ...

class ExecutorView(_message.Message):
    __slots__ = ("framework_id", "task_id", "state", "kill_requested")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    KILL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    task_id: str
    state: ExecutorState
    kill_requested: bool
    def __init__(self, framework_id: _Optional[str] = ..., task_id: _Optional[str] = ..., state: _Optional[_Union[ExecutorState, str]] = ..., kill_requested: _Optional[bool] = ...) -> None: ...

class ExecRequest(_message.Message):
    __slots__ = ("start", "input")
    class Start(_message.Message):
        __slots__ = ("task_id", "framework_id", "argv", "tty", "environment", "size", "user", "working_directory")
        class EnvironmentEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: str
            def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
        TASK_ID_FIELD_NUMBER: _ClassVar[int]
        FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
        ARGV_FIELD_NUMBER: _ClassVar[int]
        TTY_FIELD_NUMBER: _ClassVar[int]
        ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
        SIZE_FIELD_NUMBER: _ClassVar[int]
        USER_FIELD_NUMBER: _ClassVar[int]
        WORKING_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
        task_id: str
        framework_id: str
        argv: _containers.RepeatedScalarFieldContainer[str]
        tty: bool
        environment: _containers.ScalarMap[str, str]
        size: _executor_pb2.TerminalSize
        user: str
        working_directory: str
        def __init__(self, task_id: _Optional[str] = ..., framework_id: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., tty: _Optional[bool] = ..., environment: _Optional[_Mapping[str, str]] = ..., size: _Optional[_Union[_executor_pb2.TerminalSize, _Mapping]] = ..., user: _Optional[str] = ..., working_directory: _Optional[str] = ...) -> None: ...
    START_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    start: ExecRequest.Start
    input: _executor_pb2.ProcessInput
    def __init__(self, start: _Optional[_Union[ExecRequest.Start, _Mapping]] = ..., input: _Optional[_Union[_executor_pb2.ProcessInput, _Mapping]] = ...) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ("start", "input")
    class Start(_message.Message):
        __slots__ = ("task_id", "framework_id", "size", "logs", "backpressure", "stdout_from", "stderr_from")
        TASK_ID_FIELD_NUMBER: _ClassVar[int]
        FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
        SIZE_FIELD_NUMBER: _ClassVar[int]
        LOGS_FIELD_NUMBER: _ClassVar[int]
        BACKPRESSURE_FIELD_NUMBER: _ClassVar[int]
        STDOUT_FROM_FIELD_NUMBER: _ClassVar[int]
        STDERR_FROM_FIELD_NUMBER: _ClassVar[int]
        task_id: str
        framework_id: str
        size: _executor_pb2.TerminalSize
        logs: bool
        backpressure: bool
        stdout_from: int
        stderr_from: int
        def __init__(self, task_id: _Optional[str] = ..., framework_id: _Optional[str] = ..., size: _Optional[_Union[_executor_pb2.TerminalSize, _Mapping]] = ..., logs: _Optional[bool] = ..., backpressure: _Optional[bool] = ..., stdout_from: _Optional[int] = ..., stderr_from: _Optional[int] = ...) -> None: ...
    START_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    start: AttachRequest.Start
    input: _executor_pb2.ProcessInput
    def __init__(self, start: _Optional[_Union[AttachRequest.Start, _Mapping]] = ..., input: _Optional[_Union[_executor_pb2.ProcessInput, _Mapping]] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("task_id", "framework_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    framework_id: str
    def __init__(self, task_id: _Optional[str] = ..., framework_id: _Optional[str] = ...) -> None: ...

class TaskUsage(_message.Message):
    __slots__ = ("task_id", "framework_id", "timestamp", "cpu_seconds", "cpu_user_seconds", "cpu_system_seconds", "cpu_periods", "cpu_throttled_periods", "cpu_throttled_seconds", "memory_bytes", "memory_peak_bytes", "memory_limit_bytes", "pids", "oom_kills", "resources")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CPU_USER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CPU_SYSTEM_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CPU_PERIODS_FIELD_NUMBER: _ClassVar[int]
    CPU_THROTTLED_PERIODS_FIELD_NUMBER: _ClassVar[int]
    CPU_THROTTLED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PEAK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    framework_id: str
    timestamp: float
    cpu_seconds: float
    cpu_user_seconds: float
    cpu_system_seconds: float
    cpu_periods: int
    cpu_throttled_periods: int
    cpu_throttled_seconds: float
    memory_bytes: int
    memory_peak_bytes: int
    memory_limit_bytes: int
    pids: int
    oom_kills: int
    resources: _containers.RepeatedCompositeFieldContainer[_common_pb2.Resource]
    def __init__(self, task_id: _Optional[str] = ..., framework_id: _Optional[str] = ..., timestamp: _Optional[float] = ..., cpu_seconds: _Optional[float] = ..., cpu_user_seconds: _Optional[float] = ..., cpu_system_seconds: _Optional[float] = ..., cpu_periods: _Optional[int] = ..., cpu_throttled_periods: _Optional[int] = ..., cpu_throttled_seconds: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., memory_peak_bytes: _Optional[int] = ..., memory_limit_bytes: _Optional[int] = ..., pids: _Optional[int] = ..., oom_kills: _Optional[int] = ..., resources: _Optional[_Iterable[_Union[_common_pb2.Resource, _Mapping]]] = ...) -> None: ...
