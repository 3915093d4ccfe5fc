"""Images as Docker lists them, for `juggler images` and the Docker Engine
API's image list (apps/docker_images.py). Pure: no I/O.

    merge(images)        one entry per image id over every agent's listing
    familiar_match(p, r) `docker images PATTERN`'s rule (FamiliarMatch)
    image_rows(…)        REPOSITORY TAG IMAGE ID CREATED SIZE rows
    human_duration(s)    "About an hour", "2 weeks" (go-units HumanDuration)
    human_size(n)        "4.26MB" (go-units HumanSizeWithPrecision, 3 digits)
    created_seconds(t)   an image config's RFC 3339 `created` → Unix seconds

The rules are Docker's (docker/go-units, distribution/reference, the daemon's
image list), so that output compares with Docker's.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from juggler.common.docker_units import human_duration
from juggler.images.reference import ReferenceError, parse
from juggler.v1 import agent_pb2


def human_size(n: float) -> str:
    """Bytes as Docker prints them (go-units HumanSizeWithPrecision, 3 digits,
    powers of 1000): "123B", "4.26MB", "1.2GB"."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.3g}{units[i]}"


def created_seconds(text: str) -> float | None:
    """An image config's `created` (RFC 3339, up to nanoseconds) as Unix seconds."""
    if not text:
        return None
    head, dot, rest = text.replace("Z", "+00:00").partition(".")
    if dot:  # Python reads 6 fraction digits at most
        digits = len(rest) - len(rest.lstrip("0123456789"))
        head = f"{head}.{rest[:min(digits, 6)].ljust(6, '0')}{rest[digits:]}"
    try:
        when = datetime.fromisoformat(head)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _created(text: str, now: float) -> str:
    when = created_seconds(text)
    return "N/A" if when is None else f"{human_duration(max(0.0, now - when))} ago"


def familiar_match(pattern: str, reference: str) -> bool:
    """Whether `docker images PATTERN` lists `reference` (Docker's
    reference.FamiliarMatch: path.Match against "busybox:1.36", then against
    "busybox")."""
    try:
        ref = parse(reference)
    except ReferenceError:
        return False
    return _path_match(pattern, ref.familiar()) or _path_match(pattern, ref.familiar_repository)


def _path_match(pattern: str, name: str) -> bool:
    """Go's path.Match: `*` and `?` stop at '/', [classes] with ^ negation."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.fullmatch("".join(out), name) is not None
    except re.error:
        return False


def merge(images: list[agent_pb2.Image]) -> list[agent_pb2.Image]:
    """One entry per image id, its references those of every agent's copy."""
    out: dict[str, agent_pb2.Image] = {}
    for img in images:
        if img.id not in out:
            out[img.id] = agent_pb2.Image()
            out[img.id].CopyFrom(img)
            continue
        have = out[img.id]
        for r in img.references:
            if r not in have.references:
                have.references.append(r)
        have.containers += img.containers
    return list(out.values())


def image_rows(images: list[agent_pb2.Image], now: float, pattern: str = "",
               no_trunc: bool = False) -> list[tuple[str, str, str, str, str]]:
    """Docker's `images` rows (REPOSITORY, TAG, IMAGE ID, CREATED, SIZE), one
    per reference, newest image first; with `pattern` only the references it
    matches (and no untagged image), as `docker images PATTERN`."""
    rows: list[tuple[str, str, str, str, str]] = []
    for img in sorted(images, key=lambda i: created_seconds(i.created) or 0, reverse=True):
        refs = [r for r in img.references if not pattern or familiar_match(pattern, r)]
        if pattern and not refs:
            continue
        image_id = img.id if no_trunc else img.id.removeprefix("sha256:")[:12]
        for r in sorted(refs) or [""]:
            repo, tag = "<none>", "<none>"
            if r:
                try:
                    ref = parse(r)
                    repo, tag = ref.familiar_repository, ref.tag or "<none>"
                except ReferenceError:
                    repo = r
            row = (repo, tag, image_id, _created(img.created, now), human_size(img.size))
            if row not in rows:
                rows.append(row)
    return rows
