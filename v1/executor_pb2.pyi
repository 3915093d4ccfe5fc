from juggler.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecutorMessage(_message.Message):
    __slots__ = ("hello", "update")
    class Hello(_message.Message):
        __slots__ = ("framework_id", "task_id", "pid", "container_pid")
        FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
        TASK_ID_FIELD_NUMBER: _ClassVar[int]
        PID_FIELD_NUMBER: _ClassVar[int]
        CONTAINER_PID_FIELD_NUMBER: _ClassVar[int]
        framework_id: str
        task_id: str
        pid: int
        container_pid: int
        def __init__(self, framework_id: _Optional[str] = ..., task_id: _Optional[str] = ..., pid: _Optional[int] = ..., container_pid: _Optional[int] = ...) -> None: ...
    class Update(_message.Message):
        __slots__ = ("status",)
        STATUS_FIELD_NUMBER: _ClassVar[int]
        status: _common_pb2.TaskStatus
        def __init__(self, status: _Optional[_Union[_common_pb2.TaskStatus, _Mapping]] = ...) -> None: ...
    HELLO_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    hello: ExecutorMessage.Hello
    update: ExecutorMessage.Update
    def __init__(self, hello: _Optional[_Union[ExecutorMessage.Hello, _Mapping]] = ..., update: _Optional[_Union[ExecutorMessage.Update, _Mapping]] = ...) -> None: ...

class AgentToExecutor(_message.Message):
    __slots__ = ("ack", "kill", "shutdown", "signal")
    class Ack(_message.Message):
        __slots__ = ("uuid",)
        UUID_FIELD_NUMBER: _ClassVar[int]
        uuid: bytes
        def __init__(self, uuid: _Optional[bytes] = ...) -> None: ...
    class Kill(_message.Message):
        __slots__ = ("kill_policy",)
        KILL_POLICY_FIELD_NUMBER: _ClassVar[int]
        kill_policy: _common_pb2.KillPolicy
        def __init__(self, kill_policy: _Optional[_Union[_common_pb2.KillPolicy, _Mapping]] = ...) -> None: ...
    class Shutdown(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    class Signal(_message.Message):
        __slots__ = ("signal",)
        SIGNAL_FIELD_NUMBER: _ClassVar[int]
        signal: int
        def __init__(self, signal: _Optional[int] = ...) -> None: ...
    ACK_FIELD_NUMBER: _ClassVar[int]
    KILL_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    ack: AgentToExecutor.Ack
    kill: AgentToExecutor.Kill
    shutdown: AgentToExecutor.Shutdown
    signal: AgentToExecutor.Signal
    def __init__(self, ack: _Optional[_Union[AgentToExecutor.Ack, _Mapping]] = ..., kill: _Optional[_Union[AgentToExecutor.Kill, _Mapping]] = ..., shutdown: _Optional[_Union[AgentToExecutor.Shutdown, _Mapping]] = ..., signal: _Optional[_Union[AgentToExecutor.Signal, _Mapping]] = ...) -> None: ...

class ExecutorSpec(_message.Message):
    __slots__ = ("framework", "task", "agent_id", "agent_socket", "cgroup", "layers", "image_id")
    FRAMEWORK_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_SOCKET_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    framework: _common_pb2.FrameworkInfo
    task: _common_pb2.TaskInfo
    agent_id: str
    agent_socket: str
    cgroup: str
    layers: _containers.RepeatedScalarFieldContainer[str]
    image_id: str
    def __init__(self, framework: _Optional[_Union[_common_pb2.FrameworkInfo, _Mapping]] = ..., task: _Optional[_Union[_common_pb2.TaskInfo, _Mapping]] = ..., agent_id: _Optional[str] = ..., agent_socket: _Optional[str] = ..., cgroup: _Optional[str] = ..., layers: _Optional[_Iterable[str]] = ..., image_id: _Optional[str] = ...) -> None: ...

class AttachStart(_message.Message):
    __slots__ = ("logs", "size", "backpressure", "stdout_from", "stderr_from")
    LOGS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BACKPRESSURE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FROM_FIELD_NUMBER: _ClassVar[int]
    STDERR_FROM_FIELD_NUMBER: _ClassVar[int]
    logs: bool
    size: TerminalSize
    backpressure: bool
    stdout_from: int
    stderr_from: int
    def __init__(self, logs: _Optional[bool] = ..., size: _Optional[_Union[TerminalSize, _Mapping]] = ..., backpressure: _Optional[bool] = ..., stdout_from: _Optional[int] = ..., stderr_from: _Optional[int] = ...) -> None: ...

class TerminalSize(_message.Message):
    __slots__ = ("rows", "columns")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    columns: int
    def __init__(self, rows: _Optional[int] = ..., columns: _Optional[int] = ...) -> None: ...

class ProcessInput(_message.Message):
    __slots__ = ("stdin", "resize", "close_stdin")
    STDIN_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    CLOSE_STDIN_FIELD_NUMBER: _ClassVar[int]
    stdin: bytes
    resize: TerminalSize
    close_stdin: bool
    def __init__(self, stdin: _Optional[bytes] = ..., resize: _Optional[_Union[TerminalSize, _Mapping]] = ..., close_stdin: _Optional[bool] = ...) -> None: ...

class ProcessOutput(_message.Message):
    __slots__ = ("stdout", "stderr", "exit_code", "stdout_lost", "stderr_lost", "message")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_LOST_FIELD_NUMBER: _ClassVar[int]
    STDERR_LOST_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    exit_code: int
    stdout_lost: int
    stderr_lost: int
    message: str
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit_code: _Optional[int] = ..., stdout_lost: _Optional[int] = ..., stderr_lost: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
