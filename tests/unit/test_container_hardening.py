"""The pure parts of container hardening: capability masks, user lookup, the
limits every container gets (pids, CFS quota). The real thing, against real
containers, is tests/integration/test_isolation.py."""

from __future__ import annotations

import pytest

from juggler.container import capabilities as caps
from juggler.container import users
from juggler.container.spec import (
    DEFAULT_PIDS_MAX,
    PIDS_MAX_LABEL,
    ContainerSpec,
    SpecError,
    cpu_quota_us,
)
from juggler.v1 import common_pb2 as pb

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1000:1000:App,,,:/home/app:/bin/sh
1001:x:1002:1002::/home/odd:/bin/sh
broken line
"""
GROUP = """\
root:x:0:
audio:x:29:app,daemon
staff:x:50:app
app:x:1000:
"""


def test_default_set_is_dockers():
    assert caps.DEFAULT_MASK == 0xA80425FB  # CapBnd of a default `docker run`
    assert caps.names(caps.DEFAULT_MASK) == caps.DEFAULT
    assert "SYS_ADMIN" not in caps.DEFAULT and "SYS_MODULE" not in caps.DEFAULT
    assert caps.names(1 << 63) == {"CAP_63"}
    assert caps.mask([]) == 0


def test_user_by_name_with_groups_and_home():
    u = users.resolve("app", PASSWD, GROUP)
    assert (u.uid, u.gid, u.home, u.name) == (1000, 1000, "/home/app", "app")
    assert u.groups == (1000, 29, 50)


def test_user_by_uid_and_unknown_numeric_uid():
    assert users.resolve("65534", PASSWD, GROUP).name == "nobody"
    assert users.resolve("65534", PASSWD, GROUP).groups == (65534,)
    stranger = users.resolve("4321", PASSWD, GROUP)
    assert (stranger.uid, stranger.gid, stranger.groups, stranger.home) == (
        4321, 4321, (4321,), "/")


def test_a_name_wins_over_a_uid_that_looks_the_same():
    assert users.resolve("1001", PASSWD).uid == 1002


def test_unknown_user_name_is_an_error():
    with pytest.raises(users.UnknownUser, match="no user 'ghost'"):
        users.resolve("ghost", PASSWD, GROUP)


def test_lookup_reads_passwd_and_group(tmp_path):
    (tmp_path / "passwd").write_text(PASSWD)
    assert users.lookup("app", str(tmp_path)).groups == (1000,)  # no group file
    (tmp_path / "group").write_text(GROUP)
    assert users.lookup("app", str(tmp_path)).groups == (1000, 29, 50)


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
