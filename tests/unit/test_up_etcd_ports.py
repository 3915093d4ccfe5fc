"""`juggler up --masters N` starts its own etcd on ports the kernel picks; none
may be one its daemons are about to bind (CI: etcd got the port given as
--metrics-port before master-1 bound it, and master-1 exited "address already
in use")."""

from __future__ import annotations

from pathlib import Path

from juggler.cli.up import _loopback_ports


def _ephemeral() -> range:
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
                 .split())
    return range(low, high + 1)


def test_the_ports_picked_avoid_the_clusters_own() -> None:
    ephemeral = _ephemeral()
    # Every port the kernel may pick but a window of 2,000 is the cluster's.
    middle = ephemeral.start + len(ephemeral) // 2
    window = set(range(middle, middle + 2000))
    own = set(ephemeral) - window
    ports = _loopback_ports(2, own)
    assert len(set(ports)) == 2
    assert set(ports) <= window, f"{ports} include one of the cluster's own ports"
