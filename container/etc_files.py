"""A container's /etc/hosts, /etc/hostname and /etc/resolv.conf, as Docker makes them.

Docker writes the three files per container outside the image and binds them
over the container's (moby daemon/oci_linux.go withMounts: rbind, rprivate,
read-write); an image without them gets empty mount points in its writable
layer, the image's own layers are never written. juggler does the same: the
launcher writes them into the task's sandbox (`<sandbox>/etc/`) before the
fork, the child binds them in rootfs.enter before pivot_root. Only for a task
with an image or a root filesystem: a task on the host's filesystem keeps the
host's /etc.

    hostname      the container's hostname and a newline (moby
                  container.go: Config.Hostname + "\\n").
    hosts         moby libnetwork/etchosts `Build` with no address (network
                  `none`, juggler's default: there is no interface address,
                  so no line for the hostname): exactly its defaultContent,
                  "IP<TAB>names" lines (`HOSTS`). Network `host`: a copy of
                  the host's /etc/hosts (libnetwork sandbox buildHostsFile,
                  useDefaultSandBox). A CNI network (bridge): the defaults
                  then "IP<TAB>hostname" (`hosts_line`), appended once the
                  CNI ADD gave the address (`add_address`).
    resolv.conf   the host's (or systemd-resolved's upstream file when the
                  host's only nameserver is its stub 127.0.0.53, moby
                  resolvconf.Path), transformed as for Docker's legacy
                  networks (libnetwork/internal/resolvconf
                  TransformForLegacyNw with IPv6 off, as on the default
                  bridge): loopback and IPv6 nameservers removed, and if none
                  is left Google's 8.8.8.8 and 8.8.4.4; written as moby's
                  Generate(comments=true) writes it. Network `host`: a copy of
                  the host's file, unchanged.

`hosts`, `resolv_conf` are pure; `write` reads the host's files and writes
the sandbox's.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

NAMES = ("hosts", "hostname", "resolv.conf")
# moby libnetwork/etchosts defaultContent, in its order.
HOSTS = (("127.0.0.1", "localhost"), ("::1", "localhost ip6-localhost ip6-loopback"),
         ("fe00::0", "ip6-localnet"), ("ff00::0", "ip6-mcastprefix"),
         ("ff02::1", "ip6-allnodes"), ("ff02::2", "ip6-allrouters"))
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")  # moby resolvconf defaultIPv4NSs
HOST_RESOLV_CONF = "/etc/resolv.conf"
RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"
RESOLVED_STUB = "127.0.0.53"


def hosts() -> str:
    """/etc/hosts for a task with no interface address (etchosts.Build, IP "")."""
    return "".join(f"{ip}\t{names}\n" for ip, names in HOSTS)


def hosts_line(ip: str, hostname: str) -> str:
    """The container's own line, after the defaults: "IP<TAB>hostname" (moby
    etchosts.Build with an IP, as on a bridge network)."""
    return f"{ip}\t{hostname}\n"


def add_address(hosts_path: Path, ip: str, hostname: str) -> None:
    """Append the container's line to its hosts file in place (the file is
    bound into the container already: the same inode). Raises OSError."""
    with open(hosts_path, "a") as f:
        f.write(hosts_line(ip, hostname))


def _nameserver(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def nameservers(text: str) -> list[str]:
    """The nameserver addresses of a resolv.conf, in order (invalid ones skipped)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and _nameserver(fields[1]):
            out.append(fields[1])
    return out


def resolv_conf(text: str, source: str = HOST_RESOLV_CONF) -> str:
    """The container's resolv.conf from the host's `text` (read from
    `source`), as moby's Parse, TransformForLegacyNw(ipv6=False) and
    Generate(true) make it; see the module docstring."""
    servers: list[str] = []
    invalid: list[str] = []
    search: list[str] = []
    options: list[str] = []
    other: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0][0] in "#;":
            continue
        if fields[0] == "nameserver":
            if len(fields) >= 2:
                address = _nameserver(fields[1])
                (servers if address else invalid).append(fields[1])
        elif fields[0] in ("domain", "search"):
            search = fields[1:] if len(fields) >= 2 else search
        elif fields[0] == "options":
            options += fields[1:]
        else:
            other.append(line)
    kept = [s for s in servers
            if not (a := _nameserver(s)).is_loopback and a.version == 4]  # type: ignore[union-attr]
    fallback = not kept
    out = [f"nameserver {s}\n" for s in (FALLBACK_NAMESERVERS if fallback else kept)]
    if search:
        out.append(f"search {' '.join(search)}\n")
    if options:
        out.append(f"options {' '.join(options)}\n")
    if other:
        out.append("\n".join(other) + "\n")
    out.append(f"\n# Based on host file: '{source}' (legacy)\n")
    if fallback:
        out.append("# Used default nameservers.\n")
    if invalid:
        out.append(f"# Invalid nameservers: [{' '.join(invalid)}]\n")
    out.append("# Overrides: []\n")
    if any(o.split(":", 1)[0] == "ndots" for o in options):
        out.append("# Option ndots from: host\n")
    return "".join(out)


def _host_resolv_conf() -> tuple[str, str]:
    """(path, text) of the resolv.conf Docker reads on this host."""
    try:
        text = Path(HOST_RESOLV_CONF).read_text()
    except FileNotFoundError:
        text = ""
    if nameservers(text) == [RESOLVED_STUB] and os.path.exists(RESOLVED_UPSTREAM):
        return RESOLVED_UPSTREAM, Path(RESOLVED_UPSTREAM).read_text()
    return HOST_RESOLV_CONF, text


def write(directory: Path, hostname: str, network_host: bool) -> dict[str, str]:
    """Write the three files into `directory` (made if missing; files 0644)
    and return {"/etc/hosts": path, ...}. Raises OSError."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in NAMES}
    paths["hostname"].write_text(hostname + "\n")
    if network_host:
        for name in ("hosts", "resolv.conf"):
            try:
                shutil.copyfile(f"/etc/{name}", paths[name])
            except FileNotFoundError:
                paths[name].write_text("")
    else:
        paths["hosts"].write_text(hosts())
        source, text = _host_resolv_conf()
        paths["resolv.conf"].write_text(resolv_conf(text, source))
    for path in paths.values():
        path.chmod(0o644)
    return {f"/etc/{name}": str(path) for name, path in paths.items()}
