from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NetworkMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NETWORK_MODE_UNSPECIFIED: _ClassVar[NetworkMode]
    NETWORK_NONE: _ClassVar[NetworkMode]
    NETWORK_HOST: _ClassVar[NetworkMode]
    NETWORK_BRIDGE: _ClassVar[NetworkMode]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STAGING: _ClassVar[TaskState]
    TASK_STARTING: _ClassVar[TaskState]
    TASK_RUNNING: _ClassVar[TaskState]
    TASK_KILLING: _ClassVar[TaskState]
    TASK_FINISHED: _ClassVar[TaskState]
    TASK_FAILED: _ClassVar[TaskState]
    TASK_KILLED: _ClassVar[TaskState]
    TASK_ERROR: _ClassVar[TaskState]
    TASK_LOST: _ClassVar[TaskState]
    TASK_DROPPED: _ClassVar[TaskState]
    TASK_UNREACHABLE: _ClassVar[TaskState]
    TASK_GONE: _ClassVar[TaskState]
    TASK_GONE_BY_OPERATOR: _ClassVar[TaskState]
    TASK_UNKNOWN: _ClassVar[TaskState]

class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_UNSPECIFIED: _ClassVar[Reason]
    REASON_COMMAND_EXITED: _ClassVar[Reason]
    REASON_CONTAINER_LIMITATION_MEMORY: _ClassVar[Reason]
    REASON_CONTAINER_LAUNCH_FAILED: _ClassVar[Reason]
    REASON_EXECUTOR_TERMINATED: _ClassVar[Reason]
    REASON_TASK_KILLED_DURING_LAUNCH: _ClassVar[Reason]
    REASON_TASK_KILLED: _ClassVar[Reason]
    REASON_TASK_INVALID: _ClassVar[Reason]
    REASON_INVALID_OFFERS: _ClassVar[Reason]
    REASON_TASK_UNKNOWN: _ClassVar[Reason]
    REASON_AGENT_REMOVED: _ClassVar[Reason]
    REASON_AGENT_DISCONNECTED: _ClassVar[Reason]
    REASON_AGENT_UNKNOWN: _ClassVar[Reason]
    REASON_FRAMEWORK_REMOVED: _ClassVar[Reason]
    REASON_RECONCILIATION: _ClassVar[Reason]
    REASON_TASK_UNHEALTHY: _ClassVar[Reason]
    REASON_TASK_HEALTH_CHECK_STATUS_UPDATED: _ClassVar[Reason]
    REASON_CONTAINER_LIMITATION_PIDS: _ClassVar[Reason]
    REASON_EXECUTOR_UNREACHABLE: _ClassVar[Reason]
    REASON_AGENT_RESTARTED: _ClassVar[Reason]
    REASON_AGENT_UNREACHABLE: _ClassVar[Reason]
    REASON_AGENT_DRAINING: _ClassVar[Reason]
    REASON_CONTAINER_LIMITATION: _ClassVar[Reason]

class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOURCE_UNSPECIFIED: _ClassVar[Source]
    SOURCE_MASTER: _ClassVar[Source]
    SOURCE_AGENT: _ClassVar[Source]
    SOURCE_EXECUTOR: _ClassVar[Source]
NETWORK_MODE_UNSPECIFIED: NetworkMode
NETWORK_NONE: NetworkMode
NETWORK_HOST: NetworkMode
NETWORK_BRIDGE: NetworkMode
TASK_STATE_UNSPECIFIED: TaskState
TASK_STAGING: TaskState
TASK_STARTING: TaskState
TASK_RUNNING: TaskState
TASK_KILLING: TaskState
TASK_FINISHED: TaskState
TASK_FAILED: TaskState
TASK_KILLED: TaskState
TASK_ERROR: TaskState
TASK_LOST: TaskState
TASK_DROPPED: TaskState
TASK_UNREACHABLE: TaskState
TASK_GONE: TaskState
TASK_GONE_BY_OPERATOR: TaskState
TASK_UNKNOWN: TaskState
REASON_UNSPECIFIED: Reason
REASON_COMMAND_EXITED: Reason
REASON_CONTAINER_LIMITATION_MEMORY: Reason
REASON_CONTAINER_LAUNCH_FAILED: Reason
REASON_EXECUTOR_TERMINATED: Reason
REASON_TASK_KILLED_DURING_LAUNCH: Reason
REASON_TASK_KILLED: Reason
REASON_TASK_INVALID: Reason
REASON_INVALID_OFFERS: Reason
REASON_TASK_UNKNOWN: Reason
REASON_AGENT_REMOVED: Reason
REASON_AGENT_DISCONNECTED: Reason
REASON_AGENT_UNKNOWN: Reason
REASON_FRAMEWORK_REMOVED: Reason
REASON_RECONCILIATION: Reason
REASON_TASK_UNHEALTHY: Reason
REASON_TASK_HEALTH_CHECK_STATUS_UPDATED: Reason
REASON_CONTAINER_LIMITATION_PIDS: Reason
REASON_EXECUTOR_UNREACHABLE: Reason
REASON_AGENT_RESTARTED: Reason
REASON_AGENT_UNREACHABLE: Reason
REASON_AGENT_DRAINING: Reason
REASON_CONTAINER_LIMITATION: Reason
SOURCE_UNSPECIFIED: Source
SOURCE_MASTER: Source
SOURCE_AGENT: Source
SOURCE_EXECUTOR: Source
TERMINAL_FIELD_NUMBER: _ClassVar[int]
terminal: _descriptor.FieldDescriptor

class Resource(_message.Message):
    __slots__ = ("name", "scalar", "role", "ranges")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCALAR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    scalar: float
    role: str
    ranges: Ranges
    def __init__(self, name: _Optional[str] = ..., scalar: _Optional[float] = ..., role: _Optional[str] = ..., ranges: _Optional[_Union[Ranges, _Mapping]] = ...) -> None: ...

class Range(_message.Message):
    __slots__ = ("begin", "end")
    BEGIN_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    begin: int
    end: int
    def __init__(self, begin: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class Ranges(_message.Message):
    __slots__ = ("range",)
    RANGE_FIELD_NUMBER: _ClassVar[int]
    range: _containers.RepeatedCompositeFieldContainer[Range]
    def __init__(self, range: _Optional[_Iterable[_Union[Range, _Mapping]]] = ...) -> None: ...

class CommandInfo(_message.Message):
    __slots__ = ("argv", "shell", "environment", "user", "working_directory", "secret_environment")
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARGV_FIELD_NUMBER: _ClassVar[int]
    SHELL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    SECRET_ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    shell: bool
    environment: _containers.ScalarMap[str, str]
    user: str
    working_directory: str
    secret_environment: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, argv: _Optional[_Iterable[str]] = ..., shell: _Optional[bool] = ..., environment: _Optional[_Mapping[str, str]] = ..., user: _Optional[str] = ..., working_directory: _Optional[str] = ..., secret_environment: _Optional[_Iterable[str]] = ...) -> None: ...

class PortMapping(_message.Message):
    __slots__ = ("host_port", "container_port", "protocol", "name")
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    host_port: int
    container_port: int
    protocol: str
    name: str
    def __init__(self, host_port: _Optional[int] = ..., container_port: _Optional[int] = ..., protocol: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ContainerInfo(_message.Message):
    __slots__ = ("rootfs", "image", "network", "hostname", "tty", "writable_layer", "network_name", "port_mappings", "writable_host_filesystem")
    ROOTFS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_LAYER_FIELD_NUMBER: _ClassVar[int]
    NETWORK_NAME_FIELD_NUMBER: _ClassVar[int]
    PORT_MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_HOST_FILESYSTEM_FIELD_NUMBER: _ClassVar[int]
    rootfs: str
    image: str
    network: NetworkMode
    hostname: str
    tty: bool
    writable_layer: str
    network_name: str
    port_mappings: _containers.RepeatedCompositeFieldContainer[PortMapping]
    writable_host_filesystem: bool
    def __init__(self, rootfs: _Optional[str] = ..., image: _Optional[str] = ..., network: _Optional[_Union[NetworkMode, str]] = ..., hostname: _Optional[str] = ..., tty: _Optional[bool] = ..., writable_layer: _Optional[str] = ..., network_name: _Optional[str] = ..., port_mappings: _Optional[_Iterable[_Union[PortMapping, _Mapping]]] = ..., writable_host_filesystem: _Optional[bool] = ...) -> None: ...

class KillPolicy(_message.Message):
    __slots__ = ("grace_period_seconds", "signal")
    GRACE_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    grace_period_seconds: float
    signal: str
    def __init__(self, grace_period_seconds: _Optional[float] = ..., signal: _Optional[str] = ...) -> None: ...

class HealthCheck(_message.Message):
    __slots__ = ("command", "http", "tcp", "delay_seconds", "interval_seconds", "timeout_seconds", "consecutive_failures", "kill_when_unhealthy", "grace_period_seconds")
    class Command(_message.Message):
        __slots__ = ("argv", "shell")
        ARGV_FIELD_NUMBER: _ClassVar[int]
        SHELL_FIELD_NUMBER: _ClassVar[int]
        argv: _containers.RepeatedScalarFieldContainer[str]
        shell: bool
        def __init__(self, argv: _Optional[_Iterable[str]] = ..., shell: _Optional[bool] = ...) -> None: ...
    class Http(_message.Message):
        __slots__ = ("port", "path", "scheme")
        PORT_FIELD_NUMBER: _ClassVar[int]
        PATH_FIELD_NUMBER: _ClassVar[int]
        SCHEME_FIELD_NUMBER: _ClassVar[int]
        port: int
        path: str
        scheme: str
        def __init__(self, port: _Optional[int] = ..., path: _Optional[str] = ..., scheme: _Optional[str] = ...) -> None: ...
    class Tcp(_message.Message):
        __slots__ = ("port",)
        PORT_FIELD_NUMBER: _ClassVar[int]
        port: int
        def __init__(self, port: _Optional[int] = ...) -> None: ...
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    TCP_FIELD_NUMBER: _ClassVar[int]
    DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    KILL_WHEN_UNHEALTHY_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    command: HealthCheck.Command
    http: HealthCheck.Http
    tcp: HealthCheck.Tcp
    delay_seconds: float
    interval_seconds: float
    timeout_seconds: float
    consecutive_failures: int
    kill_when_unhealthy: bool
    grace_period_seconds: float
    def __init__(self, command: _Optional[_Union[HealthCheck.Command, _Mapping]] = ..., http: _Optional[_Union[HealthCheck.Http, _Mapping]] = ..., tcp: _Optional[_Union[HealthCheck.Tcp, _Mapping]] = ..., delay_seconds: _Optional[float] = ..., interval_seconds: _Optional[float] = ..., timeout_seconds: _Optional[float] = ..., consecutive_failures: _Optional[int] = ..., kill_when_unhealthy: _Optional[bool] = ..., grace_period_seconds: _Optional[float] = ...) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("name", "task_id", "agent_id", "resources", "command", "container", "kill_policy", "health_check", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    KILL_POLICY_FIELD_NUMBER: _ClassVar[int]
    HEALTH_CHECK_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    task_id: str
    agent_id: str
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    command: CommandInfo
    container: ContainerInfo
    kill_policy: KillPolicy
    health_check: HealthCheck
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., task_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., command: _Optional[_Union[CommandInfo, _Mapping]] = ..., container: _Optional[_Union[ContainerInfo, _Mapping]] = ..., kill_policy: _Optional[_Union[KillPolicy, _Mapping]] = ..., health_check: _Optional[_Union[HealthCheck, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TaskStatus(_message.Message):
    __slots__ = ("task_id", "state", "reason", "message", "source", "agent_id", "framework_id", "uuid", "timestamp", "healthy", "exit_code", "pid", "oom_killed", "ip_addresses")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLED_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: TaskState
    reason: Reason
    message: str
    source: Source
    agent_id: str
    framework_id: str
    uuid: bytes
    timestamp: float
    healthy: bool
    exit_code: int
    pid: int
    oom_killed: bool
    ip_addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., reason: _Optional[_Union[Reason, str]] = ..., message: _Optional[str] = ..., source: _Optional[_Union[Source, str]] = ..., agent_id: _Optional[str] = ..., framework_id: _Optional[str] = ..., uuid: _Optional[bytes] = ..., timestamp: _Optional[float] = ..., healthy: _Optional[bool] = ..., exit_code: _Optional[int] = ..., pid: _Optional[int] = ..., oom_killed: _Optional[bool] = ..., ip_addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class FrameworkInfo(_message.Message):
    __slots__ = ("id", "name", "user", "roles", "failover_timeout", "hostname", "capabilities", "labels", "webui_url", "principal")
    class Capability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CAPABILITY_UNSPECIFIED: _ClassVar[FrameworkInfo.Capability]
        PARTITION_AWARE: _ClassVar[FrameworkInfo.Capability]
        MULTI_ROLE: _ClassVar[FrameworkInfo.Capability]
    CAPABILITY_UNSPECIFIED: FrameworkInfo.Capability
    PARTITION_AWARE: FrameworkInfo.Capability
    MULTI_ROLE: FrameworkInfo.Capability
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    WEBUI_URL_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    user: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    failover_timeout: float
    hostname: str
    capabilities: _containers.RepeatedScalarFieldContainer[FrameworkInfo.Capability]
    labels: _containers.ScalarMap[str, str]
    webui_url: str
    principal: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., user: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., failover_timeout: _Optional[float] = ..., hostname: _Optional[str] = ..., capabilities: _Optional[_Iterable[_Union[FrameworkInfo.Capability, str]]] = ..., labels: _Optional[_Mapping[str, str]] = ..., webui_url: _Optional[str] = ..., principal: _Optional[str] = ...) -> None: ...

class AgentInfo(_message.Message):
    __slots__ = ("id", "hostname", "resources", "attributes", "address", "metrics_address", "principal")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    id: str
    hostname: str
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    attributes: _containers.ScalarMap[str, str]
    address: str
    metrics_address: str
    principal: str
    def __init__(self, id: _Optional[str] = ..., hostname: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., address: _Optional[str] = ..., metrics_address: _Optional[str] = ..., principal: _Optional[str] = ...) -> None: ...

class Offer(_message.Message):
    __slots__ = ("id", "framework_id", "agent_id", "hostname", "resources", "role", "agent_address", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    framework_id: str
    agent_id: str
    hostname: str
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    role: str
    agent_address: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., framework_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., hostname: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., role: _Optional[str] = ..., agent_address: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Filters(_message.Message):
    __slots__ = ("refuse_seconds",)
    REFUSE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    refuse_seconds: float
    def __init__(self, refuse_seconds: _Optional[float] = ...) -> None: ...
