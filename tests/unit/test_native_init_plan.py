"""container/native_init.py's plans, read back as juggler-init reads them
(the containers they make are compared with the Python child's in
tests/integration/test_native_init.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from juggler.container import cgroup_view, host_view, native_init
from juggler.container import syscalls as sc
from juggler.container.spec import ContainerSpec, Limits
from juggler.executor.stdio import ChildStdio

SANDBOX = Path("/var/lib/juggler/a1/sandbox/t")


@pytest.fixture(autouse=True)
def agent_like(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan as for an agent's executor (root, capabilities an execve keeps),
    whoever runs the tests."""
    monkeypatch.setattr(native_init, "_EXEC_KEEPS_CAPABILITIES", True)
    monkeypatch.setattr(native_init.sc, "capget", lambda: (0, (1 << 41) - 1, 0))


def parse(data: bytes) -> list[list[str]]:
    """init.c's next_step, in Python: per step a count, then its fields."""
    steps, pos = [], 0

    def length() -> int:
        nonlocal pos
        colon = data.index(b":", pos)
        value = int(data[pos:colon])
        pos = colon + 1
        return value

    while pos < len(data):
        fields = []
        for _ in range(length()):
            size = length()
            fields.append(data[pos:pos + size].decode(errors="surrogateescape"))
            pos += size
        steps.append(fields)
    return steps


def spec(**kw) -> ContainerSpec:
    limits = Limits(**{f.name: None for f in dataclasses.fields(Limits)})
    base = dict(task_id="t", argv=["sleep", "1000"], env={"PATH": "/usr/bin:/bin"},
                hostname="t-1", limits=limits)
    return ContainerSpec(**{**base, **kw})


def plan_of(s: ContainerSpec, *, stdio=None, view=None, netns=False,
            host: host_view.HostView | None = None) -> list[list[str]] | None:
    data = native_init.plan(s, SANDBOX, "/o", "/e", stdio, 2, view, netns, host)
    return None if data is None else parse(data)


def test_a_field_s_length_counts_bytes_and_survives_colons_and_odd_bytes() -> None:
    p = native_init._Plan()
    p("argv", "a:b", "héllo", "\udcff", "", 7)
    assert parse(p.bytes()) == [["argv", "a:b", "héllo", "\udcff", "", "7"]]
    assert p.bytes().startswith(b"6:4:argv3:a:b6:h\xc3\xa9llo1:\xff0:1:7")


def test_the_steps_run_in_the_python_child_s_order() -> None:
    host = host_view.plan(str(SANDBOX), False, ["/var/lib/juggler/a1"])
    view = cgroup_view.CgroupView(version=1, binds=(cgroup_view.Bind("/sys/fs/cgroup/cpu/j/t",
                                                                     "cpu"),))
    steps = plan_of(spec(), view=view, host=host)
    ops = [s[0] for s in steps if s[0] != "step"]
    assert ops[:6] == ["umask", "write", "setsid", "unshare", "hostname", "lo_up"]
    unshare = next(s for s in steps if s[0] == "unshare")
    assert int(unshare[1]) == sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWNET
    # The host's view before /proc, /dev and /sys; the masks last of the filesystem.
    order = [ops.index(op) for op in ("open_stdio", "read_only", "cover", "bind_writable",
                                      "mount_sys", "mask", "readonly_path", "require_dir",
                                      "chdir", "caps", "wait_go", "join", "dup_stdio", "argv",
                                      "env", "exec")]
    assert order == sorted(order)
    assert ops[-1] == "exec" and ops.count("join") == 2
    env = next(s for s in steps if s[0] == "env")
    assert "HOME=/root" in env and "PATH=/usr/bin:/bin" in env
    caps = next(s for s in steps if s[0] == "caps")
    assert caps[1:5] == [str(0xa80425fb), "1", "0", "0"]  # Docker's set, root


def test_a_network_to_join_and_given_stdio_use_the_fds_spawn_hands_over() -> None:
    steps = plan_of(spec(), stdio=ChildStdio(stdin=10, stdout=11, stderr=12), netns=True)
    assert ["setns", str(native_init.NETNS_FD), str(sc.CLONE_NEWNET)] in steps
    unshare = next(s for s in steps if s[0] == "unshare")
    assert not int(unshare[1]) & sc.CLONE_NEWNET
    assert ["stdio_fds", "6", "7", "8"] in steps


@pytest.mark.parametrize("why, kw, extra", [
    ("an image", {"layers": ("/l",)}, {}),
    ("a rootfs", {"rootfs": "/r"}, {}),
    ("--init", {"init": True}, {}),
    ("a terminal", {}, {"stdio": ChildStdio(console=5)}),
    ("cgroup v2", {}, {"view": cgroup_view.CgroupView(version=2, procs="/x")}),
    ("a NUL in argv", {"argv": ["a\0b"]}, {}),
    ("an unknown user", {"user": "no-such-user-here"}, {}),
    ("a relative working directory", {"working_dir": "rel"}, {}),
])
def test_launches_juggler_init_does_not_make_are_left_to_the_python_child(why, kw,
                                                                          extra) -> None:
    assert plan_of(spec(**kw), **extra) is None, why


def test_an_executor_whose_capabilities_an_exec_would_change_keeps_the_python_child(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert plan_of(spec()) is not None
    monkeypatch.setattr(native_init, "_EXEC_KEEPS_CAPABILITIES", False)
    assert plan_of(spec()) is None


def test_a_program_that_cannot_start_here_is_not_used(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """Checked before any launch: a spawn that fails in the executor would
    leave its pid namespace without an init, and no fork could follow."""
    not_a_program = tmp_path / "juggler-init"
    not_a_program.write_bytes(b"\x00\x01")
    not_a_program.chmod(0o755)
    monkeypatch.setattr(native_init, "BINARY", not_a_program)
    assert not native_init._starts()
    monkeypatch.delenv(native_init.ENGINE_ENV, raising=False)
    monkeypatch.setattr(native_init, "_usable", None)
    monkeypatch.setattr(native_init, "built", lambda: True)
    assert not native_init.enabled()


@pytest.mark.skipif(not native_init.built(), reason="juggler-init is not built")
def test_the_built_program_starts_and_python_turns_it_off(monkeypatch) -> None:
    assert native_init._starts()
    monkeypatch.setenv(native_init.ENGINE_ENV, "python")
    assert not native_init.enabled()


def test_only_a_program_built_from_the_source_beside_it_counts_as_built(
        tmp_path: Path, monkeypatch) -> None:
    """Whatever the files' times (a checkout touches init.c, pip installs the
    Docker image's package in any order): the binary must carry its source's
    SHA-256."""
    source, binary = tmp_path / "init.c", tmp_path / "juggler-init"
    source.write_text("int main(void) { return 0; }\n")
    monkeypatch.setattr(native_init, "SOURCE", source)
    monkeypatch.setattr(native_init, "BINARY", binary)
    assert not native_init.built()  # none
    binary.write_bytes(b"\x7fELF..." + native_init.source_marker() + b"\x00...")
    binary.chmod(0o755)
    assert native_init.built()
    source.write_text("int main(void) { return 1; }\n")  # the source changed
    assert not native_init.built()
    binary.write_bytes(b"\x7fELF..." + native_init.source_marker() + b"\x00...")
    binary.chmod(0o644)
    assert not native_init.built()  # not executable
