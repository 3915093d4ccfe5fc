"""A pool of pre-attached namespaces for the agent's built-in "bridge" network.

The bridge plugin's ADD (veth, IPAM lease, masquerade rules: ~36 ms, most of
it iptables) is the larger part of a bridge container's added start
latency. The pool does it ahead of time: the agent keeps `size` attachments
(container/network.py) whose ADD of the network's non-portMappings plugins
is done, each in its own pinned namespace; a launch on the built-in network
takes one and only the portmap plugin is left to run, chained on the
entry's result (its prevResult) with the task's runtimeConfig.portMappings,
when the task publishes ports. A refill thread makes a new entry after each
take. Only the built-in network is pooled: an operator's config may change
between the ADD and the launch.

    <work dir>/network-pool/<id>   an entry: record.json (owner: the agent,
                                   no task), ns (the pin), result.json
    take()                         record rewritten for the task (owner still
                                   the agent, its task id and sandbox, the
                                   plugins planned), result.json dropped when
                                   portmap is to run, then the directory is
                                   renamed to <work dir>/networks/<id>: from
                                   there on it is the task's attachment, as
                                   one begun at launch (agent/networks.py),
                                   adopted by the executor, DEL'd by whoever
                                   ends it with the same CNI container id <id>.

Decisions, written down:
- the pool starts filling at the first launch on the built-in network, not
  at agent start: an agent that never runs a bridge container makes no
  bridge, no lease and no iptables rule (most agents of a test suite, or a
  host-network cluster);
- an entry is the agent process's, not a container's: `close()` (the agent
  stops normally) tears every entry down (DEL, unpin, remove), and
  `clear_stale()` (agent start, and before the refill thread first fills)
  tears down every entry whose owner is not this very process (pid and
  start time): a restarted agent never reuses an earlier run's entries,
  whose network config (subnet, bridge name) may have changed since;
- entries are taken oldest first and torn down oldest first;
- a failed refill ADD is undone and retried after a growing delay
  (`backoff`), so missing plugins cost a warning, not a busy loop;
- the refill thread runs at nice 10, and so do the plugins it forks (Linux
  keeps the nice value per thread, and a child inherits its forking
  thread's): a refill never competes on equal terms with the launch that
  caused it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import threading
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from juggler.common import logs
from juggler.container import cni, network
from juggler.container.cni_config import CniError, add_order

log = logs.get("juggler.agent.network_pool")

POOL_DIR = "network-pool"  # under the agent's work dir
DEFAULT_SIZE = 2  # --bridge-pool-size
REFILL_NICE = 10
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before refill attempt n+1 after n failures
CLOSE_WAIT = 2 * cni.PLUGIN_TIMEOUT  # seconds close() waits for an ADD under way


def backoff(failures: int) -> float:
    """Seconds to wait before the next refill after `failures` (>= 1) in a row."""
    return BACKOFF[min(failures, len(BACKOFF)) - 1]


@dataclass
class PoolBook:
    """The pool's decisions, pure: which entry a launch takes, how many ADDs
    to start, what to tear down. Entry ids are CNI container ids."""

    size: int
    ready: deque[str] = field(default_factory=deque)  # ADD done; oldest first
    adding: int = 0  # refill ADDs under way
    failures: int = 0  # refill failures in a row
    closed: bool = False

    def take(self) -> str | None:
        """The oldest ready entry, now the caller's; None when none is ready
        (the launch attaches afresh)."""
        return self.ready.popleft() if self.ready else None

    def to_start(self) -> int:
        """How many refill ADDs to start now (0 once closed)."""
        if self.closed:
            return 0
        return max(0, self.size - len(self.ready) - self.adding)

    def started(self) -> None:
        self.adding += 1

    def added(self, entry: str) -> bool:
        """A refill ADD finished: whether `entry` joins the pool (False once
        closed: the caller tears it down)."""
        self.adding -= 1
        self.failures = 0
        if self.closed:
            return False
        self.ready.append(entry)
        return True

    def failed(self) -> float:
        """A refill ADD failed (and was undone): seconds to wait before the next."""
        self.adding -= 1
        self.failures += 1
        return backoff(self.failures)

    def close(self) -> list[str]:
        """No more refills or takes: the entries to tear down, oldest first."""
        self.closed = True
        out = list(self.ready)
        self.ready.clear()
        return out


def remaining_plugins(order: Sequence[int], ran: Sequence[int]) -> list[int]:
    """The plugins of `order` (cni_config.add_order for the task's port
    mappings) that the pool entry's ADD (`ran`) did not run, in order.
    Raises ValueError when `ran` is not a prefix of `order` (the entry
    cannot be continued into that chain)."""
    if list(order[:len(ran)]) != list(ran):
        raise ValueError(f"a pool entry that ran plugins {list(ran)} cannot continue into "
                         f"{list(order)}")
    return list(order[len(ran):])


def moved_result(result: Mapping[str, Any], old_netns: str, new_netns: str
                 ) -> dict[str, Any]:
    """An ADD result whose namespace was pinned at `old_netns` and is now at
    `new_netns` (the entry's directory was renamed): each interface's
    "sandbox" (the spec's path of the namespace it is in) follows, so that
    CHECK, whose CNI_NETNS is the new path, finds them matching (the bridge
    plugin compares them)."""
    out = dict(result)
    out["interfaces"] = [
        {**itf, "sandbox": new_netns} if isinstance(itf, dict) and itf.get("sandbox") ==
        old_netns else itf for itf in result.get("interfaces") or []]
    return out


class BridgePool:
    """The pool of one agent (see the module docstring). Thread-safe: a
    lock makes every take of an entry exclusive."""

    def __init__(self, plan: network.Plan, size: int) -> None:
        """`plan`: the built-in network, its plugin dirs, and the pool
        directory as its networks_dir."""
        self.plan = plan
        self.dir = Path(plan.networks_dir)
        self._book = PoolBook(size)
        self._entries: dict[str, network.Attachment] = {}
        self._cond = threading.Condition()
        self._clearing = threading.Lock()
        self._thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        """Start the refill thread (once; not after close())."""
        with self._cond:
            if self._thread is not None or self._book.closed or self._book.size <= 0:
                return
            self._thread = threading.Thread(target=self._refill, daemon=True,
                                            name="cni-bridge-pool")
            self._thread.start()

    def take(self, task_id: str, sandbox: str, port_mappings: Sequence[Mapping[str, Any]],
             networks_dir: Path) -> network.Attachment | None:
        """A ready entry made the task's attachment under `networks_dir`, its
        remaining plugins (portmap when the task publishes ports) started:
        call .finish() on it when .adding. None when no entry is ready.
        Raises CniError (the remaining plugin could not start; the entry is
        torn down)."""
        with self._cond:
            cid = self._book.take()
            if cid is None:
                return None
            entry = self._entries.pop(cid)
            self._cond.notify_all()  # refill
        try:
            return self._hand_over(entry, task_id, sandbox, port_mappings, networks_dir)
        except (OSError, ValueError) as e:  # fall back to a fresh attachment
            log.warning("a bridge pool entry could not be handed over", error=str(e),
                        container_id=cid)
            with contextlib.suppress(OSError, CniError):
                _attachment_at(entry, networks_dir).detach()
            return None

    def _hand_over(self, entry: network.Attachment, task_id: str, sandbox: str,
                   port_mappings: Sequence[Mapping[str, Any]], networks_dir: Path
                   ) -> network.Attachment:
        mappings = tuple(dict(m) for m in port_mappings)
        order = add_order(entry.plan.network, mappings)
        rest = remaining_plugins(order, entry.ran)
        plan = dataclasses.replace(entry.plan, networks_dir=str(networks_dir))
        target = networks_dir / entry.container_id
        assert entry.result is not None
        result = moved_result(entry.result, str(entry.netns_path), str(target / network.PIN))
        rec = json.loads((entry.directory / network.RECORD).read_text())
        rec.update(task_id=task_id, sandbox=sandbox, plan=json.loads(plan.to_json()),
                   port_mappings=list(mappings), ran=order)  # DEL of all planned
        _write(entry.directory / network.RECORD, rec)
        if rest:  # the executor waits for the chain's final result
            (entry.directory / network.RESULT).unlink()
        else:
            _write(entry.directory / network.RESULT, result)
        networks_dir.mkdir(parents=True, exist_ok=True)
        entry.directory.rename(target)
        att = network.Attachment(target, entry.container_id, plan, mappings, order,
                                 None if rest else result)
        if not rest:
            return att
        try:
            pending = cni.PendingAdd.resume(
                plan.network, att.container_id, str(att.netns_path), plan.ifname,
                plan.plugin_dirs, mappings, entry.ran, result)
        except CniError:
            with contextlib.suppress(OSError, CniError):
                att.detach()
            raise
        return network.Attachment(target, entry.container_id, plan, mappings, order, None,
                                  pending)

    def close(self) -> None:
        """Stop refilling and tear every entry down (the agent stops). Errors
        are logged: what DEL could not undo is left for clear_stale() of the
        next run."""
        with self._cond:
            doomed = [self._entries.pop(cid) for cid in self._book.close()]
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(CLOSE_WAIT)
        for att in doomed:
            if att.directory.exists():  # else someone tore it down already
                _detach(att, "tearing down a bridge pool entry")

    def clear_stale(self) -> None:
        """Tear down the entries of another process (an earlier run of the
        agent); this process's own are kept."""
        me = (os.getpid(), network.process_start_time(os.getpid()))
        with self._clearing:
            _remove_staging(self.dir)
            found, broken = network.entries(self.dir)
            for directory in broken:
                with contextlib.suppress(OSError):
                    network.remove_broken(directory)
            for entry in found:
                if (entry.owner_pid, entry.owner_start_time) != me:
                    _detach(entry.attachment, "tearing down an earlier run's bridge pool entry")

    # -- the refill thread ------------------------------------------------------------
    def _refill(self) -> None:
        with contextlib.suppress(OSError):  # the plugins it forks inherit it
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), REFILL_NICE)
        self.clear_stale()
        while True:
            with self._cond:
                while self._book.to_start() == 0 and not self._book.closed:
                    self._cond.wait()
                if self._book.closed:
                    return
                self._book.started()
            cid = uuid.uuid4().hex
            try:
                with self._clearing:  # no half-made entry while clear_stale looks
                    att = network.Attachment.begin(self.plan, cid)  # owner: this agent
            except (OSError, CniError) as e:
                self._failed(cid, e)
                continue
            try:
                att.finish()
            except (OSError, CniError) as e:
                with contextlib.suppress(OSError, CniError):
                    att.detach()
                self._failed(cid, e)
                continue
            with self._cond:
                keep = self._book.added(cid)
                if keep:
                    self._entries[cid] = att
            if not keep:
                _detach(att, "tearing down a bridge pool entry made while closing")

    def _failed(self, cid: str, error: Exception) -> None:
        with self._cond:
            delay = self._book.failed()
            log.warning("could not add a bridge pool entry; retrying later",
                        error=str(error), container_id=cid, retry_in_s=delay)
            self._cond.wait_for(lambda: self._book.closed, delay)


def _remove_staging(pool_dir: Path) -> None:
    """Remove half-made entries (".<id>": a record, no pin yet; container/
    network.py Attachment.begin): this process makes none while clearing."""
    try:
        names = [n for n in os.listdir(pool_dir) if n.startswith(".")]
    except FileNotFoundError:
        return
    for name in names:
        shutil.rmtree(pool_dir / name, ignore_errors=True)


def _attachment_at(entry: network.Attachment, networks_dir: Path) -> network.Attachment:
    """`entry` where it is now: in the pool, or already moved to `networks_dir`."""
    moved = networks_dir / entry.container_id
    if entry.directory.exists() or not moved.exists():
        return entry
    return dataclasses.replace(entry, directory=moved)


def _detach(att: network.Attachment, what: str) -> None:
    log.info(what, container_id=att.container_id)
    try:
        att.detach()
    except (OSError, CniError) as e:
        log.error("could not tear a bridge pool entry down", error=str(e),
                  container_id=att.container_id)


def _write(path: Path, doc: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
