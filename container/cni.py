"""Run CNI plugins as the CNI specification's runtime side (spec 1.0.0).

The configuration each plugin gets, its environment and the reading of its
output are pure (container/cni_config.py); this module finds the plugin
executables in the plugin directories, runs them and chains their results:

    PendingAdd.start(...)   starts ADD's first plugin and returns at once, so
                            the caller overlaps the plugins with its own work
                            (the executor forks the container meanwhile);
    .finish()               waits, runs the rest of the chain, returns the
                            final result (a dict) and the plugins run;
    delete(...)             DEL of those plugins in reverse order;
    check(...)              CHECK of those plugins in order;
    load_dir(directory)     operators' configs by name.

Every failure is a cni_config.CniError carrying the spec's code, message and
details and naming the plugin. No thread: a plugin is a child process whose
stdin (a few hundred bytes, below the pipe buffer) is written whole at once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from juggler.container import syscalls
from juggler.container.cni_config import (
    CONFIG_SUFFIXES,
    ERR_NO_PLUGIN,
    CniError,
    Network,
    NetworkError,
    add_order,
    delete_order,
    environment,
    parse_result,
    plugin_config,
    plugin_error,
)

PLUGIN_TIMEOUT = 60.0  # seconds one plugin may take (iptables lock waits included)
# The plugins' own tools (iptables, ip): the agent's PATH may be a venv's.
TOOLS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_plugin(kind: str, plugin_dirs: Sequence[str]) -> str:
    """The executable for plugin type `kind`, first in `plugin_dirs`.
    Raises CniError (ERR_NO_PLUGIN) naming the directories searched."""
    for directory in plugin_dirs:
        path = os.path.join(directory, kind)
        if os.access(path, os.X_OK) and os.path.isfile(path):
            return path
    raise CniError(ERR_NO_PLUGIN, f"no plugin {kind!r} in {':'.join(plugin_dirs)} "
                   "(Debian: apt-get install containernetworking-plugins)", "", kind)


def _base_env() -> dict[str, str]:
    return {"PATH": TOOLS_PATH}


@contextlib.contextmanager
def _own_pid_namespace() -> Iterator[None]:
    """Fork in this thread's own pid namespace, not the one its children go
    to: an executor unshared CLONE_NEWPID for its container, so a plugin
    forked as is would be a process of the container's pid namespace, and
    once the container's pid 1 is gone every fork there fails (ENOMEM), DEL's
    included. Restored after."""
    try:
        own = os.open("/proc/thread-self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        children = os.open("/proc/thread-self/ns/pid_for_children", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # unshared, no child yet: children go to a namespace yet to be born
        children = -1
    try:
        if children >= 0 and os.fstat(own).st_ino == os.fstat(children).st_ino:
            yield
            return
        syscalls.setns(own, syscalls.CLONE_NEWPID)
        try:
            yield
        finally:
            if children >= 0:
                syscalls.setns(children, syscalls.CLONE_NEWPID)
    finally:
        os.close(own)
        if children >= 0:
            os.close(children)


def _spawn(network: Network, index: int, command: str, container_id: str, netns: str,
           ifname: str, plugin_dirs: Sequence[str], prev: Mapping[str, Any] | None,
           port_mappings: Sequence[Mapping[str, Any]]) -> subprocess.Popen[bytes]:
    kind = network.plugins[index]["type"]
    exe = find_plugin(kind, plugin_dirs)
    stdin = plugin_config(network, index, prev, port_mappings)
    with _own_pid_namespace():
        proc = subprocess.Popen(  # a plugin from the operator's plugin dirs
            [exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=environment(command, container_id, netns, ifname, plugin_dirs, _base_env()),
            close_fds=True)
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):  # it exited already: its output says why
        proc.stdin.write(stdin)
    proc.stdin.close()
    proc.stdin = None  # communicate() then only reads
    return proc


def _wait(proc: subprocess.Popen[bytes], kind: str, command: str) -> bytes:
    try:
        out, err = proc.communicate(timeout=PLUGIN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise CniError(11, f"did not finish within {PLUGIN_TIMEOUT:g} s", "", kind,
                       command) from None
    if proc.returncode != 0:
        raise plugin_error(kind, command, proc.returncode, out, err)
    return out


@dataclass
class PendingAdd:
    """An ADD under way. `ran`: the indices of the plugins run so far (each
    one started counts: a failed ADD is undone by DEL of these)."""

    network: Network
    container_id: str
    netns: str
    ifname: str
    plugin_dirs: tuple[str, ...]
    port_mappings: tuple[dict[str, Any], ...]
    order: list[int]
    ran: list[int] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, network: Network, container_id: str, netns: str, ifname: str,
              plugin_dirs: Sequence[str], port_mappings: Sequence[Mapping[str, Any]] = ()
              ) -> PendingAdd:
        """Start the chain's first plugin; raises CniError if it cannot start."""
        add = cls(network, container_id, netns, ifname, tuple(plugin_dirs),
                  tuple(dict(m) for m in port_mappings), add_order(network, port_mappings))
        add._next(None)
        return add

    @classmethod
    def resume(cls, network: Network, container_id: str, netns: str, ifname: str,
               plugin_dirs: Sequence[str], port_mappings: Sequence[Mapping[str, Any]],
               done: Sequence[int], prev: Mapping[str, Any]) -> PendingAdd:
        """Continue an ADD whose first plugins `done` (a prefix of the
        chain's add_order) ran and gave `prev`: start the next one with
        `prev` as its prevResult (agent/network_pool.py). Raises CniError if
        it cannot start; ValueError when nothing is left to run."""
        add = cls(network, container_id, netns, ifname, tuple(plugin_dirs),
                  tuple(dict(m) for m in port_mappings), add_order(network, port_mappings),
                  list(done))
        if add.order[:len(add.ran)] != add.ran or len(add.ran) >= len(add.order):
            raise ValueError(f"cannot continue plugins {add.ran} into {add.order}")
        add._next(prev)
        return add

    def _next(self, prev: Mapping[str, Any] | None) -> None:
        index = self.order[len(self.ran)]
        self.ran.append(index)
        self._proc = _spawn(self.network, index, "ADD", self.container_id, self.netns,
                            self.ifname, self.plugin_dirs, prev, self.port_mappings)

    def finish(self) -> dict[str, Any]:
        """Wait for the chain; the final result. Raises CniError."""
        result: dict[str, Any] = {}
        while True:
            assert self._proc is not None
            kind = self.network.plugins[self.ran[-1]]["type"]
            result = parse_result(_wait(self._proc, kind, "ADD"), kind)
            self._proc = None
            if len(self.ran) == len(self.order):
                return result
            self._next(result)

    def abandon(self) -> None:
        """Stop a plugin still running (the launch failed meanwhile)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.communicate()
            self._proc = None


def add(network: Network, container_id: str, netns: str, ifname: str,
        plugin_dirs: Sequence[str], port_mappings: Sequence[Mapping[str, Any]] = ()
        ) -> tuple[dict[str, Any], list[int]]:
    """ADD, waited for: (result, plugins run). On failure, DEL of what ran
    is attempted and the ADD's CniError raised."""
    pending = PendingAdd.start(network, container_id, netns, ifname, plugin_dirs,
                               port_mappings)
    try:
        return pending.finish(), pending.ran
    except CniError:
        with contextlib.suppress(CniError):
            delete(network, container_id, netns, ifname, plugin_dirs, None, pending.ran,
                   port_mappings)
        raise


def delete(network: Network, container_id: str, netns: str, ifname: str,
           plugin_dirs: Sequence[str], prev_result: Mapping[str, Any] | None,
           ran: Sequence[int], port_mappings: Sequence[Mapping[str, Any]] = ()) -> None:
    """DEL of the plugins `ran`, in reverse order, each with the ADD's result
    (None if it never finished). `netns` may be gone: the spec has plugins
    clean up what they can anyway. A plugin missing from the plugin dirs is
    skipped (it did nothing to undo). Goes on past a failure; raises the
    first CniError (or OSError) at the end."""
    first: CniError | OSError | None = None
    for index in delete_order(ran):
        kind = network.plugins[index]["type"]
        try:
            _wait(_spawn(network, index, "DEL", container_id, netns, ifname, plugin_dirs,
                         prev_result, port_mappings), kind, "DEL")
        except CniError as e:
            if e.code != ERR_NO_PLUGIN:  # a plugin that is not there made nothing to undo
                first = first or e
        except OSError as e:  # the plugin could not be started
            first = first or e
    if first is not None:
        raise first


def check(network: Network, container_id: str, netns: str, ifname: str,
          plugin_dirs: Sequence[str], prev_result: Mapping[str, Any],
          ran: Sequence[int], port_mappings: Sequence[Mapping[str, Any]] = ()) -> None:
    """CHECK of the plugins `ran`, in order; raises the first CniError. A
    network with "disableCheck": true is not checked (spec)."""
    if network.extra.get("disableCheck") is True:
        return
    for index in ran:
        kind = network.plugins[index]["type"]
        _wait(_spawn(network, index, "CHECK", container_id, netns, ifname, plugin_dirs,
                     prev_result, port_mappings), kind, "CHECK")


def load_dir(directory: Path) -> tuple[dict[str, Network], list[str]]:
    """The configs in `directory` (files ending .conflist, .conf, .json), by
    their "name", in lexical order of file name (the first of a name wins, as
    libcni's order), and a message for each file skipped (bad JSON, no name,
    a name taken). A missing directory has none."""
    networks: dict[str, Network] = {}
    problems: list[str] = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return networks, problems
    for fname in names:
        if not fname.endswith(CONFIG_SUFFIXES):
            continue
        path = Path(directory) / fname
        try:
            network = Network.parse(path.read_text(), str(path))
        except (OSError, NetworkError) as e:
            problems.append(str(e))
            continue
        if network.name in networks:
            problems.append(f"{path}: network {network.name!r} is already defined by "
                            f"{networks[network.name].source}; skipped")
            continue
        networks[network.name] = network
    return networks, problems
