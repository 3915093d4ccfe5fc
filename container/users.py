"""Who a task runs as: its uid, gid, supplementary groups and home.

The user is looked up in the container's own /etc/passwd and /etc/group (the
image's, or the host's in host-filesystem mode), by name or by numeric uid, as
runc does. A numeric uid absent from /etc/passwd is still accepted (gid =
uid, home "/"); an unknown *name* is an error, so a typo fails the launch
instead of running the task as someone else. Supplementary groups follow
initgroups(3): the primary gid plus every group listing the user as a member.

`resolve` is pure (text in, `User` out); `lookup` reads the files.
"""

from __future__ import annotations

from dataclasses import dataclass


class UnknownUser(LookupError):
    pass


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str = ""


def _records(text: str, min_fields: int):
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) >= min_fields:
            yield fields


def resolve(user: str, passwd: str, group: str = "") -> User:
    """`user` (a name or a numeric uid) against the text of passwd and group."""
    entry = None
    records = list(_records(passwd, 7))
    # A name wins over a uid that looks the same (as runc); then the uid.
    matches = [f for f in records if f[0] == user]
    if not matches and user.isdigit():
        matches = [f for f in records if f[2].isdigit() and int(f[2]) == int(user)]
    for fields in matches:
        try:
            entry = (fields[0], int(fields[2]), int(fields[3]), fields[5] or "/")
        except ValueError:
            continue
        break
    if entry is None:
        if not user.isdigit():
            raise UnknownUser(f"no user {user!r} in the container's /etc/passwd")
        uid = int(user)
        return User(uid=uid, gid=uid, groups=(uid,), home="/")
    name, uid, gid, home = entry
    groups = [gid]
    for fields in _records(group, 4):
        members = fields[3].split(",") if fields[3] else []
        if name in members:
            try:
                gid_of = int(fields[2])
            except ValueError:
                continue
            if gid_of not in groups:
                groups.append(gid_of)
    return User(uid=uid, gid=gid, groups=tuple(groups), home=home, name=name)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def lookup(user: str, etc: str = "/etc") -> User:
    """Resolve `user` against `<etc>/passwd` and `<etc>/group` (missing files: empty)."""
    return resolve(user, _read(f"{etc}/passwd"), _read(f"{etc}/group"))
