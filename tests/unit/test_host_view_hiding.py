"""The pure plan of what host-filesystem tasks may not see (container/host_view.py):
which paths are covered, in which order, where the sandbox is bound back."""

from __future__ import annotations

import pytest

from juggler.container import host_view
from juggler.container.host_view import Cover

SANDBOX = "/var/lib/juggler/agent/frameworks/f/tasks/t"


def test_the_agent_work_dir_is_covered_with_the_way_to_the_sandbox():
    view = host_view.plan(SANDBOX, writable=False,
                          hidden=["/var/lib/juggler/agent", "/etc/juggler/tls", "/run/juggler"])
    assert view is not None
    # Shallowest first, then by name; only the work dir leads to the sandbox.
    assert view.covers == (Cover("/run/juggler"), Cover("/etc/juggler/tls"),
                           Cover("/var/lib/juggler/agent", "frameworks/f/tasks/t"))
    assert view.sandbox == SANDBOX and view.sandbox_in_tmp == ""


def test_nested_repeated_and_needless_paths_are_dropped():
    covers = host_view.covers(SANDBOX, [
        "/var/lib/juggler", "/var/lib/juggler/agent/tls/", "/var/lib/juggler",
        "/tmp/work", "/tmp", "/proc/kcore", "/sys/kernel", "/dev/shm", "/srv/x/../y"])
    assert covers == (Cover("/srv/y"), Cover("/var/lib/juggler", "agent/frameworks/f/tasks/t"))


def test_a_hidden_sandbox_itself_is_bound_over_its_cover():
    assert host_view.covers(SANDBOX, [SANDBOX]) == (Cover(SANDBOX, "."),)


def test_a_sandbox_under_tmp_is_rebound_there_and_not_through_hidden_paths():
    view = host_view.plan("/tmp/pytest/w/a1/frameworks/f/tasks/t", writable=False,
                          hidden=["/tmp/pytest/w", "/run/juggler"])
    assert view is not None
    assert view.covers == (Cover("/run/juggler"),)   # /tmp is the task's own anyway
    assert view.sandbox_in_tmp == "pytest/w/a1/frameworks/f/tasks/t"


def test_relative_or_root_hidden_paths_are_refused():
    for bad in ("relative", "/", "//", "/.."):
        with pytest.raises(ValueError, match="hidden path"):
            host_view.plan(SANDBOX, writable=False, hidden=[bad])


def test_a_writable_host_filesystem_hides_nothing():
    assert host_view.plan(SANDBOX, writable=True, hidden=["/var/lib/juggler"]) is None


def test_what_an_agent_hides_and_how_executors_learn_it():
    paths = host_view.agent_hidden("/w/agent-1", "/w/tls/agent.key", ["/w", "/run/juggler"])
    assert paths == ["/w/agent-1", "/w/tls", "/run/juggler", "/w"]
    assert host_view.agent_hidden("/w/agent-1", "", []) == ["/w/agent-1", "/run/juggler"]
    env = host_view.hide_env(paths)
    assert host_view.hidden_from_env(env) == tuple(paths)
    assert host_view.hidden_from_env({}) == ()
    with pytest.raises(ValueError):
        host_view.hidden_from_env({host_view.HIDE_ENV: '{"a": 1}'})
