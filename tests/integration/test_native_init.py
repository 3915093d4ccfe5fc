"""juggler-init (container/native/init.c) against launch.py's Python child:
the same tasks, through the real executor (tests/executor_harness.py), once
with each (JUGGLER_CONTAINER_INIT=python for the child), must see the same
container and fail the same way.

What a task sees is read from the inside by one probe (`PROBE`): every mount
(point, type, options), its ids, groups, capability sets, no_new_privs and
signal state, its limits, umask, OOM score, hostname, network sysctls and
lo's state, its environment, working directory and open fds, /dev and
/sys/fs/cgroup, and what it may write. Paths of the run's own sandbox are
replaced by SANDBOX. Failures compare the terminal update: state, exit code
and message.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from juggler.common.task_defaults import (
    CAP_ADD_LABEL,
    CAP_DROP_LABEL,
    NO_NEW_PRIVILEGES_LABEL,
    ULIMITS_LABEL,
)
from juggler.container import cgroups, host_view, native_init
from juggler.testing.task_python import PYTHON as TASK_PYTHON
from juggler.v1 import common_pb2 as pb
from tests.executor_harness import run_to_end, task_info

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups, mounts)"),
    pytest.mark.skipif(not native_init.built(),
                       reason="juggler-init is not built (scripts/setup builds it)"),
    pytest.mark.skipif(cgroups.detect() != 1 or not native_init._EXEC_KEEPS_CAPABILITIES,
                       reason="juggler-init makes containers on cgroup v1, for an executor "
                              "whose capabilities an execve keeps"),
]

PROBE = r"""
import json, os, socket, sys
def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return f"error {e.errno}"
def writable(path):
    try:
        with open(os.path.join(path, ".probe"), "w"):
            pass
        os.unlink(os.path.join(path, ".probe"))
        return True
    except OSError as e:
        return e.errno
mounts = []
for line in read("/proc/self/mountinfo").splitlines():
    left, _, right = line.partition(" - ")
    f, t = left.split(), right.split()
    mounts.append([f[4], f[5], t[0], t[2]])
status = dict(l.split(":", 1) for l in read("/proc/self/status").splitlines())
status = {k: v.strip() for k, v in status.items()}
old = os.umask(0)
print(json.dumps({
    "mounts": mounts,
    "status": {k: status.get(k) for k in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff",
                                          "CapBnd", "CapAmb", "NoNewPrivs", "SigBlk", "SigIgn",
                                          "SigCgt", "NSpid", "Seccomp")},
    "limits": read("/proc/self/limits"),
    "umask": old,
    "oom": read("/proc/self/oom_score_adj"),
    "hostname": socket.gethostname(),
    "sysctls": [read("/proc/sys/net/ipv4/ping_group_range"),
                read("/proc/sys/net/ipv4/ip_unprivileged_port_start")],
    "lo": read("/sys/class/net/lo/flags"),
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "fds": sorted(os.listdir("/proc/self/fd")),
    "dev": sorted(os.listdir("/dev")),
    "cgroup": sorted(os.listdir("/sys/fs/cgroup")),
    "sid": os.getsid(0) == os.getpid(),
    "ppid": os.getppid(),
    "writable": {p: writable(p) for p in ("/", "/etc", "/tmp", "/dev/shm", os.getcwd(),
                                          os.environ["MESOS_SANDBOX"])},
    "stdin": os.readlink("/proc/self/fd/0"),
    "beside_sandbox": sorted(os.listdir(os.path.dirname(os.environ["MESOS_SANDBOX"]))),
    "secret": read(sys.argv[1]) if len(sys.argv) > 1 else None,
}, sort_keys=True))
"""


def run_with(init: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             task: pb.TaskInfo, hidden: tuple[str, ...] = ()) -> tuple[pb.TaskStatus, str, str,
                                                                    str]:
    """Run `task` with `init` ("python" or "juggler-init") in `tmp_path/init`
    (its sandbox below), hiding `hidden` (WHERE: that directory) as an agent
    hides its work dir: (terminal update, stdout and stderr with that
    directory's path as WHERE, executor log)."""
    monkeypatch.setenv(native_init.ENGINE_ENV, "python" if init == "python" else "native")
    where = tmp_path / init
    where.mkdir()
    monkeypatch.setenv(host_view.HIDE_ENV, json.dumps(
        [h.replace("WHERE", str(where)) for h in hidden]))
    done, out, err = run_to_end(where, task)
    log = (where / "sandbox" / "executor.log").read_text()
    # The launch took the init asked for ("container started" or "launch failed").
    assert f'"init": "{init}"' in log, log
    return done, out.replace(str(where), "WHERE"), err.replace(str(where), "WHERE"), log


def both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make,
         hidden: tuple[str, ...] = ()) -> tuple[tuple, tuple]:
    """`make()` (a fresh TaskInfo each time, both with the first's id: the
    hostname and environment name it) through each init."""
    first = make()
    second = make()
    second.task_id = first.task_id
    return (run_with("python", tmp_path, monkeypatch, first, hidden),
            run_with("juggler-init", tmp_path, monkeypatch, second, hidden))


def probe_task(**kw) -> pb.TaskInfo:
    task = task_info("", shell=False, **kw)
    task.command.argv[:] = [TASK_PYTHON, "-c", PROBE]
    return task


def seen(result: tuple) -> dict:
    done, out, err, log = result
    assert done.state == pb.TASK_FINISHED, (done, err, log)
    return json.loads(out)


def test_a_host_filesystem_task_sees_the_same_container(tmp_path, monkeypatch) -> None:
    python, native = both(tmp_path, monkeypatch, probe_task)
    a, b = seen(python), seen(native)
    # What is compared is worth comparing: the view is the hardened one.
    assert a["writable"]["/etc"] == 30 and a["writable"]["/tmp"] is True  # EROFS; /tmp is own
    assert a["status"]["CapBnd"] == "00000000a80425fb" and a["oom"].strip() == "0"
    assert any(m[0] == "/sys/fs/cgroup" for m in a["mounts"])
    for key in a:
        assert a[key] == b[key], key


def test_the_same_with_an_agent_s_hidden_paths_around_a_sandbox_outside_tmp(
        monkeypatch, outside_tmp) -> None:
    """As an agent runs tasks: the sandbox below its hidden work dir (a cover
    with the way to the sandbox in it), /run/juggler, and a file covered."""
    secret = outside_tmp / "secret"
    secret.write_text("s3cret\n")
    hidden = ("WHERE", "/run/juggler", str(secret))

    def make() -> pb.TaskInfo:
        task = probe_task()
        task.command.argv.append(str(secret))
        return task

    python, native = both(outside_tmp, monkeypatch, make, hidden)
    a, b = seen(python), seen(native)
    points = [m[0] for m in a["mounts"]]
    assert "WHERE" in points and "WHERE/sandbox" in points and str(secret) in points
    # The work dir shows only the way to the sandbox; the secret cannot be opened.
    assert a["beside_sandbox"] == ["sandbox"] and a["secret"] == "error 13"  # EACCES
    assert a["writable"]["/tmp"] is True and a["writable"]["WHERE/sandbox"] is True
    for key in a:
        assert a[key] == b[key], key


def test_the_same_with_a_user_capabilities_limits_and_no_new_privileges(
        tmp_path, monkeypatch) -> None:
    def make() -> pb.TaskInfo:
        task = probe_task(hostname="probe-host")
        task.command.user = "nobody"
        task.command.environment["HOME"] = "/nowhere"
        task.labels.update({CAP_ADD_LABEL: "NET_ADMIN", CAP_DROP_LABEL: "CHOWN",
                            NO_NEW_PRIVILEGES_LABEL: "true", ULIMITS_LABEL: "nofile=1000:2000"})
        return task

    a, b = (seen(r) for r in both(tmp_path, monkeypatch, make))
    assert a["status"]["Uid"].split()[0] == "65534" and a["hostname"] == "probe-host"
    assert a["status"]["NoNewPrivs"] == "1"
    assert "Max open files            1000                 2000" in a["limits"]
    for key in a:
        assert a[key] == b[key], key


def test_a_host_network_task_sees_the_same_container(tmp_path, monkeypatch) -> None:
    def make() -> pb.TaskInfo:
        return probe_task(network=pb.NETWORK_HOST)

    a, b = (seen(r) for r in both(tmp_path, monkeypatch, make))
    assert a["lo"] == b["lo"]
    for key in a:
        assert a[key] == b[key], key


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A directory a host-filesystem task sees (its /tmp is its own)."""
    path = Path(tempfile.mkdtemp(prefix="native-init-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("argv, working_dir, labels, code, words", [
    (["no-such-command-here"], "", {}, 127,
     "exec 'no-such-command-here': No such file or directory"),
    (["DIR/plain"], "", {}, 126, "exec 'DIR/plain': Permission denied"),
    (["DIR/binary"], "", {}, 126, "exec 'DIR/binary': Exec format error"),
    (["true"], "/no/such/dir", {}, 125, "working directory '/no/such/dir': no such directory"),
    # Above fs.nr_open (1048576): refused even to root; CPython's words, and the agent's.
    (["true"], "", {ULIMITS_LABEL: "nofile=2000000:2000000"}, 125,
     "set the ulimits: set ulimit nofile=2000000:2000000: not allowed to raise maximum limit "
     "(the agent's own hard limit is"),
])
def test_a_launch_that_fails_fails_the_same_way(tmp_path, monkeypatch, outside_tmp, argv,
                                                  working_dir, labels, code, words) -> None:
    (outside_tmp / "plain").write_text("not executable\n")  # 0644
    (outside_tmp / "binary").write_bytes(b"\x00\x01not a program")
    (outside_tmp / "binary").chmod(0o755)
    argv = [a.replace("DIR", str(outside_tmp)) for a in argv]
    words = words.replace("DIR", str(outside_tmp))

    def make() -> pb.TaskInfo:
        task = task_info("", shell=False)
        task.command.argv[:] = argv
        if working_dir:
            task.command.working_directory = working_dir
        task.labels.update(labels)
        return task

    python, native = both(tmp_path, monkeypatch, make)
    for done, _, _, log in (python, native):
        assert done.state == pb.TASK_FAILED, log
        assert done.reason == pb.REASON_CONTAINER_LAUNCH_FAILED
        assert done.exit_code == code and words in done.message, done
    assert python[0].message == native[0].message


def test_a_script_whose_interpreter_is_missing_names_it_either_way(tmp_path, monkeypatch,
                                                                   outside_tmp) -> None:
    script = outside_tmp / "script"
    script.write_text("#!/no/such/interpreter -x\necho hi\n")
    script.chmod(0o755)

    def make() -> pb.TaskInfo:
        task = task_info("", shell=False)
        task.command.argv[:] = [str(script)]
        return task

    python, native = both(tmp_path, monkeypatch, make)
    assert python[0].exit_code == native[0].exit_code == 127
    assert "its interpreter '/no/such/interpreter'" in native[0].message
    assert python[0].message == native[0].message
