"""The hosts of `juggler up --hosts N`: a multi-host lab on one machine.

Each host is a network namespace with one veth, its `eth0`, plugged into a lab
bridge in the root namespace; the masters, etcd and the apps service stay in
the root namespace and listen on the bridge's address, so an agent reaches its
master over a real interface, and `ip -n <netns> link set eth0 down` cuts one
host off as a pulled cable would. Lab L (`--lab`, default 0), host i (1-based):

    root namespace                          netns juggler-host<i> (lab 0) / jlab<L>-host<i>
    bridge jlab<L>  10.77.<L>.1/24  ◀─veth─▶  eth0  10.77.<L>.<10+i>/24, default via .1
      └ jlab<L>h<i> (the root end)            lo up, net.ipv4.ip_forward = 1
                                              agent host<i>: API <address>:5051,
                                              --bridge-subnet 10.88.<i>.0/24,
                                              --ipam-dir /run/juggler/cni/<netns>

Ownership: a lab is held by an flock on /run/juggler/labs/jlab<L>.lock for
as long as its `juggler up` lives; beside it jlab<L>.json records what was
made (pid, work dir, netns names, bridge). Taking a lab whose lock is free
removes what the record of a previous (crashed) run names, and only that:
namespaces it lists and a bridge whose alias marks it as a juggler lab's. A
bridge or namespace of the same name that is not recorded as ours is left
alone and the lab is refused, as is a lab whose lock is held (another
`juggler up --hosts` runs).

The netlink work (bridge, veth, addresses, routes) and the named namespaces
(/run/netns bind mounts, as `ip netns add` makes them) are pyroute2's. What
is not netlink: entering a namespace is glibc's setns(2) (an agent between
fork and exec), and ip_forward a write to /proc/sys by a thread that entered
it. Nothing here runs `ip`; the partition and heal commands printed for
people do.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from juggler.container.cni_config import DEFAULT_IPAM_ROOT

STATE_DIR = Path("/run/juggler/labs")
NETNS_DIR = Path("/run/netns")
MAX_LAB = 255
MAX_HOSTS = 200   # addresses .11 … .210 of the lab's /24
PREFIXLEN = 24
AGENT_PORT = 5051          # each host has its own ports: Mesos's agent port on every one
AGENT_METRICS_PORT = 5056
ALIAS = "juggler lab"      # the bridge's ifalias: what marks a bridge as ours
CLONE_NEWNET = 0x40000000


class LabError(Exception):
    """The lab cannot be had (held by another run, a name taken) or made."""


@dataclass(frozen=True)
class LabHost:
    """One host: `name` is the agent's hostname, `address` its IPv4 on the lab
    bridge, `netns` the namespace's name under /run/netns, `veth` the root
    end of its cable, `bridge_subnet` its agent's container network (CIDR),
    `ipam_dir` where that network's address leases live: the host's own (host
    i of every lab has the same subnet), emptied when its namespace is made
    and removed with it."""

    index: int
    name: str
    netns: str
    address: str
    veth: str
    gateway: str
    bridge_subnet: str

    @property
    def partition_command(self) -> str:
        return f"ip -n {self.netns} link set eth0 down"

    @property
    def heal_command(self) -> str:
        # Link down drops the routes through eth0; the connected one comes
        # back with the link, the default route must be put back.
        return (f"ip -n {self.netns} link set eth0 up && "
                f"ip -n {self.netns} route replace default via {self.gateway}")

    @property
    def ipam_dir(self) -> Path:
        return Path(DEFAULT_IPAM_ROOT) / self.netns

    @property
    def agent_address(self) -> str:
        return f"{self.address}:{AGENT_PORT}"


@dataclass(frozen=True)
class Lab:
    """Lab `index`: its bridge (name, gateway address /24) and hosts."""

    index: int
    bridge: str
    gateway: str
    hosts: tuple[LabHost, ...]

    @property
    def lock_path(self) -> Path:
        return STATE_DIR / f"{self.bridge}.lock"

    @property
    def record_path(self) -> Path:
        return STATE_DIR / f"{self.bridge}.json"


def plan(index: int, hosts: int) -> Lab:
    """The names and addresses of lab `index` (0…255) with `hosts` hosts
    (1…200). Raises ValueError outside those ranges."""
    if not 0 <= index <= MAX_LAB:
        raise ValueError(f"--lab must be 0…{MAX_LAB}, not {index}")
    if not 1 <= hosts <= MAX_HOSTS:
        raise ValueError(f"--hosts must be 1…{MAX_HOSTS}, not {hosts}")
    bridge = f"jlab{index}"
    gateway = f"10.77.{index}.1"
    prefix = "juggler" if index == 0 else bridge
    return Lab(index, bridge, gateway, tuple(
        LabHost(index=i, name=f"host{i}", netns=f"{prefix}-host{i}",
                address=f"10.77.{index}.{10 + i}", veth=f"{bridge}h{i}", gateway=gateway,
                bridge_subnet=f"10.88.{i}.0/24")
        for i in range(1, hosts + 1)))


def stale_to_remove(record: dict[str, object] | None, existing_netns: set[str],
                    bridge_alias: str | None, lab: Lab) -> tuple[list[str], bool, str | None]:
    """What to clean before making `lab` when its lock was free: (the
    namespaces to remove, whether to remove the bridge, a refusal or None).
    `record` is the previous run's record (None: none), `existing_netns` the
    names under /run/netns, `bridge_alias` the alias of an existing link
    named like the lab's bridge (None: no such link; "" a link without one)."""
    listed = record.get("netns") if record is not None else None
    recorded = {str(n) for n in listed} if isinstance(listed, list) else set()
    remove = sorted(recorded & existing_netns)
    foreign = sorted({h.netns for h in lab.hosts} & existing_netns - recorded)
    if foreign:
        return [], False, (f"network namespace(s) {', '.join(foreign)} exist and are not a "
                           "juggler lab's (remove them with `ip netns del NAME`, or pick "
                           "another --lab)")
    if bridge_alias is not None and not bridge_alias.startswith(ALIAS):
        return [], False, (f"a link named {lab.bridge} exists and is not a juggler lab's "
                           "bridge; pick another --lab")
    return remove, bridge_alias is not None, None


# -- acting ------------------------------------------------------------------------------

_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _setns(fd: int) -> None:
    """setns(2) into the network namespace open at `fd` (glibc's wrapper).
    Raises OSError."""
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def popen_in(netns_name: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """subprocess.Popen(argv, **kwargs) with the child in the namespace: it
    joins it between fork and exec (setns(2) with the namespace's fd, opened
    here), after the caller's own preexec_fn if one is given. Raises OSError
    when there is no such namespace, and what Popen raises (a failed setns as
    SubprocessError)."""
    fd = os.open(NETNS_DIR / netns_name, os.O_RDONLY | os.O_CLOEXEC)
    before = kwargs.pop("preexec_fn", None)

    def enter() -> None:
        if before is not None:
            before()
        _setns(fd)

    try:
        return subprocess.Popen(argv, preexec_fn=enter, **kwargs)
    finally:
        os.close(fd)


def _in_netns(netns_name: str, fn: Callable[[], None]) -> None:
    """Run `fn` in a thread that joined the namespace (setns(2) moves the
    calling thread only; the thread then ends)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(NETNS_DIR / netns_name, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            fn()
        except BaseException as e:   # handed to the caller
            errors.append(e)

    t = threading.Thread(target=run, name=f"netns-{netns_name}")
    t.start()
    t.join()
    if errors:
        raise errors[0]


def _ip_forward() -> None:
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1")


@contextlib.contextmanager
def held(lab: Lab, work_dir: Path) -> Iterator[Lab]:
    """Take lab `lab`, clean what a crashed run left, make its bridge and
    hosts, and remove all of it at the end. Raises LabError when the lab is
    held by another run or a name is taken by something not ours."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    lock = os.open(lab.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabError(_held_message(lab)) from None
        _clean_stale(lab)
        lab.record_path.write_text(json.dumps({
            "pid": os.getpid(), "work_dir": str(work_dir), "bridge": lab.bridge,
            "netns": [h.netns for h in lab.hosts]}))
        try:
            try:
                _create(lab)
            except Exception as e:   # NetlinkError, OSError: say what could not be made
                raise LabError(f"cannot make lab {lab.index} (bridge {lab.bridge}): "
                               f"{type(e).__name__}: {e}") from e
            yield lab
        finally:
            destroy(lab)
            lab.record_path.unlink(missing_ok=True)
    finally:
        os.close(lock)


def _held_message(lab: Lab) -> str:
    try:
        rec = json.loads(lab.record_path.read_text())
        who = f" (pid {rec.get('pid')}, work dir {rec.get('work_dir')})"
    except (OSError, ValueError):
        who = ""
    return (f"lab {lab.index} (bridge {lab.bridge}, 10.77.{lab.index}.0/24) is in use by "
            f"another `juggler up --hosts`{who}; stop it, or give this one another --lab")


def _clean_stale(lab: Lab) -> None:
    from pyroute2 import IPRoute, netns

    try:
        record = json.loads(lab.record_path.read_text())
    except (OSError, ValueError):
        record = None
    existing = set(netns.listnetns()) if NETNS_DIR.is_dir() else set()
    with IPRoute() as ip:
        links = ip.link("get", ifname=lab.bridge) if ip.link_lookup(ifname=lab.bridge) else []
        alias = links[0].get("IFLA_IFALIAS") or "" if links else None
        remove, bridge, refusal = stale_to_remove(record, existing, alias, lab)
        if refusal is not None:
            raise LabError(refusal)
        for name in remove:
            netns.remove(name)
        if bridge:
            ip.link("del", ifname=lab.bridge)
        # A root end whose namespace was removed goes with its peer; one
        # left by the recorded run's crash between making the veth and
        # moving its peer goes here.
        for h in lab.hosts if record is not None else ():
            if ip.link_lookup(ifname=h.veth):
                ip.link("del", ifname=h.veth)


def _create(lab: Lab) -> None:
    from pyroute2 import IPRoute, NetNS, netns

    with IPRoute() as ip:
        ip.link("add", ifname=lab.bridge, kind="bridge")
        ip.link("set", ifname=lab.bridge, ifalias=f"{ALIAS} {lab.index}")
        (br,) = ip.link_lookup(ifname=lab.bridge)
        ip.addr("add", index=br, address=lab.gateway, prefixlen=PREFIXLEN)
        ip.link("set", index=br, state="up")
        for h in lab.hosts:
            shutil.rmtree(h.ipam_dir, ignore_errors=True)   # a crashed run's: no address is used
            netns.create(h.netns)
            ip.link("add", ifname=h.veth, kind="veth",
                    peer={"ifname": "eth0", "net_ns_fd": h.netns})
            ip.link("set", ifname=h.veth, master=br, state="up")
            with NetNS(h.netns) as ns:
                ns.link("set", ifname="lo", state="up")
                (eth0,) = ns.link_lookup(ifname="eth0")
                ns.addr("add", index=eth0, address=h.address, prefixlen=PREFIXLEN)
                ns.link("set", index=eth0, state="up")
                ns.route("add", dst="default", gateway=lab.gateway)
            _in_netns(h.netns, _ip_forward)


def destroy(lab: Lab) -> None:
    """Remove the lab's namespaces (their eth0 and so the veths go with them)
    and its bridge; what is already gone is skipped."""
    from pyroute2 import IPRoute, netns
    from pyroute2.netlink.exceptions import NetlinkError

    existing = set(netns.listnetns()) if NETNS_DIR.is_dir() else set()
    for h in lab.hosts:
        if h.netns in existing:
            netns.remove(h.netns)
        shutil.rmtree(h.ipam_dir, ignore_errors=True)
    with IPRoute() as ip:
        for name in [*(h.veth for h in lab.hosts), lab.bridge]:
            # A namespace's teardown (which takes its veths) runs in the
            # kernel after the last process leaves it: the link may go
            # between the lookup and the delete.
            with contextlib.suppress(NetlinkError):
                if ip.link_lookup(ifname=name):
                    ip.link("del", ifname=name)
