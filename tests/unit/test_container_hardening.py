"""The pure parts of container hardening: capability masks, the limits every
container gets (pids, CFS quota). The real thing, against real containers, is
tests/integration/test_isolation.py; users are tests/unit/test_users.py."""

from __future__ import annotations

import pytest

from juggler.container import capabilities as caps
from juggler.container.spec import (
    DEFAULT_PIDS_MAX,
    PIDS_MAX_LABEL,
    ContainerSpec,
    SpecError,
    cpu_quota_us,
)
from juggler.v1 import common_pb2 as pb


def test_default_set_is_dockers():
    assert caps.DEFAULT_MASK == 0xA80425FB  # CapBnd of a default `docker run`
    assert caps.names(caps.DEFAULT_MASK) == caps.DEFAULT
    assert "SYS_ADMIN" not in caps.DEFAULT and "SYS_MODULE" not in caps.DEFAULT
    assert caps.names(1 << 63) == {"CAP_63"}
    assert caps.mask([]) == 0


def _task(**labels) -> pb.TaskInfo:
    t = pb.TaskInfo(task_id="t1", command=pb.CommandInfo(argv=["true"]),
                    resources=[pb.Resource(name="cpus", scalar=0.5)])
    t.labels.update(labels)
    return t


def test_every_container_gets_a_pids_limit_and_a_cpu_quota():
    limits = ContainerSpec.from_task(_task()).limits
    assert limits.pids_max == DEFAULT_PIDS_MAX
    assert (limits.cpu_quota_us, limits.cpu_period_us) == (50_000, 100_000)
    assert cpu_quota_us(2) == 200_000 and cpu_quota_us(0.001) == 1_000


def test_pids_limit_from_a_label():
    assert ContainerSpec.from_task(_task(**{PIDS_MAX_LABEL: "50"})).limits.pids_max == 50
    for bad in ("0", "-3", "lots"):
        with pytest.raises(SpecError, match=r"juggler\.pids_max must be a positive integer"):
            ContainerSpec.from_task(_task(**{PIDS_MAX_LABEL: bad}))


def test_home_set_by_the_task_is_remembered():
    t = _task()
    assert not ContainerSpec.from_task(t).home_from_task
    t.command.environment["HOME"] = "/data"
    spec = ContainerSpec.from_task(t)
    assert spec.home_from_task and spec.env["HOME"] == "/data"
