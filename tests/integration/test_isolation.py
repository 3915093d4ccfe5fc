"""What a security reviewer checks of a container, against real containers.

Each test runs a task through the real executor (`python -m juggler.executor`,
the agent played by tests/executor_harness.py) and asserts from the inside
(what the task could see or do) and from the host (its cgroup). Where it
matters both filesystem modes run: a busybox root filesystem ("rootfs") and
the host's filesystem ("hostfs"), whose tasks run the host's Python.

The memory limit (a hog OOM-killed with REASON_CONTAINER_LIMITATION_MEMORY
while the executor and host carry on) is covered by
test_executor.py::test_memory_hog_is_oom_killed_and_reported and not repeated.
"""

from __future__ import annotations

import asyncio
import errno
import os
import platform
import socket
import subprocess
import time
from pathlib import Path

import pytest

from juggler.container import capabilities as caps
from juggler.container.cgroups import DEFAULT_ROOT
from juggler.container.spec import PIDS_MAX_LABEL
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.testing.task_python import PYTHON as TASK_PYTHON
from juggler.v1 import common_pb2 as pb
from tests.executor_harness import executor, task_info, wait_until
from tests.executor_harness import run_to_end as run

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups, mounts)"),
]

SECRET = "/etc/secret"
PY = TASK_PYTHON


@pytest.fixture(scope="module")
def busybox(tmp_path_factory) -> Path:
    """busybox, plus a root-only file and a group `nobody` belongs to."""
    root = make_busybox_rootfs(tmp_path_factory.mktemp("isolation") / "rootfs")
    secret = root / SECRET.lstrip("/")
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    with open(root / "etc" / "group", "a") as f:
        f.write("staff:x:50:nobody\n")
    return root


@pytest.fixture(params=["rootfs", "hostfs"])
def fs(request, busybox) -> Path | None:
    return busybox if request.param == "rootfs" else None



def finished(tmp_path: Path, task: pb.TaskInfo) -> str:
    done, out, err = run(tmp_path, task)
    assert done.state == pb.TASK_FINISHED, (done, out, err)
    return out


def py_task(script: str, *args: str, **kw) -> pb.TaskInfo:
    """A task running the host's Python (host filesystem unless `rootfs=`)."""
    task = task_info("", shell=False, **kw)
    task.command.argv[:] = [PY, "-c", script, *args]
    return task


def key_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def proc_status(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


# -- processes ---------------------------------------------------------------

def test_cannot_see_host_processes(tmp_path, busybox):
    out = finished(tmp_path, task_info("ps; echo ---; ls /proc", rootfs=busybox))
    ps, _, ls = out.partition("---\n")
    rows = ps.splitlines()[1:]
    assert len(rows) == 2, ps  # the shell (pid 1) and ps itself
    assert rows[0].split()[0] == "1"
    assert "python" not in ps and "juggler" not in ps and "pytest" not in ps
    pids = sorted(int(p) for p in ls.split() if p.isdigit())
    assert pids[0] == 1 and len(pids) <= 3, pids  # sh, ls (and ps, if not yet reaped)


# -- mounts, /proc/sys, /sys ---------------------------------------------------

def test_cannot_mount_remount_or_unmask(tmp_path, busybox):
    command = (
        "mkdir -p /mnt; mount -t tmpfs none /mnt; echo tmpfs=$?; "
        "mount -o remount,rw /proc/sys; echo remount_proc_sys=$?; "
        "mount -o remount,rw /sys; echo remount_sys=$?; "
        "umount /proc/kcore; echo umount_kcore=$?; "
        "umount -l /proc/sys; echo umount_proc_sys=$?; "
        "echo ---; cat /proc/mounts"
    )
    out = finished(tmp_path, task_info(command, rootfs=busybox))
    head, _, mounts = out.partition("---\n")
    results = key_values(head)
    assert set(results) == {"tmpfs", "remount_proc_sys", "remount_sys", "umount_kcore",
                            "umount_proc_sys"}
    assert all(code != "0" for code in results.values()), results
    options = {}
    for line in mounts.splitlines():
        _, point, _, opts, *_ = line.split()
        options[point] = opts.split(",")  # the last mount at a point is the visible one
    for point in ("/sys", "/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/fs",
                  "/proc/irq"):
        if os.path.exists(point):
            assert options[point][0] == "ro", (point, options.get(point))
    assert "/mnt" not in options


def test_cannot_write_proc_sys(tmp_path, fs):
    # Write back the value already there, so a broken container changes nothing.
    command = ("v=$(cat /proc/sys/kernel/panic); echo panic=$v; "
               "echo $v > /proc/sys/kernel/panic; echo write=$?; "
               "echo 1 > /proc/sys/kernel/ns_last_pid; echo ns_last_pid=$?")
    out = key_values(finished(tmp_path, task_info(command, rootfs=fs)))
    assert out["panic"].isdigit()
    assert out["write"] != "0" and out["ns_last_pid"] != "0", out


def test_the_oom_score_and_the_network_sysctls_are_dockers(tmp_path, fs):
    """oom_score_adj 0 whatever the executor's (Docker's HostConfig.OomScoreAdj
    default), and in the container's own network namespace ping for every
    group and no privileged ports (moby's withCommonOptions)."""
    with open("/proc/self/oom_score_adj") as f:
        ours = f.read().strip()
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("300")   # the executor inherits it; the task must not
    try:
        command = ("echo oom=$(cat /proc/self/oom_score_adj); "
                   "echo ping=$(cat /proc/sys/net/ipv4/ping_group_range); "
                   "echo port=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)")
        out = key_values(finished(tmp_path, task_info(command, rootfs=fs)))
    finally:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(ours)
    assert out == {"oom": "0", "ping": "0 2147483647", "port": "0"}, out


@pytest.mark.parametrize("network", [pb.NETWORK_NONE, pb.NETWORK_HOST])
def test_sys_is_a_fresh_read_only_sysfs(tmp_path, fs, network):
    # Fresh: the host's submounts are not there; /sys/fs/cgroup shows the
    # task's own cgroups read-only, as Docker's (container/cgroup_view.py).
    v1 = (DEFAULT_ROOT / "memory").is_dir()
    limit = "memory/memory.limit_in_bytes" if v1 else "memory.max"
    command = ("touch /sys/kernel/x; echo touch=$?; "
               f"echo limit=$(cat /sys/fs/cgroup/{limit}); "
               f"echo 1 > /sys/fs/cgroup/{limit}; echo write=$?; "
               # The last mount at /sys is the one seen (on the host's filesystem
               # the host's own lies beneath it, read-only too: host_view.py).
               "echo sysfs=$(grep ' /sys ' /proc/mounts | tail -1 | grep -c ' /sys sysfs ro,')")
    out = key_values(finished(tmp_path, task_info(command, rootfs=fs, network=network)))
    assert out["touch"] != "0" and out["write"] != "0" and out["sysfs"] == "1", out
    assert out["limit"] == str(64 * 2**20), out


# -- capabilities and no_new_privs -------------------------------------------

def test_capabilities_are_dockers_default_set_without_no_new_privs(tmp_path, fs):
    status = proc_status(finished(tmp_path, task_info("cat /proc/self/status", rootfs=fs)))
    masks = {k: int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    for key in ("CapBnd", "CapPrm", "CapEff"):
        assert caps.names(masks[key]) == caps.DEFAULT, (key, sorted(caps.names(masks[key])))
    assert masks["CapInh"] == 0 and masks["CapAmb"] == 0, masks
    assert not masks["CapBnd"] & (1 << caps.NUMBERS["SYS_MODULE"])
    assert not masks["CapBnd"] & (1 << caps.NUMBERS["SYS_ADMIN"])
    assert status["NoNewPrivs"] == "0"   # Docker's default (test_init_and_privileges.py)


INIT_MODULE = {"x86_64": 175, "aarch64": 105}.get(platform.machine())


@pytest.mark.skipif(INIT_MODULE is None, reason="init_module's number unknown here")
def test_cannot_load_kernel_modules(tmp_path):
    # init_module(NULL, 0, ""): EPERM without CAP_SYS_MODULE; with it, the empty
    # image would be refused later (EFAULT/ENOEXEC), so nothing can be loaded.
    script = ("import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
              f"r = libc.syscall({INIT_MODULE}, None, 0, b''); "
              "print(f'r={r}'); print(f'errno={ctypes.get_errno()}')")
    host = key_values(subprocess.run([PY, "-c", script], capture_output=True, text=True,
                                     timeout=30).stdout)
    if host.get("errno") == str(errno.ENOSYS):
        pytest.skip("this kernel has no module support (CONFIG_MODULES=n); "
                    "CAP_SYS_MODULE's absence is checked from the masks instead")
    assert host.get("errno") != str(errno.EPERM), host  # the probe works as root here
    out = key_values(finished(tmp_path, py_task(script)))
    assert out == {"r": "-1", "errno": str(errno.EPERM)}


# -- masked paths ------------------------------------------------------------

def test_masked_paths_read_as_empty(tmp_path, fs):
    files = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug")
             if os.path.exists(p)]
    dirs = [p for p in ("/proc/acpi", "/proc/scsi", "/sys/firmware") if os.path.isdir(p)]
    # Else this proves little: something masked must be non-empty on the host.
    assert any(Path(p).read_bytes() for p in files if p != "/proc/kcore"), files
    assert "/sys/firmware" in dirs and os.listdir("/sys/firmware")
    command = "; ".join(
        [f"echo {p}=$(stat -c %s {p}):$(cat {p} | wc -c)" for p in files]
        + [f"echo {p}=$(ls -A {p} | wc -l)" for p in dirs])
    out = key_values(finished(tmp_path, task_info(command, rootfs=fs)))
    for p in files:
        assert out[p] == "0:0", (p, out[p])
    for p in dirs:
        assert out[p] == "0", (p, out[p])


# -- network -----------------------------------------------------------------

PROBE = """
import os, socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    print("connect=ok")
except OSError as e:
    print(f"connect={type(e).__name__}")
print("ifaces=" + " ".join(sorted(os.listdir("/sys/class/net"))))
with open("/proc/net/dev") as f:
    print("dev=" + " ".join(sorted(line.split(":")[0].strip() for line in f.readlines()[2:])))
"""


@pytest.fixture
def host_listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def test_network_none_reaches_nothing(tmp_path, host_listener):
    out = key_values(finished(tmp_path, py_task(PROBE, str(host_listener))))
    assert out["connect"] == "ConnectionRefusedError", out
    assert out["ifaces"] == "lo" and out["dev"] == "lo", out


def test_network_host_control_reaches_the_listener(tmp_path, host_listener):
    # The same probe with the host's network connects: the test above can fail.
    task = py_task(PROBE, str(host_listener), network=pb.NETWORK_HOST)
    out = key_values(finished(tmp_path, task))
    assert out["connect"] == "ok", out


def test_rootfs_sysfs_shows_only_the_containers_devices(tmp_path, busybox):
    out = finished(tmp_path, task_info("ls /sys/class/net", rootfs=busybox))
    assert out.split() == ["lo"]


# -- limits ------------------------------------------------------------------

FORKER = """
import os, time
n = 0
while True:
    try:
        pid = os.fork()
    except BlockingIOError:
        print(f"eagain={n}", flush=True)
        break
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    n += 1
time.sleep(600)
"""


def test_fork_bomb_is_stopped_by_the_pids_limit(tmp_path):
    async def scenario():
        task = py_task(FORKER, cpus=0.2)
        task.labels[PIDS_MAX_LABEL] = "50"
        async with executor(tmp_path, task) as r:
            await r.agent.wait_state(pb.TASK_RUNNING)
            pids = DEFAULT_ROOT / "pids" / r.cgroup
            assert (pids / "pids.max").read_text().strip() == "50"
            out = await wait_until(lambda: key_values(r.stdout()).get("eagain"),
                                   "the forker to hit EAGAIN")
            assert 40 <= int(out) <= 49, out  # pid 1 and its children never pass 50
            assert int((pids / "pids.current").read_text()) <= 50
            # The host is unaffected: it can still fork and exec.
            assert subprocess.run(["true"], timeout=10).returncode == 0
            await r.agent.kill(grace=0)
            done = await r.agent.wait_terminal()
        # (leaving `executor` asserted the cgroup was removed)
        assert done.state == pb.TASK_KILLED
        assert not pids.exists()

    asyncio.run(scenario())


def test_cpu_hog_is_capped_at_its_cpus(tmp_path, busybox):
    async def scenario():
        task = task_info("while :; do :; done", cpus=0.5, rootfs=busybox)
        async with executor(tmp_path, task) as r:
            await r.agent.wait_state(pb.TASK_RUNNING)
            cpu = DEFAULT_ROOT / "cpu" / r.cgroup
            assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
            assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
            assert (DEFAULT_ROOT / "pids" / r.cgroup / "pids.max").read_text().strip() == "4096"
            usage = DEFAULT_ROOT / "cpuacct" / r.cgroup / "cpuacct.usage"
            await wait_until(lambda: int(usage.read_text()) > 50_000_000, "the hog to spin")
            # A measurement window for the cap (not a timeout): at least 2 s of wall
            # clock, and until the quota has stopped the hog a few times. On a loaded
            # machine the hog may get less than its 0.5 cpus; never more.
            u0, t0, throttled0 = int(usage.read_text()), time.monotonic(), throttled(cpu)
            await asyncio.sleep(2.0)
            await wait_until(lambda: throttled(cpu) >= throttled0 + 3,
                             "the quota to throttle the hog")
            u1, t1 = int(usage.read_text()), time.monotonic()
            cores = (u1 - u0) / 1e9 / (t1 - t0)
            print(f"cpus=0.5 hog used {cores:.3f} cores over {t1 - t0:.1f} s")
            assert 0 < cores <= 0.65, cores
            await r.agent.kill(grace=0)
            done = await r.agent.wait_terminal()
        assert done.state == pb.TASK_KILLED

    asyncio.run(scenario())


def throttled(cpu: Path) -> int:
    """Periods in which the cgroup used up its CFS quota (cpu.stat nr_throttled)."""
    stat = dict(line.split() for line in (cpu / "cpu.stat").read_text().splitlines())
    return int(stat["nr_throttled"])


# -- users -------------------------------------------------------------------

def test_non_root_user_from_the_rootfs(tmp_path, busybox):
    command = (f"echo uid=$(id -u); echo gid=$(id -g); echo groups=$(id -G); "
               f"echo home=$HOME; echo whoami=$(whoami); "
               f"cat {SECRET}; echo cat=$?; touch /etc/x; echo touch=$?; "
               "grep -E '^(Cap|NoNewPrivs)' /proc/self/status")
    task = task_info(command, rootfs=busybox)
    task.command.user = "nobody"
    done, out, err = run(tmp_path, task)
    assert done.state == pb.TASK_FINISHED, (done, out, err)
    kv = key_values(out)
    assert (kv["uid"], kv["gid"], kv["home"], kv["whoami"]) == ("65534", "65534", "/", "nobody")
    assert sorted(kv["groups"].split()) == ["50", "65534"]
    assert kv["cat"] != "0" and "s3cret" not in out and "Permission denied" in err
    assert kv["touch"] != "0"
    status = proc_status(out)
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
    assert int(status["CapBnd"], 16) == caps.DEFAULT_MASK
    assert status["NoNewPrivs"] == "0"


def test_user_from_the_hosts_passwd_and_home_from_the_task(tmp_path):
    import pwd

    nobody = pwd.getpwnam("nobody")
    task = task_info("echo uid=$(id -u); echo home=$HOME")
    task.command.user = "nobody"
    out = key_values(finished(tmp_path, task))
    assert out == {"uid": str(nobody.pw_uid), "home": nobody.pw_dir}
    task = task_info("echo uid=$(id -u); echo home=$HOME")
    task.command.user = "4321"  # not in /etc/passwd: still runs, as uid 4321
    task.command.environment["HOME"] = "/data"
    (tmp_path / "numeric").mkdir()
    out = key_values(finished(tmp_path / "numeric", task))
    assert out == {"uid": "4321", "home": "/data"}


def test_unknown_user_fails_the_launch(tmp_path, busybox):
    task = task_info("true", rootfs=busybox)
    task.command.user = "ghost"
    done, _, _ = run(tmp_path, task)
    assert done.state == pb.TASK_FAILED
    assert done.reason == pb.REASON_CONTAINER_LAUNCH_FAILED
    assert "no user 'ghost' in the container's /etc/passwd" in done.message, done.message


def test_image_symlink_cannot_aim_a_mount_at_the_host(tmp_path):
    evil = tmp_path / "evil"
    make_busybox_rootfs(evil)
    (evil / "sys").rmdir()
    (evil / "sys").symlink_to("/etc")  # would mount sysfs over the host's /etc
    done, _, _ = run(tmp_path, task_info("true", rootfs=evil))
    assert done.state == pb.TASK_FAILED
    assert done.reason == pb.REASON_CONTAINER_LAUNCH_FAILED
    assert "/sys in the root filesystem is a symlink" in done.message, done.message
