"""Docker's --init, --security-opt no-new-privileges, --cap-add/--cap-drop,
--ulimit and a terminal's TERM, on real containers.

Each test runs a task through the real executor (tests/executor_harness.py)
with the labels those flags become (common/task_defaults.py) and checks what a
user would: who reaps orphans, whether a setuid binary gains root, the
capability sets and limits in /proc, the exit code. The CLI and the Docker API
that set the labels are covered in test_containers_cli.py and
test_docker_cli.py (image tasks).
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
from pathlib import Path

import pytest

from juggler.container import capabilities as caps
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.v1 import common_pb2 as pb
from tests.executor_harness import executor, task_info, wait_until
from tests.executor_harness import run_to_end as run

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups, mounts)"),
]

# Prints who it runs as and its privileges: made setuid-root below. busybox
# cannot serve: it drops a setuid bit for every applet but su and friends.
IDS_C = r"""
#include <stdio.h>
#include <string.h>
int main(void) {
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Uid:", 4) || !strncmp(line, "NoNewPrivs:", 11) ||
            !strncmp(line, "CapEff:", 7))
            fputs(line, stdout);
    return 0;
}
"""
# Two orphans that end once pid 1's command is `sleep 1000` (so the shell
# before the exec cannot have reaped them): their parent is then whoever
# reaps for the pid namespace, pid 1.
WAITER = 'until ps -o args | grep -q "^[s]leep 1000"; do sleep 0.01; done'
ORPHANS = f"(sh -c '{WAITER}' &); (sh -c '{WAITER}' &); touch /tmp/forked; exec sleep 1000"


@pytest.fixture(scope="module")
def busybox(tmp_path_factory) -> Path:
    """busybox, and /bin/ids: a static program, setuid root."""
    root = make_busybox_rootfs(tmp_path_factory.mktemp("privileges") / "rootfs")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler with a static libc (scripts/setup: gcc, libc6-dev)")
    source = root.parent / "ids.c"
    source.write_text(IDS_C)
    subprocess.run([cc, "-static", "-Os", "-o", str(root / "bin" / "ids"), str(source)],
                   check=True, capture_output=True, timeout=60)
    os.chown(root / "bin" / "ids", 0, 0)
    (root / "bin" / "ids").chmod(0o4755)
    return root


def needs_tini() -> None:
    if shutil.which("tini-static", path="/usr/local/bin:/usr/bin:/bin") is None:
        pytest.skip("needs tini-static (Debian: tini; scripts/setup installs it)")


def labelled(task: pb.TaskInfo, **labels: str) -> pb.TaskInfo:
    task.labels.update({f"juggler.{k}": v for k, v in labels.items()})
    return task



def status_lines(text: str) -> dict[str, list[str]]:
    return {k: v.split() for k, _, v in (line.partition(":") for line in text.splitlines())
            if v}


# -- --init -----------------------------------------------------------------------------


def _children(pid: int) -> list[tuple[int, str, str]]:
    """(pid, state, comm) of every process whose parent is `pid`, from the host's /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, _, rest = f.read().rpartition(")")
        except OSError:
            continue
        fields = rest.split()
        if int(fields[1]) == pid:
            out.append((int(entry), fields[0], head.partition("(")[2]))
    return out


def _cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


@pytest.mark.parametrize("mode", ["rootfs", "hostfs", "rootfs-without-init"])
def test_init_reaps_the_orphans_pid_1_would_leave_as_zombies(tmp_path, busybox, mode):
    init = mode != "rootfs-without-init"
    if init:
        needs_tini()
    rootfs = busybox if mode != "hostfs" else None
    task = task_info("", shell=False, rootfs=rootfs)
    task.command.argv[:] = ["sh", "-c", ORPHANS]
    task.kill_policy.grace_period_seconds = 600   # only SIGTERM can end it in time
    if init:
        labelled(task, init="true")

    async def scenario():
        async with executor(tmp_path, task) as r:
            running = await r.agent.wait_state(pb.TASK_RUNNING)
            # /tmp is the writable layer's, or on the host's filesystem the
            # task's private one, <sandbox>/tmp (container/host_view.py).
            forked = r.sandbox / ("rootfs/upper/tmp" if rootfs else "tmp") / "forked"
            await wait_until(forked.exists, "the orphans to be forked")
            pid1 = running.pid
            if not init:
                # pid 1 is `sleep 1000`, which never waits: both orphans stay zombies
                # for the task's life.
                def zombies() -> list[str]:
                    return [comm for _, state, comm in _children(pid1) if state == "Z"]

                await wait_until(lambda: len(zombies()) == 2, "two zombies under pid 1")
                assert zombies() == ["sh", "sh"]
                await r.agent.kill(grace=0)
                return await r.agent.wait_terminal()
            argv = _cmdline(pid1)
            tini = "/sbin/docker-init" if rootfs else "/usr/bin/tini-static"
            assert argv[:2] in ([tini, "--"], [os.path.realpath(tini), "--"]), argv
            assert argv[2:] == ["sh", "-c", ORPHANS]
            # Reaped: the only child left is the command, asleep.
            await wait_until(lambda: [(s, c) for _, s, c in _children(pid1)] == [
                ("S", "sleep")], "tini to reap the orphans")
            # A stop's SIGTERM reaches the command through tini (sleep dies of it),
            # long before the 600 s grace period's SIGKILL.
            await r.agent.kill()
            return await r.agent.wait_terminal()

    done = asyncio.run(scenario())
    assert done.state == pb.TASK_KILLED, done
    if init:
        assert done.exit_code == 128 + 15, done   # tini exits as its child did


@pytest.mark.parametrize(("command", "code"), [("exit 3", 3), ("exec nonexistent", 127)])
def test_init_passes_the_command_s_exit_code_through(tmp_path, busybox, command, code):
    needs_tini()
    done, _, err = run(tmp_path, labelled(task_info(command, rootfs=busybox), init="true"))
    assert done.state == pb.TASK_FAILED and done.exit_code == code, (done, err)
    assert done.reason == pb.REASON_COMMAND_EXITED


def test_init_is_read_only_and_the_image_s_sbin_is_not_the_host_s(tmp_path, busybox):
    needs_tini()
    task = labelled(task_info("cat /proc/self/mountinfo; echo x > /sbin/docker-init; "
                              "echo write=$?; ls /sbin", rootfs=busybox), init="true")
    done, out, _ = run(tmp_path, task)
    assert done.state == pb.TASK_FINISHED, done
    line = next(ln for ln in out.splitlines() if " /sbin/docker-init " in ln)
    assert line.split()[5].startswith("ro"), line
    assert "write=1" in out and out.split("write=1\n")[1].split() == ["docker-init"]
    assert not (busybox / "sbin" / "docker-init").exists()      # the lower dir untouched


# -- no_new_privs ------------------------------------------------------------------------


@pytest.mark.parametrize("nnp", [False, True])
def test_a_setuid_binary_gains_root_unless_no_new_privileges(tmp_path, busybox, nnp):
    task = task_info("", shell=False, rootfs=busybox)
    task.command.argv[:] = ["/bin/ids"]
    task.command.user = "1000"
    if nnp:
        labelled(task, no_new_privileges="true")
    done, out, err = run(tmp_path, task)
    assert done.state == pb.TASK_FINISHED, (done, err)
    status = status_lines(out)
    real, effective = status["Uid"][0], status["Uid"][1]
    assert real == "1000"
    if nnp:   # --security-opt no-new-privileges: the setuid bit changes nothing
        assert (effective, status["NoNewPrivs"], int(status["CapEff"][0], 16)) == (
            "1000", ["1"], 0)
    else:     # Docker's default: root, with the bounding set's capabilities
        assert (effective, status["NoNewPrivs"]) == ("0", ["0"])
        assert int(status["CapEff"][0], 16) == caps.DEFAULT_MASK


# -- capabilities --------------------------------------------------------------------------


def test_cap_add_and_cap_drop_change_docker_s_set(tmp_path, busybox):
    task = labelled(task_info("grep -E '^Cap' /proc/self/status", rootfs=busybox),
                    cap_add="net_admin,CAP_SYS_PTRACE", cap_drop="chown,NET_RAW")
    done, out, _ = run(tmp_path, task)
    assert done.state == pb.TASK_FINISHED, done
    masks = {k: int(v[0], 16) for k, v in status_lines(out).items()}
    expected = (caps.DEFAULT - {"CHOWN", "NET_RAW"}) | {"NET_ADMIN", "SYS_PTRACE"}
    for key in ("CapBnd", "CapPrm", "CapEff"):
        assert caps.names(masks[key]) == expected, key
    assert masks["CapInh"] == masks["CapAmb"] == 0


def test_drop_all_leaves_root_nothing_and_a_user_still_switches(tmp_path, busybox):
    command = "id -u; grep -E '^Cap(Bnd|Eff)' /proc/self/status"
    done, out, _ = run(tmp_path, labelled(task_info(command, rootfs=busybox), cap_drop="ALL"))
    assert done.state == pb.TASK_FINISHED, done
    assert out.splitlines()[0] == "0"
    assert {k: int(v[0], 16) for k, v in status_lines(out).items()} == {"CapBnd": 0,
                                                                        "CapEff": 0}
    # Without SETUID and SETGID the switch to the user still happens (runc's
    # order: the user first, the other sets after); the setuid binary then
    # gains euid 0 but only the bounding set, which is empty.
    task = task_info("", shell=False, rootfs=busybox)
    task.command.argv[:] = ["/bin/ids"]
    task.command.user = "1000"
    (tmp_path / "user").mkdir()
    done, out, err = run(tmp_path / "user", labelled(task, cap_drop="setuid,setgid"))
    assert done.state == pb.TASK_FINISHED, (done, err)
    status = status_lines(out)
    assert status["Uid"][:2] == ["1000", "0"]
    assert caps.names(int(status["CapEff"][0], 16)) == caps.DEFAULT - {"SETUID", "SETGID"}


# -- ulimits -----------------------------------------------------------------------------


def _limits(text: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in text.splitlines()[1:]:
        parts = line[26:].split()
        if len(parts) >= 2:
            rows[line[:26].strip()] = (parts[0], parts[1])
    return rows


def _shown(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def test_ulimits_are_set_and_others_inherited(tmp_path, busybox):
    # Hard limits no higher than this host's own (see the next test).
    _, hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    _, hard_nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    _, hard_stack = resource.getrlimit(resource.RLIMIT_STACK)
    task = labelled(task_info("cat /proc/self/limits", rootfs=busybox),
                    ulimits=f"nofile=100:{hard_nofile},core=0,nproc={hard_nproc},"
                            f"stack=8388608:{hard_stack}")
    task.command.user = "nobody"
    done, out, err = run(tmp_path, task)
    assert done.state == pb.TASK_FINISHED, (done, err)
    limits = _limits(out)
    assert limits["Max open files"] == ("100", str(hard_nofile))
    assert limits["Max core file size"] == ("0", "0")
    assert limits["Max processes"] == (_shown(hard_nproc), _shown(hard_nproc))
    assert limits["Max stack size"] == ("8388608", _shown(hard_stack))
    # Not named: the executor's (the agent's) own.
    soft, hard = resource.getrlimit(resource.RLIMIT_MSGQUEUE)
    assert limits["Max msgqueue size"] == (str(soft), str(hard))


def _may_raise_hard_limits() -> bool:
    status = Path("/proc/self/status").read_text()
    eff = int(next(ln for ln in status.splitlines() if ln.startswith("CapEff:")).split()[1], 16)
    return bool(eff >> caps.NUMBERS["SYS_RESOURCE"] & 1)


def test_a_hard_limit_above_the_agent_s_needs_its_cap_sys_resource(tmp_path, busybox):
    """Set before the capabilities are dropped (as runc does): the agent's
    CAP_SYS_RESOURCE, not the task's, decides; without it the launch fails
    and says which limit."""
    _, hard_now = resource.getrlimit(resource.RLIMIT_NOFILE)
    high = min(max(hard_now, 1024) * 2, int(Path("/proc/sys/fs/nr_open").read_text()))
    task = labelled(task_info("cat /proc/self/limits", rootfs=busybox),
                    ulimits=f"nofile={high}")
    done, out, _ = run(tmp_path, task)
    if _may_raise_hard_limits():
        assert done.state == pb.TASK_FINISHED, done
        assert _limits(out)["Max open files"] == (str(high), str(high))
    else:
        assert done.state == pb.TASK_FAILED, done
        assert done.reason == pb.REASON_CONTAINER_LAUNCH_FAILED and done.exit_code == 125
        assert f"set ulimit nofile={high}:{high}: " in done.message, done.message
        assert f"the agent's own hard limit is {hard_now}" in done.message, done.message


def test_a_ulimit_the_kernel_refuses_fails_the_launch(tmp_path, busybox):
    nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    task = labelled(task_info("true", rootfs=busybox), ulimits=f"nofile={nr_open + 1}")
    done, _, _ = run(tmp_path, task)
    assert done.state == pb.TASK_FAILED and done.reason == pb.REASON_CONTAINER_LAUNCH_FAILED
    assert f"set ulimit nofile={nr_open + 1}:{nr_open + 1}" in done.message, done.message
    assert done.exit_code == 125


# -- TERM ----------------------------------------------------------------------------------


def test_a_terminal_gets_term_xterm_unless_the_task_says(tmp_path, busybox):
    done, out, _ = run(tmp_path, task_info("echo term=$TERM", rootfs=busybox, tty=True))
    assert done.state == pb.TASK_FINISHED, done
    assert "term=xterm" in out, out
    task = task_info("echo term=$TERM", rootfs=busybox, tty=True)
    task.command.environment["TERM"] = "vt100"
    (tmp_path / "own").mkdir()
    done, out, _ = run(tmp_path / "own", task)
    assert "term=vt100" in out, out
    (tmp_path / "none").mkdir()
    done, out, _ = run(tmp_path / "none", task_info("echo term=$TERM", rootfs=busybox))
    assert "term=\n" in out, out
