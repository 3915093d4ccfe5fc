"""Who a task runs as: uid, gid, groups and HOME, as `docker run` makes them.

A user is given as Docker takes it (`-u`, an image's `User`): `name`, `uid`,
`name:group`, `uid:gid`, `name:gid`, `uid:group`, or "" for the default. It
is resolved against the container's own /etc/passwd and /etc/group (the
image's; the host's for a task on the host's filesystem) in Docker's two
steps, which juggler reproduces as they are:

1. moby's `getUser` (daemon/oci_linux.go) runs `GetExecUser` of
   moby/sys/user (formerly runc's libcontainer/user) with no defaults, and
   gives runc uid, gid and additional gids = [gid] + the user's
   supplementary groups.
2. runc's `setupUser` (libcontainer/init_linux.go) calls setgroups(2) with
   those gids (deduplicated), then setgid and setuid, and sets HOME when the
   environment has none or an empty one: the home of the *first* passwd
   entry with that uid, "/" when there is none.

GetExecUser's rules, each checked against runc in
tests/integration/test_runc_differential.py:

- "" is uid 0: the first passwd entry with uid 0 (its gid and groups).
- The user part is matched by uid when it is numeric, else by name; the
  first matching line wins. A numeric uid with no passwd entry is accepted
  as is, with gid 0 and no supplementary group; an unknown name is refused.
- Without a group part, the gid is the passwd entry's and the supplementary
  groups are every /etc/group line listing the user's *name* as a member, in
  file order. With one, the gid is that group's (by gid when numeric, else
  by name; a numeric gid absent from /etc/group is accepted, an unknown name
  refused), and there is no supplementary group.
- Numbers are Go's `strconv.Atoi`; uids and gids outside 0..2^31-1 are
  refused. Passwd lines are split on ':' as they are (a field that is not a
  number reads as 0; no comment syntax), group lines skip '#' comments.
  Leading and trailing blanks of a line are ignored; a missing file reads
  as an empty one.

`resolve` is pure (text in, `User` out); `lookup` reads the files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ID = 2**31 - 1  # moby/sys/user's maxID ("for 32-bit systems compatibility")
_GO_INT = re.compile(r"^[+-]?[0-9]+$")


class UnknownUser(LookupError):
    """The user or group is not in the container's files, or is out of range."""


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    # setgroups(2): [gid] + supplementary groups, without repeats.
    groups: tuple[int, ...]
    # HOME when the environment has none (or an empty one).
    home: str
    # The passwd entry's name; "" for a uid with no entry.
    name: str = ""


def _atoi(text: str) -> int | None:
    return int(text) if _GO_INT.match(text) else None


def _fields(line: str, count: int) -> list[str]:
    """Go's parseLine: split on ':', missing fields empty, extra ones ignored."""
    parts = line.split(":")[:count]
    return parts + [""] * (count - len(parts))


def _passwd(text: str) -> list[tuple[str, int, int, str]]:
    """(name, uid, gid, home) of every line, in order."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        name, _, uid, gid, _, home, _ = _fields(line, 7)
        out.append((name, _atoi(uid) or 0, _atoi(gid) or 0, home))
    return out


def _groups(text: str) -> list[tuple[str, int, list[str]]]:
    """(name, gid, members) of every line but comments, in order."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, gid, members = _fields(line, 4)
        out.append((name, _atoi(gid) or 0, members.split(",") if members else []))
    return out


def _numeric(text: str, what: str) -> int | None:
    """GetExecUser's parseNumeric: None for a name, the number, or refused."""
    value = _atoi(text) if text else None
    if value is not None and not 0 <= value <= MAX_ID:
        raise UnknownUser(f"{what} {text!r}: uids and gids must be in range 0-{MAX_ID}")
    return value


def resolve(spec: str, passwd: str, group: str = "") -> User:
    """`spec` ("name", "uid", "name:group", "uid:gid", ... or "") against the
    text of the container's passwd and group files. Raises UnknownUser."""
    user_arg, _, rest = spec.partition(":")
    group_arg = rest.split(":", 1)[0]
    uid_arg = _numeric(user_arg, "user")
    gid_arg = _numeric(group_arg, "group")
    entries = _passwd(passwd)

    if not user_arg:
        match = [e for e in entries if e[1] == 0]
    elif uid_arg is not None:
        match = [e for e in entries if e[1] == uid_arg]
    else:
        match = [e for e in entries if e[0] == user_arg]
    name, uid, gid = "", 0, 0
    if match:
        name, uid, gid, _ = match[0]
    elif user_arg:
        if uid_arg is None:
            raise UnknownUser(f"no user {user_arg!r} in the container's /etc/passwd")
        uid = uid_arg

    supplementary: list[int] = []
    if group_arg:
        found = [g for g in _groups(group)
                 if (g[1] == gid_arg if gid_arg is not None else g[0] == group_arg)]
        if found:
            gid = found[0][1]
        elif gid_arg is None:
            raise UnknownUser(f"no group {group_arg!r} in the container's /etc/group")
        else:
            gid = gid_arg
    elif name:
        supplementary = [g[1] for g in _groups(group) if name in g[2]]
    for value in (gid, *supplementary):
        if not 0 <= value <= MAX_ID:
            raise UnknownUser(f"gid {value}: uids and gids must be in range 0-{MAX_ID}")

    # runc: HOME from the first entry with the uid Docker chose, else "/".
    home = next((e[3] for e in entries if e[1] == uid), "/")
    groups = tuple(dict.fromkeys((gid, *supplementary)))
    return User(uid=uid, gid=gid, groups=groups, home=home, name=name)


def _read(path: str) -> str:
    try:
        with open(path, errors="surrogateescape") as f:
            return f.read()
    except FileNotFoundError:
        return ""


# lookup's answers by (spec, passwd's text, group's text): reading both files
# costs 0.03 ms, parsing them 0.2 (a 27-line passwd, a 50-line group). The
# agent's launcher answers the default user before it forks executors
# (agent/launcher.py), so that they find it here.
_answers: dict[tuple[str, str, str], User] = {}
_ANSWERS_KEPT = 16


def lookup(spec: str, etc: str = "/etc") -> User:
    """Resolve `spec` against `<etc>/passwd` and `<etc>/group` (a missing file
    reads as empty), both read on every call; the answer for the same texts
    is kept. Raises UnknownUser; OSError when a file cannot be read."""
    key = (spec, _read(f"{etc}/passwd"), _read(f"{etc}/group"))
    if (user := _answers.get(key)) is None:
        user = resolve(*key)
        if len(_answers) >= _ANSWERS_KEPT:
            _answers.clear()
        _answers[key] = user
    return user
