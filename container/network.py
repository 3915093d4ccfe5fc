"""A container's attachment to a CNI network, and its checkpoint on disk.

    agent:     Plan (network config, plugin dirs, runtime dir)
               Attachment.begin   mkdir <networks>/<id>, write record.json,
                                  pin <id>/ns (container/netns.py), start ADD
               (a thread) .finish()  wait for ADD, write result.json (or
                                  error.json); the plan, with <id>, goes to
                                  sandbox/network.json
    executor:  Attachment.adopt   record.json's owner becomes the executor
               fork the container (it setns()es into <id>/ns and mounts its
                                  rootfs while the plugins run)
               .wait()            result.json → the IPs (or error.json's error)
               ... the container runs ...
               .detach()          DEL (reverse order), unpin, rm -r <id>
    agent recovery: entries(), Entry.owner_alive() → detach() or check()

The ADD starts in the agent at launch, not in the executor, so that it runs
while the executor itself starts (~20-50 ms): the added start latency of a
bridge container is what of ADD neither hides. A plan without <id> (an
agent that did not begin it) makes the executor begin and finish the
attachment itself, the same steps in one process.

`<networks>` is the agent's runtime directory for networks (<work dir>/networks);
`<id>` is the CNI container id, one per container run (a uuid: task ids are
reused). record.json holds everything DEL needs (the config used, the plugin
dirs, the interface name, the port mappings, the plugins run) and the owner
(the executor's pid and start time), so a dead executor's attachment is torn
down by the agent exactly as the executor would have. Mesos's network/cni
isolator keeps the same beside its pinned namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from juggler.container import cni, netns
from juggler.container.cni_config import (
    DEFAULT_IFNAME,
    CniError,
    Network,
    add_order,
    ip_addresses,
)

PLAN_FILE = "network.json"  # in the sandbox, written by the agent
RECORD = "record.json"
RESULT = "result.json"
ERROR = "error.json"  # a failed ADD's CniError, for the one waiting on it
PIN = "ns"
WAIT_POLL = 0.002  # seconds between looks at an ADD run by another process


@dataclass(frozen=True)
class Plan:
    """What the agent decided for one task: the network and where things are."""

    network: Network
    plugin_dirs: tuple[str, ...]
    networks_dir: str
    ifname: str = DEFAULT_IFNAME
    # Set when the agent began the attachment itself (ADD under way): the
    # executor adopts it rather than beginning one.
    container_id: str = ""

    def to_json(self) -> str:
        return json.dumps({"network": self.network.to_dict(), "source": self.network.source,
                           "plugin_dirs": list(self.plugin_dirs),
                           "networks_dir": self.networks_dir, "ifname": self.ifname,
                           "container_id": self.container_id})

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Raises ValueError (NetworkError) for a plan that does not parse."""
        doc = json.loads(text)
        return cls(Network.from_dict(doc["network"], doc.get("source", "built-in")),
                   tuple(doc["plugin_dirs"]), doc["networks_dir"],
                   doc.get("ifname", DEFAULT_IFNAME), doc.get("container_id", ""))

    def write(self, sandbox: Path) -> None:
        (sandbox / PLAN_FILE).write_text(self.to_json())

    @classmethod
    def read(cls, sandbox: Path) -> Plan | None:
        """The sandbox's plan; None without one. Raises OSError, ValueError."""
        try:
            text = (sandbox / PLAN_FILE).read_text()
        except FileNotFoundError:
            return None
        return cls.from_json(text)


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot); None when the
    process is gone or a zombie (dead, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[1].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


@dataclass
class Attachment:
    directory: Path
    container_id: str
    plan: Plan
    port_mappings: tuple[dict[str, Any], ...] = ()
    ran: list[int] = field(default_factory=list)
    result: dict[str, Any] | None = None
    _pending: cni.PendingAdd | None = None

    @property
    def netns_path(self) -> Path:
        return self.directory / PIN

    @property
    def adding(self) -> bool:
        """Whether this process runs the ADD (else another does: `wait`)."""
        return self._pending is not None

    @classmethod
    def begin(cls, plan: Plan, container_id: str,
              port_mappings: Sequence[Mapping[str, Any]] = (), owner_pid: int | None = None,
              task_id: str = "", sandbox: str = "") -> Attachment:
        """Checkpoint, pin the namespace and start ADD (container_id: letters,
        digits, '-', '_', '.'). Raises OSError or CniError, having undone what
        it did."""
        directory = Path(plan.networks_dir) / container_id
        # Made whole under a dot name, then renamed: a sweep (agent/networks.py)
        # never sees a directory without its record.
        staging = directory.with_name(f".{container_id}")
        staging.mkdir(parents=True)
        att = cls(directory, container_id, plan, tuple(dict(m) for m in port_mappings))
        att.ran = add_order(plan.network, att.port_mappings)  # DEL of all planned: idempotent
        pid = owner_pid or os.getpid()
        record = {"container_id": container_id, "task_id": task_id, "sandbox": sandbox,
                  "plan": json.loads(plan.to_json()), "port_mappings": list(att.port_mappings),
                  "ran": att.ran, "owner": {"pid": pid, "start_time": process_start_time(pid)}}
        try:
            _write(staging / RECORD, record)
            staging.rename(directory)
            netns.pin(att.netns_path)
            att._pending = cni.PendingAdd.start(
                plan.network, container_id, str(att.netns_path), plan.ifname,
                plan.plugin_dirs, att.port_mappings)
        except (OSError, CniError):
            shutil.rmtree(staging, ignore_errors=True)
            if directory.exists():
                with contextlib.suppress(OSError, CniError):
                    att.detach()
            raise
        return att

    def finish(self) -> list[str]:
        """Wait for ADD; the container's IPs. Raises CniError (the caller
        detaches)."""
        assert self._pending is not None
        try:
            self.result = self._pending.finish()
        except CniError as e:
            with contextlib.suppress(OSError):
                _write(self.directory / ERROR, {"code": e.code, "msg": e.msg,
                                                "details": e.details, "plugin": e.plugin})
            raise
        finally:
            self._pending = None
        _write(self.directory / RESULT, self.result)
        return ip_addresses(self.result, self.plan.ifname)

    @classmethod
    def adopt(cls, plan: Plan, owner_pid: int | None = None) -> Attachment:
        """The attachment the agent began for `plan` (its ADD may still run,
        in the agent): this process becomes its owner. Raises OSError,
        ValueError."""
        directory = Path(plan.networks_dir) / plan.container_id
        rec = json.loads((directory / RECORD).read_text())
        pid = owner_pid or os.getpid()
        rec["owner"] = {"pid": pid, "start_time": process_start_time(pid)}
        _write(directory / RECORD, rec)
        return cls(directory, plan.container_id, plan, tuple(rec.get("port_mappings", ())),
                   list(rec["ran"]))

    def wait(self, timeout: float) -> list[str]:
        """Wait for an ADD another process runs (`adopt`); the IPs. Raises
        CniError: the ADD's, or code 11 after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.result = json.loads((self.directory / RESULT).read_text())
                return ip_addresses(self.result, self.plan.ifname)
            except FileNotFoundError:
                pass
            try:
                err = json.loads((self.directory / ERROR).read_text())
            except FileNotFoundError:
                err = None
            if err is not None:
                raise CniError(int(err["code"]), err["msg"], err.get("details", ""),
                               err.get("plugin", ""), "ADD")
            if time.monotonic() >= deadline:
                raise CniError(11, f"the ADD did not finish within {timeout:g} s", "", "",
                               "ADD")
            time.sleep(WAIT_POLL)

    def detach(self) -> None:
        """DEL, then unpin and remove the directory. Raises CniError or
        OSError. A failed DEL keeps the pin and the record, for the agent to
        try again once the owner is gone (agent/networks.py): the bridge
        plugin finds the masquerade rules to delete through the container's
        interface, so the namespace must outlive a DEL that did not finish."""
        if self._pending is not None:
            self._pending.abandon()
            self._pending = None
        cni.delete(self.plan.network, self.container_id, str(self.netns_path),
                   self.plan.ifname, self.plan.plugin_dirs, self.result, self.ran,
                   self.port_mappings)
        netns.unpin(self.netns_path)
        shutil.rmtree(self.directory, ignore_errors=True)

    def check(self) -> None:
        """CHECK of the plugins run (with the ADD's result). Raises CniError."""
        if self.result is None:
            raise CniError(3, "no ADD result checkpointed (the ADD never finished)", "",
                           "", "CHECK")
        cni.check(self.plan.network, self.container_id, str(self.netns_path),
                  self.plan.ifname, self.plan.plugin_dirs, self.result, self.ran,
                  self.port_mappings)


@dataclass(frozen=True)
class Entry:
    """One attachment found on disk."""

    attachment: Attachment
    owner_pid: int
    owner_start_time: int | None
    task_id: str
    sandbox: str = ""

    def owner_alive(self) -> bool:
        start = process_start_time(self.owner_pid)
        return start is not None and start == self.owner_start_time


def entries(networks_dir: Path) -> tuple[list[Entry], list[Path]]:
    """The attachments under `networks_dir`, and the directories whose
    record does not parse. One without a record is skipped: its owner's
    detach is removing it (a record is in place before any pin)."""
    found: list[Entry] = []
    broken: list[Path] = []
    try:
        names = sorted(os.listdir(networks_dir))
    except FileNotFoundError:
        return found, broken
    for name in names:
        if name.startswith("."):  # being made (Attachment.begin)
            continue
        directory = Path(networks_dir) / name
        try:
            rec = json.loads((directory / RECORD).read_text())
        except FileNotFoundError:  # being removed by its owner's detach
            continue
        except (OSError, ValueError):
            broken.append(directory)
            continue
        try:
            plan = Plan.from_json(json.dumps(rec["plan"]))
            result = None
            with contextlib.suppress(FileNotFoundError):
                result = json.loads((directory / RESULT).read_text())
            att = Attachment(directory, rec["container_id"], plan,
                             tuple(rec.get("port_mappings", ())), list(rec["ran"]), result)
            found.append(Entry(att, int(rec["owner"]["pid"]), rec["owner"]["start_time"],
                               rec.get("task_id", ""), rec.get("sandbox", "")))
        except (OSError, ValueError, KeyError, TypeError):
            broken.append(directory)
    return found, broken


def remove_broken(directory: Path) -> None:
    """A directory without a usable record: unpin and remove it."""
    netns.unpin(directory / PIN)
    shutil.rmtree(directory, ignore_errors=True)


def _write(path: Path, doc: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
