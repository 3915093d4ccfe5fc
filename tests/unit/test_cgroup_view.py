"""What a task sees at /sys/fs/cgroup (container/cgroup_view.py): the plan
from the host's mountinfo and /proc/self/cgroup, as runc lays it out."""

from __future__ import annotations

from juggler.container.cgroup_view import Bind, CgroupView, plan

MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 /docker /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 23 0:29 / /mnt/again rw,relatime - cgroup cgroup rw,cpu,cpuacct
"""
PROC_CGROUP = """\
9:name=systemd:/agent.service
7:blkio:/docker/agent
4:memory:/agent
2:cpu,cpuacct:/agent
0::/agent.service
"""
TASK = ["/sys/fs/cgroup/cpu,cpuacct/juggler/t1", "/sys/fs/cgroup/memory/juggler/t1"]


def test_v1_binds_each_hierarchy_the_task_is_in_once():
    view = plan(1, TASK, MOUNTINFO, PROC_CGROUP)
    # blkio and name=systemd hold the agent's directory, not the task's own:
    # not shown (the agent's could list the host's other cgroups).
    assert view == CgroupView(version=1, binds=(
        Bind("/sys/fs/cgroup/cpu,cpuacct/juggler/t1", "cpu,cpuacct"),
        Bind("/sys/fs/cgroup/memory/juggler/t1", "memory"),
    ), links=(("cpu", "cpu,cpuacct"), ("cpuacct", "cpu,cpuacct")))


def test_v2_enters_a_namespace_rooted_at_the_tasks_cgroup():
    assert plan(2, ["/sys/fs/cgroup/juggler/t1"]) == CgroupView(
        version=2, procs="/sys/fs/cgroup/juggler/t1/cgroup.procs")


def test_no_cgroup_no_view():
    assert plan(1, [], MOUNTINFO, PROC_CGROUP) is None
    assert plan(2, []) is None
