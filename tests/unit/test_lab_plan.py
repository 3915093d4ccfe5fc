"""The multi-host lab's plan (cli/lab_hosts.py): names, addresses, and what a
new run may clean of a crashed one's."""

from __future__ import annotations

import pytest

from juggler.cli.lab_hosts import ALIAS, plan, stale_to_remove


def test_lab_zero_names_hosts_as_the_readme_does() -> None:
    lab = plan(0, 2)
    assert (lab.bridge, lab.gateway) == ("jlab0", "10.77.0.1")
    h1, h2 = lab.hosts
    assert (h1.name, h1.netns, h1.address, h1.veth, h1.bridge_subnet) == (
        "host1", "juggler-host1", "10.77.0.11", "jlab0h1", "10.88.1.0/24")
    assert h2.address == "10.77.0.12" and h2.agent_address == "10.77.0.12:5051"
    assert h1.partition_command == "ip -n juggler-host1 link set eth0 down"
    assert h1.heal_command == ("ip -n juggler-host1 link set eth0 up && "
                               "ip -n juggler-host1 route replace default via 10.77.0.1")


def test_other_labs_have_their_own_bridge_subnet_and_names() -> None:
    lab = plan(201, 200)
    assert (lab.bridge, lab.gateway) == ("jlab201", "10.77.201.1")
    last = lab.hosts[-1]
    assert (last.netns, last.address, last.veth) == (
        "jlab201-host200", "10.77.201.210", "jlab201h200")
    assert all(len(h.veth) <= 15 for h in lab.hosts)   # IFNAMSIZ - 1
    assert len({h.netns for h in lab.hosts} | {h.netns for h in plan(0, 200).hosts}) == 400


@pytest.mark.parametrize(("index", "hosts"), [(-1, 1), (256, 1), (0, 0), (0, 201)])
def test_out_of_range_is_refused(index: int, hosts: int) -> None:
    with pytest.raises(ValueError):
        plan(index, hosts)


def test_a_crashed_runs_namespaces_and_bridge_are_cleaned() -> None:
    lab = plan(3, 2)
    record = {"netns": ["jlab3-host1", "jlab3-host2", "jlab3-host3"]}
    assert stale_to_remove(record, {"jlab3-host1", "jlab3-host3", "other"}, f"{ALIAS} 3",
                           lab) == (["jlab3-host1", "jlab3-host3"], True, None)
    assert stale_to_remove(None, set(), None, lab) == ([], False, None)


def test_what_is_not_recorded_as_ours_is_left_alone_and_refused() -> None:
    lab = plan(3, 2)
    _, _, why = stale_to_remove({"netns": ["jlab3-host1"]}, {"jlab3-host1", "jlab3-host2"},
                                None, lab)
    assert why is not None and "jlab3-host2" in why and "not a juggler lab's" in why
    for alias in ("", "docker bridge"):
        remove, bridge, why = stale_to_remove(None, set(), alias, lab)
        assert (remove, bridge) == ([], False)
        assert why is not None and "jlab3 exists and is not a juggler lab's" in why


def test_each_labs_hosts_keep_their_address_leases_apart() -> None:
    # Host i of every lab has subnet 10.88.i.0/24: two labs at once (a fault
    # campaign beside CI's lab tests) shared, and freed, each other's leases.
    from juggler.cli.up import _lab_agent

    argv = ["juggler", "agent", "--host", "x", "--port", "0", "--metrics-port", "0",
            "--hostname", "x"]
    dirs = set()
    for index in (0, 7):
        for h in plan(index, 2).hosts:
            out = _lab_agent(argv, h)
            assert out[out.index("--bridge-subnet") + 1] == h.bridge_subnet
            dirs.add(out[out.index("--ipam-dir") + 1])
    assert dirs == {"/run/juggler/cni/juggler-host1", "/run/juggler/cni/juggler-host2",
                    "/run/juggler/cni/jlab7-host1", "/run/juggler/cni/jlab7-host2"}
