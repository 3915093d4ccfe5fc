"""container/process.py: the exit codes of a process that could not be started in
a container (Docker's, see the module docstring), and its spec. The real
processes are in the integration tests of the launch (test_executor.py), exec
(test_task_io.py) and health checks (test_health_checks.py)."""

from __future__ import annotations

import errno
import signal
from pathlib import Path

import pytest

from juggler.container import process
from juggler.container.process import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    EXIT_SETUP_FAILED,
    ProcessSpec,
    SetupError,
    exec_exit_code,
)
from juggler.container.spec import ContainerSpec
from juggler.v1 import common_pb2 as pb


def test_the_codes_are_dockers() -> None:
    assert (EXIT_SETUP_FAILED, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND) == (125, 126, 127)


@pytest.mark.parametrize(("err", "code"), [
    (errno.ENOENT, 127),  # no such command, or its '#!' interpreter is missing
    (errno.ENOTDIR, 127),  # a path component is a file
    (errno.EACCES, 126),  # no x bit, a directory, a noexec mount
    (errno.ENOEXEC, 126),  # neither a binary nor a script
    (errno.EISDIR, 126),
    (errno.ETXTBSY, 126),
    (errno.E2BIG, 126),
    (errno.EPERM, 126),
    (errno.ELOOP, 126),
])
def test_exec_errors_map_to_not_found_or_not_executable(err: int, code: int) -> None:
    assert exec_exit_code(err) == code


@pytest.mark.parametrize(("name", "error", "message"), [
    ("chdir '/x'", FileNotFoundError(errno.ENOENT, "No such file or directory"),
     "chdir '/x': No such file or directory"),
    ("run as user 'ghost'", LookupError("no user 'ghost'"), "run as user 'ghost': no user 'ghost'"),
    ("wait for the cgroup", SetupError("the executor went away"), "the executor went away"),
])
def test_a_step_says_which_step_failed_and_why(name: str, error: Exception,
                                               message: str) -> None:
    def fail() -> None:
        with process.step(name):
            raise error

    with pytest.raises(SetupError) as info:
        fail()
    assert str(info.value) == message


def test_the_spec_of_a_task_and_of_another_process_in_it() -> None:
    t = pb.TaskInfo(task_id="web.1", command=pb.CommandInfo(
        argv=["echo hi"], shell=True, user="nobody", working_directory="/srv",
        environment={"HOME": "/data"}), resources=[pb.Resource(name="cpus", scalar=1)])
    container = ContainerSpec.from_task(t)
    task = ProcessSpec.of_container(container)
    assert task.argv == ("/bin/sh", "-c", "echo hi")
    assert (task.cwd, task.user, task.home_from_task) == ("/srv", "nobody", True)
    assert task.env == container.env and task.death_signal == 0
    check = ProcessSpec.of_container(container, ["true"], death_signal=signal.SIGKILL)
    assert check.argv == ("true",) and check.death_signal == signal.SIGKILL
    # Through JSON, as the agent hands it to the exec helper.
    assert ProcessSpec.from_json(check.to_json()) == check


def test_a_missing_interpreter_is_named(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/no/such/sh -e\necho\n")
    assert process._missing_interpreter(str(script), {}) == (
        " (its interpreter '/no/such/sh', named on its '#!' line, is missing)")
    assert "'/no/such/sh'" in process._missing_interpreter("script", {"PATH": f"/x:{tmp_path}"})
    (tmp_path / "elf").write_bytes(b"\x7fELF\x02\x01")
    assert "dynamic loader" in process._missing_interpreter(str(tmp_path / "elf"), {})
    assert process._missing_interpreter(str(tmp_path / "nothing"), {}) == ""
    assert process._missing_interpreter("nothing", {"PATH": str(tmp_path)}) == ""
