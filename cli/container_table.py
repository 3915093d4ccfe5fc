"""`juggler ps`'s output, as `docker ps` prints it. Pure (rendering aside).

Input: the Docker Engine API's container list (GET /containers/json: Id, Names
["/x"], Image, Command, Created (epoch s), State, Status, Labels, Ports).
Each container becomes Docker's formatter context (cli/command/formatter/
container.go): ID (12 hex unless --no-trunc), Image ("<no image>" for none;
truncated: without digest or docker.io/library/), Command (quoted, cut
to 20 characters with "…" unless --no-trunc), CreatedAt (Go's time
format), RunningFor ("3 minutes ago", go-units' HumanDuration), Status and
State as the API gives them, Names (without "/"), Labels ("k=v,k2=v2",
sorted), Ports, Mounts, Networks, Size, LocalVolumes, Platform, and the
method Label "key".

Which containers, in which order, is the service's answer, as with docker:
`-a`, `-n`/`-l` (a limit) and `-f key=value` filters are passed on to it
(Docker's filters query, `{"name": {"web": true}}`).

Tables: the default one through rich on a terminal (bold header, status in
colour); otherwise, and for every --format, Docker's own layout (Go
tabwriter, go_format.py), so scripts parse it as they parse docker's.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from juggler.cli.go_format import HEADER_FUNCTIONS, Struct, docker_format, parse, tabwrite
from juggler.common.docker_units import human_duration

__all__ = ["DEFAULT_TABLE", "FilterError", "context", "go_quote", "human_duration",
           "parse_filters", "render"]

DEFAULT_TABLE = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}"
                 "\t{{.Ports}}\t{{.Names}}")
QUIET = "{{.ID}}"
JSON = "{{json .}}"

HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
           "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
           "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
           "Labels": "LABELS", "Mounts": "MOUNTS", "LocalVolumes": "LOCAL VOLUMES",
           "Networks": "NETWORKS", "Platform": "PLATFORM", "Label": "LABEL"}

COMMAND_WIDTH = 20


class FilterError(ValueError):
    """A bad `-f`: Docker's message."""


# -- Docker's spellings ---------------------------------------------------------------

def ellipsis(text: str, width: int) -> str:
    """Docker's Ellipsis: at most `width` characters, the last one "…" when cut."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…" if width > 1 else text[:width]


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """Go's strconv.Quote: double quotes; backslash escapes for quotes,
    backslashes and control characters; other printable characters kept."""
    out = ['"']
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif not ch.isprintable():
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x80 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_time(epoch: float) -> str:
    """Go's Time.String() of a whole second, local time: "2024-05-01 10:00:00 +0200 CEST"."""
    when = datetime.fromtimestamp(int(epoch)).astimezone()
    return when.strftime("%Y-%m-%d %H:%M:%S %z ") + (when.tzname() or "")


def _names(c: dict[str, Any], trunc: bool) -> str:
    names = [n[1:] if n.startswith("/") else n for n in c.get("Names") or []]
    names = [n for n in names if "/" not in n]   # links (/other/alias) are not names
    if trunc and names:
        return names[0]
    return ",".join(names)


def _short_id(text: str) -> str:
    """Docker's TruncateID: without "sha256:", 12 characters."""
    return text.split(":", 1)[-1][:12]


def _image(c: dict[str, Any], trunc: bool) -> str:
    """Docker's IMAGE column: "<no image>" for none; truncated, a reference in
    its familiar form (no digest, no docker.io/library/)."""
    image = c.get("Image") or ""
    if not image:
        return "<no image>"
    if not trunc or image.startswith("/"):
        return image
    image_id = c.get("ImageID") or ""
    if image_id and _short_id(image_id) == _short_id(image):
        return _short_id(image)
    name = image.split("@", 1)[0]
    for prefix in ("docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    if name.startswith("library/") and "/" not in name[len("library/"):]:
        name = name[len("library/"):]
    return name


def _labels(labels: dict[str, str] | None) -> str:
    return ",".join(sorted(f"{k}={v}" for k, v in (labels or {}).items()))


def context(c: dict[str, Any], now: float, trunc: bool = True) -> Struct:
    """Docker's formatter context of one listed container."""
    cid = c.get("Id", "")
    command = c.get("Command", "")
    created = float(c.get("Created") or 0)
    labels = dict(c.get("Labels") or {})
    networks = (c.get("NetworkSettings") or {}).get("Networks") or {}
    return Struct("container", {
        "ID": cid[:12] if trunc else cid,
        "Image": _image(c, trunc),
        "Command": go_quote(ellipsis(command, COMMAND_WIDTH) if trunc else command),
        "CreatedAt": go_time(created),
        "RunningFor": human_duration(now - created) + " ago",
        "Status": c.get("Status", ""),
        "State": c.get("State", ""),
        "Names": _names(c, trunc),
        "Labels": _labels(labels),
        "Ports": _ports(c.get("Ports") or []),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "")
                           for m in c.get("Mounts") or []),
        "Networks": ",".join(sorted(networks)),
        "Size": "0B",
        "LocalVolumes": "0",
        "Platform": None,
        "Label": lambda key: labels.get(key, ""),
    })


def _ports(ports: list[dict[str, Any]]) -> str:
    """Docker's PORTS column (docker/cli formatter DisplayablePorts): sorted by
    container port, IP, host port, protocol; a port published on the same
    host port and consecutive ones grouped ("0.0.0.0:8080-8081->8080-8081/tcp",
    "80-81/tcp" when exposed only), each group once its run ends, then every
    port published on another host port ("0.0.0.0:31005->80/tcp")."""
    def order(p: dict[str, Any]) -> tuple[int, str, int, str]:
        return (int(p.get("PrivatePort") or 0), p.get("IP") or "",
                int(p.get("PublicPort") or 0), p.get("Type") or "")

    groups: dict[str, list[int]] = {}   # key → [first, last], in creation order
    done: list[str] = []
    mapped: list[str] = []
    for p in sorted(ports, key=order):
        private, ip, kind = int(p.get("PrivatePort") or 0), p.get("IP") or "", p.get("Type", "")
        key = kind
        if ip:
            public = int(p.get("PublicPort") or 0)
            if public != private:
                host = f"[{ip}]" if ":" in ip else ip
                mapped.append(f"{host}:{public}->{private}/{kind}")
                continue
            key = f"{ip}/{kind}"
        group = groups.get(key)
        if group is not None and private == group[1] + 1:
            group[1] = private
            continue
        if group is not None:
            done.append(_group(key, *group))
        groups[key] = [private, private]   # a key keeps its first place (Go's key list)
    return ", ".join([*done, *(_group(k, *g) for k, g in groups.items()), *mapped])


def _group(key: str, first: int, last: int) -> str:
    ip, _, kind = key.rpartition("/")
    ports = str(first) if first == last else f"{first}-{last}"
    return f"{ip}:{ports}->{ports}/{kind}" if ip else f"{ports}/{kind}"


# -- filters ----------------------------------------------------------------------------

def parse_filters(items: Iterable[str]) -> dict[str, list[str]]:
    """`-f key=value` options → {key: [values]} (the service checks the keys
    and values, as Docker's daemon does). Raises FilterError for an option
    that is not key=value (docker's message)."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise FilterError("bad format of filter (expected name=value)")
        out.setdefault(key, []).append(value)
    return out


# -- rendering --------------------------------------------------------------------------

def render(containers: list[dict[str, Any]], *, fmt: str = "", quiet: bool = False,
           trunc: bool = True, now: float | None = None, terminal: bool = False) -> str:
    """The text `docker ps` prints for `containers` (no final newline; "" when
    a format without header has no rows). Raises TemplateError."""
    now = time.time() if now is None else now
    if quiet:
        fmt = QUIET
    elif not fmt or fmt == "table":
        if terminal:
            return _rich_table(containers, now, trunc)
        fmt = DEFAULT_TABLE
    elif fmt == "json":
        fmt = JSON
    is_table, text = docker_format(fmt)
    template = parse(text)
    lines = []
    if is_table:
        header = Struct("container", {**HEADERS, "Label": lambda *_: HEADERS["Label"]})
        lines.append(parse(text, HEADER_FUNCTIONS).execute(header, HEADER_FUNCTIONS))
    for c in containers:
        ctx = context(c, now, trunc)
        if text == JSON:
            lines.append(_json_line(ctx))
        else:
            lines.append(template.execute(ctx))
    out = "\n".join(lines)
    return tabwrite(out) if is_table else out


def _json_line(ctx: Struct) -> str:
    """`--format json`: Docker marshals the context's fields, keys sorted."""
    fields = {k: v for k, v in ctx.items() if not callable(v)}
    return json.dumps(dict(sorted(fields.items())), separators=(",", ":"), ensure_ascii=False)


_STATE_STYLES = {"running": "green", "restarting": "yellow", "created": "cyan",
                 "exited": "", "dead": "red"}


def _rich_table(containers: list[dict[str, Any]], now: float, trunc: bool) -> str:
    """The default table for a person at a terminal: Docker's columns, a bold
    header, the status coloured by state (red for a non-zero exit)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 3, 0, 0),
                  header_style="bold", highlight=False)
    for title in ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"):
        table.add_column(title, no_wrap=True, overflow="ignore", min_width=7)
    for c in containers:
        ctx = context(c, now, trunc)
        style = _STATE_STYLES.get(ctx["State"], "")
        if ctx["State"] == "exited" and not ctx["Status"].startswith("Exited (0)"):
            style = "red"
        table.add_row(ctx["ID"], ctx["Image"], ctx["Command"], ctx["RunningFor"],
                      Text(ctx["Status"], style=style), ctx["Ports"], ctx["Names"])
    buf = io.StringIO()
    Console(file=buf, width=1 << 14, force_terminal=True, highlight=False, emoji=False,
            markup=False).print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip("\n").split("\n"))

