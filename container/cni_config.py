"""CNI network configurations and plugin results: pure, no I/O.

What the CNI specification (containernetworking/cni SPEC.md, spec 1.0.0)
asks of a runtime, as values: a network configuration list ("conflist": a
`name`, a `cniVersion` and a chain of `plugins`), the configuration each
plugin gets on stdin, its environment, and how its stdout is read.

    Network.parse(text, source)      a .conflist, or a single plugin's .conf/.json
                                     (spec 0.x, which juggler still reads, as libcni
                                     ConfListFromConf does: a list of one plugin)
    builtin_bridge(subnet, ...)      the agent's own "bridge" network
    resolve(name, networks)          the network a task names ("" / "bridge": built-in)
    plugin_config(...)               one plugin's stdin: its object plus the list's
                                     `name` and `cniVersion`, `prevResult`, and the
                                     `runtimeConfig` of the capabilities it declares
    add_order / delete_order         which plugins run, in which order
    environment(...)                 CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS,
                                     CNI_IFNAME, CNI_PATH (and CNI_ARGS empty)
    parse_result / ip_addresses      a plugin's success JSON, the container's IPs
    plugin_error(...)                a failure: CniError(code, msg, details)

Rules taken from the spec (facts, not code): ADD runs the plugins in order,
each getting the previous one's result as `prevResult`; DEL runs them in
reverse order, each getting the ADD's final result as `prevResult`; CHECK
runs them in order with that same result. A plugin declaring a capability in
`capabilities` gets the runtime's value for it under `runtimeConfig` (libcni
injectRuntimeConfig; the `portMappings` capability is a list of {hostPort,
containerPort, protocol}, CONVENTIONS.md). Errors are `{cniVersion, code,
msg, details}` on stdout with a non-zero exit; codes 1-99 are the spec's
(1 incompatible version, 2 unsupported field, 3 container unknown, 4 invalid
environment, 5 I/O, 6 decode, 7 invalid config, 11 try again later).

juggler's own decisions, written down:
- a plugin whose capabilities are all `portMappings` is skipped when the
  container publishes no port (the portmap plugin then has nothing to do and
  costs ~50 ms); the plugins run are checkpointed, and DEL runs exactly those;
- DEL goes on through the rest of the chain when one plugin fails (libcni
  stops at the first), so one broken plugin leaves as little behind as it can;
  the first failure is what is reported.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CNI_VERSION = "1.0.0"
BUILTIN = "bridge"  # Docker's default network's name, and the agent's built-in one
DEFAULT_SUBNET = "10.88.0.0/24"
DEFAULT_BRIDGE = "juggler0"
DEFAULT_PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
DEFAULT_IFNAME = "eth0"
# Where the built-in network's leases live (host-local's dataDir root; agent --ipam-dir).
DEFAULT_IPAM_ROOT = "/run/juggler/cni"
CONFIG_SUFFIXES = (".conflist", ".conf", ".json")  # libcni's, as Mesos reads them
PORT_MAPPINGS = "portMappings"

# Spec error codes (SPEC.md "Error"); juggler's own start at 100, as the spec reserves.
ERR_INCOMPATIBLE_VERSION = 1
ERR_INVALID_CONFIG = 7
ERR_TRY_AGAIN = 11
ERR_PLUGIN_FAILED = 100  # a plugin that failed without the spec's JSON
ERR_NO_PLUGIN = 101  # no executable of that type in CNI_PATH


class NetworkError(ValueError):
    """A network configuration that cannot be used, or a name that names none."""


class CniError(Exception):
    """A plugin failed: the spec's error object, and which plugin, for which command."""

    def __init__(self, code: int, msg: str, details: str = "", plugin: str = "",
                 command: str = "") -> None:
        self.code, self.msg, self.details = code, msg, details
        self.plugin, self.command = plugin, command
        where = f"CNI plugin {plugin!r} {command}" if plugin else "CNI"
        text = f"{where}: {msg}" + (f" ({details})" if details else "")
        super().__init__(f"{text} [code {code}]")


@dataclass(frozen=True)
class Network:
    """One network configuration list. `plugins`: the plugin objects, in order."""

    name: str
    cni_version: str
    plugins: tuple[dict[str, Any], ...]
    source: str = "built-in"
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level keys (disableCheck…)

    @classmethod
    def parse(cls, text: str, source: str) -> Network:
        """A conflist (has `plugins`) or a single plugin's config (has `type`).
        Raises NetworkError naming `source` for bad JSON, a missing name, an
        empty chain or a plugin without `type`."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise NetworkError(f"{source}: not JSON: {e}") from None
        return cls.from_dict(doc, source)

    @classmethod
    def from_dict(cls, doc: Any, source: str = "built-in") -> Network:
        if not isinstance(doc, dict):
            raise NetworkError(f"{source}: a network configuration is a JSON object")
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            raise NetworkError(f"{source}: the configuration has no \"name\"")
        version = doc.get("cniVersion") or CNI_VERSION
        if not isinstance(version, str):
            raise NetworkError(f"{source}: \"cniVersion\" must be a string")
        if "plugins" in doc:
            plugins = doc["plugins"]
            extra = {k: v for k, v in doc.items() if k not in ("name", "cniVersion", "plugins")}
        else:  # a single plugin (.conf): a list of one, as libcni ConfListFromConf
            plugins = [{k: v for k, v in doc.items() if k not in ("name", "cniVersion")}]
            extra = {}
        if not isinstance(plugins, list) or not plugins:
            raise NetworkError(f"{source}: network {name!r} has no plugins")
        for i, plugin in enumerate(plugins):
            if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str) \
                    or not plugin["type"] or "/" in plugin["type"]:
                raise NetworkError(f"{source}: plugin {i} of network {name!r} has no valid "
                                   "\"type\" (a plugin's executable name)")
        return cls(name, version, tuple(plugins), source, extra)

    def to_dict(self) -> dict[str, Any]:
        return {"cniVersion": self.cni_version, "name": self.name, **self.extra,
                "plugins": list(self.plugins)}


def builtin_bridge(subnet: str = DEFAULT_SUBNET, bridge: str = DEFAULT_BRIDGE,
                   data_dir: str = "") -> Network:
    """The agent's built-in "bridge" network: Linux bridge `bridge` as the
    gateway, masquerading outbound traffic (as Docker's docker0), hairpin on
    (a container reaches its own published port), host-local IPAM over
    `subnet` (CIDR) with its leases in `data_dir` (agents sharing a network
    namespace must share it), then portmap for published ports (snat on, so
    the host itself reaches them). No firewall plugin: the FORWARD policy is
    the host's. Raises NetworkError for a subnet that is not an IPv4 CIDR of
    at least 4 addresses."""
    try:
        net = ipaddress.ip_network(subnet, strict=False)
    except ValueError as e:
        raise NetworkError(f"--bridge-subnet {subnet!r}: {e}") from None
    if net.version != 4 or net.num_addresses < 4:
        raise NetworkError(f"--bridge-subnet {subnet!r}: an IPv4 network of at least 4 "
                           "addresses (e.g. 10.88.0.0/24)")
    ipam: dict[str, Any] = {"type": "host-local", "ranges": [[{"subnet": str(net)}]],
                            "routes": [{"dst": "0.0.0.0/0"}]}
    if data_dir:
        ipam["dataDir"] = data_dir
    return Network(BUILTIN, CNI_VERSION, (
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True,
         "hairpinMode": True, "ipam": ipam},
        {"type": "portmap", "capabilities": {PORT_MAPPINGS: True}, "snat": True},
    ))


def resolve(name: str, networks: Mapping[str, Network], builtin: Network) -> Network:
    """The network `name` names: "" or "bridge" → `builtin` (unless an
    operator's config took the name "bridge"), else `networks[name]`. Raises
    NetworkError listing the known names."""
    if name in ("", BUILTIN) and BUILTIN not in networks:
        return builtin
    if name in networks:
        return networks[name]
    known = sorted({BUILTIN, *networks})
    raise NetworkError(f"unknown network {name!r}: this agent knows {', '.join(known)} "
                       "(operators add networks as CNI configs in --network-cni-config-dir)")


def runtime_config(plugin: Mapping[str, Any], port_mappings: Sequence[Mapping[str, Any]]
                   ) -> dict[str, Any]:
    """What the runtime supplies for the capabilities `plugin` declares (only
    portMappings here)."""
    caps = plugin.get("capabilities") or {}
    out: dict[str, Any] = {}
    if caps.get(PORT_MAPPINGS):
        out[PORT_MAPPINGS] = [dict(m) for m in port_mappings]
    return out


def port_mapping(host_port: int, container_port: int, protocol: str = "") -> dict[str, Any]:
    """One entry of the portMappings capability (CONVENTIONS.md)."""
    return {"hostPort": host_port, "containerPort": container_port,
            "protocol": protocol or "tcp"}


def _only_ports(plugin: Mapping[str, Any]) -> bool:
    caps = {k for k, v in (plugin.get("capabilities") or {}).items() if v}
    return caps == {PORT_MAPPINGS}


def add_order(network: Network, port_mappings: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indices of the plugins ADD runs, in order (see the module docstring
    for the portMappings-only rule)."""
    return [i for i, p in enumerate(network.plugins) if port_mappings or not _only_ports(p)]


def delete_order(ran: Sequence[int]) -> list[int]:
    """DEL: the plugins ADD ran, in reverse order."""
    return list(reversed(ran))


def plugin_config(network: Network, index: int, prev_result: Mapping[str, Any] | None,
                  port_mappings: Sequence[Mapping[str, Any]]) -> bytes:
    """Plugin `index`'s stdin (spec "Deriving execution configuration")."""
    conf = dict(network.plugins[index])
    conf["name"] = network.name
    conf["cniVersion"] = network.cni_version
    runtime = runtime_config(conf, port_mappings)
    if runtime:
        conf["runtimeConfig"] = runtime
    else:
        conf.pop("runtimeConfig", None)
    if prev_result is not None:
        conf["prevResult"] = dict(prev_result)
    return json.dumps(conf).encode()


def environment(command: str, container_id: str, netns: str, ifname: str,
                plugin_dirs: Sequence[str], base: Mapping[str, str] | None = None
                ) -> dict[str, str]:
    """A plugin's environment: `base` (PATH for the plugins' own tools, e.g.
    iptables) plus the spec's CNI_* parameters."""
    env = dict(base or {})
    env.update(CNI_COMMAND=command, CNI_CONTAINERID=container_id, CNI_NETNS=netns,
               CNI_IFNAME=ifname, CNI_PATH=":".join(plugin_dirs), CNI_ARGS="")
    return env


def parse_result(stdout: bytes, plugin: str = "", command: str = "ADD") -> dict[str, Any]:
    """A successful plugin's result object (ADD). Raises CniError (code 6,
    decode) for output that is not a JSON object."""
    try:
        result = json.loads(stdout or b"{}")
    except json.JSONDecodeError as e:
        raise CniError(6, f"the result is not JSON: {e}", stdout[:200].decode(errors="replace"),
                       plugin, command) from None
    if not isinstance(result, dict):
        raise CniError(6, "the result is not a JSON object", "", plugin, command)
    return result


def ip_addresses(result: Mapping[str, Any], ifname: str = DEFAULT_IFNAME) -> list[str]:
    """The container's addresses (no prefix length) in a result: the `ips`
    on an interface inside the container named `ifname`, or every `ips` entry
    when none names an interface (an IPAM-only result)."""
    interfaces = result.get("interfaces") or []
    inside = {i for i, itf in enumerate(interfaces)
              if isinstance(itf, dict) and itf.get("sandbox") and itf.get("name") == ifname}
    out = []
    for entry in result.get("ips") or []:
        if not isinstance(entry, dict) or "address" not in entry:
            continue
        idx = entry.get("interface")
        if inside and idx not in inside:
            continue
        out.append(str(ipaddress.ip_interface(entry["address"]).ip))
    return out


def plugin_error(plugin: str, command: str, returncode: int, stdout: bytes,
                 stderr: bytes) -> CniError:
    """The error of a plugin that exited `returncode` != 0: the spec's JSON
    on stdout when there is one, else its stderr (code ERR_PLUGIN_FAILED)."""
    try:
        doc = json.loads(stdout)
    except (json.JSONDecodeError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and "msg" in doc:
        try:
            code = int(doc.get("code", ERR_PLUGIN_FAILED))
        except (TypeError, ValueError):
            code = ERR_PLUGIN_FAILED
        return CniError(code, str(doc["msg"]), str(doc.get("details", "")), plugin, command)
    text = (stderr or stdout).decode(errors="replace").strip()[-500:]
    return CniError(ERR_PLUGIN_FAILED, f"exited {returncode}" + (f": {text}" if text else ""),
                    "", plugin, command)


def known_false_failure(error: CniError, result: Mapping[str, Any] | None) -> str:
    """Why a CHECK failure is a known plugin bug rather than a broken
    attachment, or "": portmap before plugins v1.3 checks ip6tables rules for
    a container that has no IPv6 address and fails (containernetworking/
    plugins#819; Debian bookworm ships v1.1.1)."""
    if error.command != "CHECK" or error.plugin != "portmap" or "ipv6" not in error.msg:
        return ""
    addresses = ip_addresses(result or {}, "")
    if addresses and all(ipaddress.ip_address(a).version == 4 for a in addresses):
        return "portmap checks IPv6 rules of an IPv4-only container " \
               "(containernetworking/plugins#819)"
    return ""
