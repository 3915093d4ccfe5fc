"""Docker's --cpu-shares, --cpus left out, and --memory-swap as task labels
(juggler.cpu_shares, juggler.cpu_quota, juggler.memory_swap): parsed and
checked (common/task_check.py), turned into cgroup limits (container/spec.py)
and written by the v1 and v2 managers on fake trees. A real v1 cgroup is
tests/integration/test_cpu_memory_labels.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from juggler.common import task_check
from juggler.common.task_check import TaskError, task_labels
from juggler.container.cgroups import NO_SWAP_LIMIT, Limits
from juggler.container.cgroups_v1 import CgroupV1
from juggler.container.cgroups_v2 import CgroupV2, swap_max
from juggler.container.spec import ContainerSpec
from juggler.executor.executor import Executor
from juggler.executor.stdio import TaskStdio
from juggler.v1 import common_pb2 as pb
from juggler.v1 import executor_pb2
from tests.unit.test_cgroups_v1_fake import make as make_v1
from tests.unit.test_cgroups_v2_fake import FILES, fake_root

MiB = 2**20


def task(labels: dict[str, str], cpus: float = 0.5, mem: float = 64) -> pb.TaskInfo:
    t = pb.TaskInfo(task_id="web.1", command=pb.CommandInfo(argv=["true"]), labels=labels)
    for name, value in (("cpus", cpus), ("mem", mem)):
        if value:
            t.resources.append(pb.Resource(name=name, scalar=value))
    return t


# -- the labels -------------------------------------------------------------------------


def test_defaults_leave_cpus_and_mem_in_charge() -> None:
    parsed = task_labels({})
    assert (parsed.cpu_shares, parsed.cpu_quota, parsed.memory_swap) == (None, True, None)


@pytest.mark.parametrize(("labels", "field", "message"), [
    ({"juggler.cpu_shares": "1"}, 'labels["juggler.cpu_shares"]',
     "label juggler.cpu_shares must be an integer from 2 to 262144, got '1'"),
    ({"juggler.cpu_shares": "262145"}, 'labels["juggler.cpu_shares"]',
     "label juggler.cpu_shares must be an integer from 2 to 262144, got '262145'"),
    ({"juggler.cpu_shares": "1k"}, 'labels["juggler.cpu_shares"]',
     "label juggler.cpu_shares must be an integer from 2 to 262144, got '1k'"),
    ({"juggler.cpu_quota": "maybe"}, 'labels["juggler.cpu_quota"]',
     "label juggler.cpu_quota must be true or false"),
    ({"juggler.memory_swap": "0"}, 'labels["juggler.memory_swap"]',
     "label juggler.memory_swap must be bytes of memory + swap (a positive integer) or -1 "
     "for unlimited swap, got '0'"),
    ({"juggler.memory_swap": "-2"}, 'labels["juggler.memory_swap"]', "got '-2'"),
    ({"juggler.memory_swap": "1g"}, 'labels["juggler.memory_swap"]', "got '1g'"),
    ({"juggler.cpu_share": "2"}, 'labels["juggler.cpu_share"]',
     "did you mean juggler.cpu_shares?"),
])
def test_bad_values_are_refused_naming_the_label(labels: dict[str, str], field: str,
                                                 message: str) -> None:
    with pytest.raises(TaskError) as e:
        task_check.check(task(labels))
    assert e.value.field == field and message in str(e.value)


def test_memory_swap_needs_a_memory_limit_and_is_at_least_it() -> None:
    with pytest.raises(TaskError, match=r"needs a memory limit \(resources: mem\)") as e:
        task_check.check(task({"juggler.memory_swap": "-1"}, mem=0))
    assert e.value.field == 'labels["juggler.memory_swap"]'
    with pytest.raises(TaskError) as e:
        task_check.check(task({"juggler.memory_swap": str(64 * MiB - 1)}))
    assert str(e.value) == (
        "task 'web.1': label juggler.memory_swap is memory + swap in bytes: at least the "
        f"memory limit ({64 * MiB} bytes, mem 64 MiB), or -1 for unlimited swap; got "
        f"{64 * MiB - 1}")
    for ok in (str(64 * MiB), str(128 * MiB), "-1"):
        task_check.check(task({"juggler.memory_swap": ok}))


# -- the container's limits -------------------------------------------------------------


def limits(labels: dict[str, str], **kw: float) -> Limits:
    return ContainerSpec.from_task(task(labels, **kw)).limits


def test_cpu_shares_wins_over_cpus_and_cpu_quota_false_drops_the_quota() -> None:
    assert (limits({}).cpu_shares, limits({}).cpu_quota_us) == (512, 50_000)
    docker = limits({"juggler.cpu_shares": "256", "juggler.cpu_quota": "false"})
    assert (docker.cpu_shares, docker.cpu_quota_us) == (256, None)
    assert limits({"juggler.cpu_shares": "256"}).cpu_quota_us == 50_000  # cpus still caps
    assert limits({"juggler.cpu_quota": "no"}).cpu_shares == 512
    assert limits({"juggler.cpu_shares": "100"}, cpus=0).cpu_shares == 100


def test_memory_swap_goes_with_the_memory_limit() -> None:
    assert limits({}).memory_swap_bytes is None  # no swap: juggler's default
    assert limits({"juggler.memory_swap": "-1"}).memory_swap_bytes == -1
    got = limits({"juggler.memory_swap": str(96 * MiB)})
    assert (got.memory_bytes, got.memory_swap_bytes) == (64 * MiB, 96 * MiB)


# -- cgroup v1 (fake tree) --------------------------------------------------------------


def memory_file(cg: CgroupV1, name: str) -> str:
    return (cg.paths()["memory"] / name).read_text()


def test_v1_memsw_is_memory_unless_the_task_asks_for_swap(tmp_path: Path) -> None:
    cg = make_v1(tmp_path)
    assert cg.set(Limits(memory_bytes=64 * MiB)) == []
    assert memory_file(cg, "memory.memsw.limit_in_bytes") == f"{64 * MiB}\n"
    assert cg.set(Limits(memory_bytes=64 * MiB, memory_swap_bytes=96 * MiB)) == []
    assert memory_file(cg, "memory.memsw.limit_in_bytes") == f"{96 * MiB}\n"
    assert cg.set(Limits(memory_bytes=64 * MiB, memory_swap_bytes=-1)) == []
    assert memory_file(cg, "memory.memsw.limit_in_bytes") == "-1\n"
    assert memory_file(cg, "memory.limit_in_bytes") == f"{64 * MiB}\n"


def test_v1_without_swap_accounting_a_swap_limit_is_a_warning(tmp_path: Path) -> None:
    cg = make_v1(tmp_path)
    (cg.paths()["memory"] / "memory.memsw.limit_in_bytes").unlink()
    fresh = CgroupV1(cg.name, cg.root)  # what it found is cached per object
    assert fresh.set(Limits(memory_bytes=64 * MiB)) == []  # asked for nothing: quiet
    assert fresh.set(Limits(memory_bytes=64 * MiB, memory_swap_bytes=-1)) == [NO_SWAP_LIMIT]
    assert memory_file(fresh, "memory.limit_in_bytes") == f"{64 * MiB}\n"
    assert not (cg.paths()["memory"] / "memory.memsw.limit_in_bytes").exists()


def test_v1_cpu_shares_without_a_quota(tmp_path: Path) -> None:
    cg = make_v1(tmp_path)
    cg.set(Limits(cpu_shares=256, cpu_quota_us=None))
    cpu = cg.paths()["cpu"]
    assert (cpu / "cpu.shares").read_text() == "256\n"
    assert (cpu / "cpu.cfs_quota_us").read_text() == ""  # untouched: the kernel's -1


# -- cgroup v2 (fake tree, as tests/unit/test_cgroups_v2_fake.py) -----------------------


@pytest.fixture
def v2(tmp_path: Path) -> CgroupV2:
    root = fake_root(tmp_path)
    cg = CgroupV2("juggler/a/t", root)
    for part in ("juggler", "juggler/a", "juggler/a/t"):
        (root / part).mkdir()
    for name, text in FILES.items():
        (cg.path / name).write_text(text)
    return cg


def test_v2_swap_max_is_memory_swap_minus_memory() -> None:
    assert swap_max(64 * MiB, None) == 0
    assert swap_max(64 * MiB, -1) == "max"
    assert swap_max(64 * MiB, 96 * MiB) == 32 * MiB
    assert swap_max(64 * MiB, 64 * MiB) == 0


def test_v2_writes_memory_swap_max(v2: CgroupV2) -> None:
    assert v2.set(Limits(memory_bytes=64 * MiB, memory_swap_bytes=96 * MiB)) == []
    assert (v2.path / "memory.swap.max").read_text() == f"{32 * MiB}\n"
    v2.set(Limits(memory_bytes=64 * MiB, memory_swap_bytes=-1))
    assert (v2.path / "memory.swap.max").read_text() == "max\n"
    v2.set(Limits(memory_bytes=64 * MiB))
    assert (v2.path / "memory.swap.max").read_text() == "0\n"


def test_v2_without_swap_accounting_a_swap_limit_is_a_warning(v2: CgroupV2) -> None:
    (v2.path / "memory.swap.max").unlink()
    assert v2.set(Limits(memory_bytes=64 * MiB)) == []
    assert v2.set(Limits(memory_bytes=64 * MiB, memory_swap_bytes=-1)) == [NO_SWAP_LIMIT]
    assert (v2.path / "memory.max").read_text() == f"{64 * MiB}\n"


def test_v2_cpu_shares_without_a_quota(v2: CgroupV2) -> None:
    v2.set(Limits(cpu_shares=256))
    assert (v2.path / "cpu.max").read_text() == "max 100000\n"  # untouched: no quota


# -- the warning in the task's stderr ---------------------------------------------------


def test_the_executor_writes_each_warning_as_a_line_of_the_task_s_stderr(
        tmp_path: Path) -> None:
    spec = executor_pb2.ExecutorSpec(framework=pb.FrameworkInfo(id="fw"), task=task({}),
                                     agent_socket=str(tmp_path / "agent.sock"))
    executor = Executor(tmp_path, spec)
    executor.stdio = TaskStdio.for_task(tmp_path, False, {})
    try:
        executor._warn([NO_SWAP_LIMIT])
    finally:
        executor.stdio.close()
    assert (tmp_path / "stderr").read_text() == (
        "WARNING: Your kernel does not support swap limit capabilities or the cgroup is not "
        "mounted. Memory limited without swap.\n")
