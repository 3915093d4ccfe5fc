"""The agent's CNI networks: which network a task joins, and recovery.

The executor attaches and detaches its container (container/network.py);
the agent decides *which* network (a `Plan` written into the sandbox beside
task.pb) and cleans up after executors that died without detaching:

- `plan_for(task)`: None unless the task asks for NETWORK_BRIDGE; else its
  ContainerInfo.network_name resolved among the operator's configs
  (--network-cni-config-dir, files .conflist/.conf/.json by their "name",
  re-read at each launch so a config dropped in is used without a restart,
  as Mesos's --network_cni_config_dir) and the built-in "bridge" network
  (cni_config.builtin_bridge over --bridge-subnet). An unknown name raises
  NetworkError listing the known ones: the task fails with it.
- `begin(plan, task, sandbox)`: the attachment is begun by the agent at
  launch (pinned namespace, ADD started, finished in a thread) so that the
  plugins run while the executor starts; the executor adopts it
  (container/network.py). One the executor never adopted (it failed to
  start, or died first) is torn down when the executor is gone.
- The first plan for the built-in network turns net.ipv4.ip_forward on in
  the agent's network namespace (the bridge routes the containers' traffic
  out; Docker's daemon does the same for docker0).
- `recover()` (agent start) and `clean_dead()` (an executor exited): every
  <work dir>/networks/<id> whose owner (executor pid + start time) is dead
  is torn down (DEL, unpin, remove); at start, a live one is CHECKed and a
  failure logged (the CNI spec's CHECK; Mesos does no more either).
- The built-in network has a pool of pre-attached namespaces
  (agent/network_pool.py, --bridge-pool-size): `begin` takes an entry when
  one is ready. Entries live in <work dir>/network-pool, apart from the
  containers' attachments, and are the agent's: `close()` (the agent
  stops) tears them down, and `recover()` tears down those of an earlier
  run of the agent (their owner is that agent process, now gone). A taken
  entry is moved into <work dir>/networks and is a task's like any other.

Leases of the built-in network live in <ipam root>/<subnet> (host-local's
dataDir): agents sharing one network namespace share the subnet's leases;
agents in separate namespace hosts are given different subnets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from juggler.agent.network_pool import DEFAULT_SIZE, POOL_DIR, BridgePool
from juggler.common import logs
from juggler.container import cni, network
from juggler.container.cni_config import (
    BUILTIN,
    DEFAULT_BRIDGE,
    DEFAULT_IPAM_ROOT,
    DEFAULT_PLUGIN_DIRS,
    DEFAULT_SUBNET,
    CniError,
    builtin_bridge,
    known_false_failure,
    port_mapping,
    resolve,
)
from juggler.v1 import common_pb2

log = logs.get("juggler.agent.networks")

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


@dataclass
class NetworkOptions:
    """The agent's flags about networks."""

    config_dir: str = ""  # --network-cni-config-dir
    plugin_dirs: tuple[str, ...] = DEFAULT_PLUGIN_DIRS  # --network-cni-plugins-dir
    bridge_subnet: str = DEFAULT_SUBNET  # --bridge-subnet
    bridge_name: str = DEFAULT_BRIDGE  # --bridge-name
    ipam_root: str = DEFAULT_IPAM_ROOT  # --ipam-dir
    bridge_pool_size: int = DEFAULT_SIZE  # --bridge-pool-size (0: no pool)


class AgentNetworks:
    def __init__(self, work_dir: Path, options: NetworkOptions) -> None:
        """Raises NetworkError for a bad --bridge-subnet."""
        self.options = options
        self.networks_dir = Path(work_dir) / "networks"
        data_dir = str(Path(options.ipam_root) / options.bridge_subnet.replace("/", "_"))
        self.builtin = builtin_bridge(options.bridge_subnet, options.bridge_name, data_dir)
        self._forwarding = False
        self.pool = BridgePool(network.Plan(self.builtin, options.plugin_dirs,
                                            str(Path(work_dir) / POOL_DIR)),
                               options.bridge_pool_size)
        self._sweeping = threading.Lock()  # sweeps run in threads beside the loop

    def plan_for(self, task: common_pb2.TaskInfo) -> network.Plan | None:
        """See the module docstring. Raises NetworkError; OSError when
        ip_forward cannot be set."""
        if task.container.network != common_pb2.NETWORK_BRIDGE:
            return None
        configs: dict = {}
        if self.options.config_dir:
            configs, problems = cni.load_dir(Path(self.options.config_dir))
            for problem in problems:
                log.warning("a CNI config was skipped", problem=problem)
        chosen = resolve(task.container.network_name, configs, self.builtin)
        if chosen is self.builtin and not self._forwarding:
            self._enable_forwarding()
        if chosen is self.builtin:
            self.pool.ensure_started()  # filled from the first use on
        return network.Plan(chosen, self.options.plugin_dirs, str(self.networks_dir))

    def begin(self, plan: network.Plan, task: common_pb2.TaskInfo, sandbox: Path
              ) -> network.Plan:
        """Begin the task's attachment now (pin, first plugin started) and
        finish its ADD in a thread, so the plugins run while the executor
        starts; the plan to give the executor, which adopts it. On the
        built-in network, a ready pool entry is taken instead (only portmap
        left to run, when the task publishes ports). Raises OSError,
        CniError (nothing left behind)."""
        mappings = port_mappings_of(task)
        att = None
        if plan.network is self.builtin and plan.ifname == self.pool.plan.ifname:
            att = self.pool.take(task.task_id, str(sandbox), mappings, self.networks_dir)
        if att is not None:
            if att.adding:
                threading.Thread(target=self._finish, args=(att, task.task_id), daemon=True,
                                 name=f"cni-add-{att.container_id[:8]}").start()
            return dataclasses.replace(plan, container_id=att.container_id)
        cid = uuid.uuid4().hex
        att = network.Attachment.begin(plan, cid, mappings, os.getpid(),
                                       task.task_id, str(sandbox))
        threading.Thread(target=self._finish, args=(att, task.task_id), daemon=True,
                         name=f"cni-add-{cid[:8]}").start()
        return dataclasses.replace(plan, container_id=cid)

    @staticmethod
    def _finish(att: network.Attachment, task_id: str) -> None:
        try:
            att.finish()  # result.json or error.json: the executor waits on them
        except (CniError, OSError) as e:
            log.warning("CNI ADD failed", error=str(e), task_id=task_id,
                        container_id=att.container_id)

    def _enable_forwarding(self) -> None:
        with open(IP_FORWARD) as f:
            on = f.read().strip() == "1"
        if not on:
            with open(IP_FORWARD, "w") as f:
                f.write("1")
            log.info("net.ipv4.ip_forward turned on for the bridge network",
                     network=BUILTIN)
        self._forwarding = True

    def recover(self) -> None:
        """At agent start: tear down the dead executors' attachments, CHECK the
        live ones, and tear down an earlier run's pool entries (blocking:
        run it beside the loop)."""
        self.pool.clear_stale()
        self._sweep(check_alive=True)

    def close(self) -> None:
        """The agent stops: the pool's entries are torn down (blocking: up to
        a plugin's ADD and the DELs). Containers' attachments are kept."""
        self.pool.close()

    def clean_dead(self, sandbox: Path | None = None) -> None:
        """After an executor exited: tear down attachments left by dead owners,
        and the one this agent began for `sandbox` that no executor adopted."""
        self._sweep(check_alive=False, orphan=str(sandbox) if sandbox else None)

    def _sweep(self, check_alive: bool, orphan: str | None = None) -> None:
        with self._sweeping:
            self._sweep_once(check_alive, orphan)

    def _sweep_once(self, check_alive: bool, orphan: str | None = None) -> None:
        found, broken = network.entries(self.networks_dir)
        for directory in broken:
            log.warning("removing a network directory without a record", path=str(directory))
            try:
                network.remove_broken(directory)
            except OSError as e:
                log.error("could not remove it", path=str(directory), error=str(e))
        for entry in found:
            att = entry.attachment
            ids = {"container_id": att.container_id, "task_id": entry.task_id,
                   "network": att.plan.network.name}
            never_adopted = entry.owner_pid == os.getpid() and entry.sandbox == orphan
            if never_adopted:
                with contextlib.suppress(CniError):
                    att.wait(cni.PLUGIN_TIMEOUT)  # its ADD, in this agent, ends first
            elif entry.owner_alive():
                if check_alive and att.result is not None:  # None: its ADD is under way
                    try:
                        att.check()
                        log.info("CNI CHECK passed", **ids)
                    except CniError as e:
                        if known := known_false_failure(e, att.result):
                            log.info("CNI CHECK failure ignored: a known plugin bug",
                                     error=str(e), why=known, **ids)
                        else:
                            log.warning("CNI CHECK failed for a running container",
                                        error=str(e), **ids)
                continue
            log.info("tearing down the network of a dead executor", owner=entry.owner_pid,
                     **ids)
            try:
                att.detach()
            except (CniError, OSError) as e:
                log.error("could not tear the network down", error=str(e), **ids)


def port_mappings_of(task: common_pb2.TaskInfo) -> list[dict]:
    """The task's ContainerInfo.port_mappings as the portMappings capability's entries."""
    return [port_mapping(m.host_port, m.container_port, m.protocol)
            for m in task.container.port_mappings]
