"""Images in the Docker Engine API's shapes, from the agents' listings (pure:
no I/O; apps/docker_images.py serves them).

    merge(listings)        every agent's images → one DockerImage per image id
    image_summary(img)     GET /images/json's ImageSummary
    image_inspect(img)     GET /images/{name}/json's ImageInspect
    find(images, name)     a name as Docker resolves it (reference, id, id prefix)
    removal(img, ref, …)   DELETE /images/{name}: which agents, or Docker's 409
    pull_reference(…)      POST /images/create's fromImage + tag
    PullMessages           agents' pull progress → Docker's JSON progress messages

Shapes and messages are Docker's (Engine API 1.47, moby daemon/images); a
difference is written where it is made.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from juggler.apps.docker_errors import DockerError
from juggler.images.listing import created_seconds, familiar_match
from juggler.images.reference import Reference, ReferenceError, parse
from juggler.v1 import agent_pb2

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as Docker prints it


@dataclass
class DockerImage:
    """One image (config digest) over every agent that has it."""

    id: str
    digest: str  # manifest digest ("" for an import)
    created: str  # RFC 3339, from the config
    size: int
    layers: list[str]  # diff ids, bottom first
    config: dict[str, Any]  # the image config JSON ({} from agents that do not send it)
    references: list[str] = field(default_factory=list)  # normalized, every agent's
    containers: int = 0
    copies: list[tuple[str, agent_pb2.Image]] = field(default_factory=list)  # (agent, image)

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


def _config(image: agent_pb2.Image) -> dict[str, Any]:
    # Image.config is in agents whose stubs have it (agent.proto); "" otherwise.
    try:
        value = json.loads(getattr(image, "config", "") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def merge(listings: list[tuple[str, list[agent_pb2.Image]]]) -> list[DockerImage]:
    """(agent name, its images) for each agent → one DockerImage per image id,
    in the order first seen."""
    out: dict[str, DockerImage] = {}
    for agent, images in listings:
        for img in images:
            have = out.get(img.id)
            if have is None:
                have = out[img.id] = DockerImage(
                    id=img.id, digest=img.digest, created=img.created, size=img.size,
                    layers=[layer.diff_id for layer in img.layers], config=_config(img))
            have.references += [r for r in img.references if r not in have.references]
            have.containers += img.containers
            have.config = have.config or _config(img)
            have.copies.append((agent, img))
    return list(out.values())


def _refs(img: DockerImage) -> list[Reference]:
    out = []
    for text in img.references:
        try:
            out.append(parse(text))
        except ReferenceError:
            continue
    return out


def repo_tags(img: DockerImage) -> list[str]:
    """"busybox:1.36", "127.0.0.1:5000/app:1" (tagged references only; API ≥ 1.44
    gives [] for an untagged image, not "<none>:<none>")."""
    return sorted({r.familiar() for r in _refs(img) if r.tag})


def repo_digests(img: DockerImage) -> list[str]:
    """"busybox@sha256:<manifest digest>" for each repository naming the image."""
    digests = {r.digest for r in _refs(img) if r.digest}
    if img.digest:
        digests.add(img.digest)
    return sorted({f"{r.familiar_repository}@{d}" for r in _refs(img) for d in digests
                   if not r.digest or r.digest == d})


def _labels(img: DockerImage) -> dict[str, str]:
    return dict((img.config.get("config") or {}).get("Labels") or {})


def image_summary(img: DockerImage) -> dict[str, Any]:
    """Docker's ImageSummary. Size is the unpacked layers' (juggler keeps no
    compressed copy); Containers counts the running containers of every agent."""
    return {"Id": img.id, "ParentId": "", "RepoTags": repo_tags(img),
            "RepoDigests": repo_digests(img), "Created": int(created_seconds(img.created) or 0),
            "Size": img.size, "SharedSize": -1, "Labels": _labels(img),
            "Containers": img.containers}


def image_inspect(img: DockerImage) -> dict[str, Any]:
    """Docker's ImageInspect (API 1.47): Config as a container config, as Docker
    builds it from the image's."""
    cfg = img.config.get("config") or {}
    config: dict[str, Any] = {
        "Hostname": "", "Domainname": "", "User": cfg.get("User") or "",
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": cfg.get("Env"), "Cmd": cfg.get("Cmd"), "Image": "",
        "Volumes": cfg.get("Volumes"), "WorkingDir": cfg.get("WorkingDir") or "",
        "Entrypoint": cfg.get("Entrypoint"), "OnBuild": cfg.get("OnBuild"),
        "Labels": cfg.get("Labels")}
    for key in ("ExposedPorts", "StopSignal", "Healthcheck", "Shell", "ArgsEscaped"):
        if cfg.get(key):  # omitempty in Docker's container.Config
            config[key] = cfg[key]
    out = {"Id": img.id, "RepoTags": repo_tags(img), "RepoDigests": repo_digests(img),
           "Parent": "", "Comment": img.config.get("comment") or "",
           "Created": img.created or ZERO_TIME, "DockerVersion": "",
           "Author": img.config.get("author") or "", "Config": config,
           "Architecture": img.config.get("architecture") or "",
           "Os": img.config.get("os") or "", "Size": img.size,
           "GraphDriver": {"Name": "overlay", "Data": None},
           "RootFS": {"Type": "layers", "Layers": list(img.layers)},
           "Metadata": {"LastTagTime": ZERO_TIME}}
    if img.config.get("variant"):
        out["Variant"] = img.config["variant"]
    return out


# -- GET /images/json filters ----------------------------------------------------------

FILTERS = ("reference", "dangling", "label")


def parse_filters(text: str) -> dict[str, list[str]]:
    """The `filters` query parameter: {"name": {"value": true}} or {"name":
    ["value"]} (both are Docker's); DockerError 400 on anything else."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise DockerError(400, f"invalid filter: {text!r} is not JSON") from None
    if not isinstance(raw, dict):
        raise DockerError(400, "invalid filter: not a JSON object")
    out: dict[str, list[str]] = {}
    for name, values in raw.items():
        if name not in FILTERS:
            raise DockerError(400, f"invalid filter '{name}'")
        out[name] = [str(v) for v in (values if isinstance(values, list) else
                                      [k for k, on in dict(values).items() if on])]
    for value in out.get("dangling", []):
        if value not in ("true", "false", "1", "0"):
            raise DockerError(400, f"invalid filter 'dangling={value}'")
    return out


def matches(img: DockerImage, filters: dict[str, list[str]]) -> bool:
    """Every filter named holds (one of its values for each), as Docker's list."""
    tags = [r for r in img.references if _tagged(r)]
    for value in filters.get("dangling", []):
        if (value in ("true", "1")) != (not tags):
            return False
    if filters.get("reference") and not any(
            familiar_match(p, r) for p in filters["reference"] for r in tags):
        return False
    labels = _labels(img)
    for want in filters.get("label", []):
        key, eq, value = want.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def _tagged(text: str) -> bool:
    try:
        return bool(parse(text).tag)
    except ReferenceError:
        return False


# -- names ---------------------------------------------------------------------------


def find(images: list[DockerImage], name: str) -> tuple[DockerImage, str]:
    """The image `name` names and the reference it named it by ("" when it is an
    id): a reference ("busybox" is busybox:latest), a full id, or a unique id
    prefix. DockerError 404 "No such image: <name>" otherwise (Docker's)."""
    try:
        key = str(parse(name))
    except ReferenceError:
        key = ""
    for img in images:
        if key and key in img.references:
            return img, key
    hexd = name.removeprefix("sha256:")
    if hexd and all(c in "0123456789abcdef" for c in hexd):
        found = [i for i in images if i.id.removeprefix("sha256:").startswith(hexd)]
        if len(found) == 1:
            return found[0], ""
    raise DockerError(404, f"No such image: {name}")


def removal(img: DockerImage, ref: str, force: bool) -> list[tuple[str, str]]:
    """What DELETE /images/{name} removes: (agent, reference or image id) for
    each agent holding it. Docker's conflicts (409), from moby's ImageDelete:

    - by reference, the image's last one, a container using it: "must force";
    - by id, referenced in several repositories: "must be forced";
    - by id, a running container using it: "cannot be forced".

    The containers juggler counts are the running ones of each agent (an image
    lease), so "a container" in these messages is a running one."""
    users = [agent for agent, copy in img.copies if copy.containers]
    if ref:
        holders = [(agent, copy) for agent, copy in img.copies if ref in copy.references]
        last = [agent for agent, copy in holders if len(copy.references) == 1]
        if not force and any(a in users for a in last):
            raise DockerError(409, f'conflict: unable to remove repository reference '
                                   f'"{parse(ref).familiar()}" (must force) - a container on '
                                   f'{", ".join(a for a in last if a in users)} is using its '
                                   f'referenced image {img.short_id}')
        return [(agent, ref) for agent, _ in holders]
    if users:
        raise DockerError(409, f"conflict: unable to delete {img.short_id} (cannot be forced) "
                               f"- image is being used by running container on "
                               f"{', '.join(users)}")
    repositories = {r.familiar_repository for r in _refs(img)}
    if len(repositories) > 1 and not force:
        raise DockerError(409, f"conflict: unable to delete {img.short_id} (must be forced) - "
                               "image is referenced in multiple repositories")
    return [(agent, img.id) for agent, _ in img.copies]


def removal_report(img: DockerImage, ref: str, deleted: list[str]) -> list[dict[str, str]]:
    """DELETE's answer: [{"Untagged": …}, …, {"Deleted": …}, …] as Docker's:
    the references let go, the repo@digest too once the image is gone, then
    the image id and the layers the agents deleted."""
    refs = [parse(ref)] if ref else _refs(img)
    out = [{"Untagged": r.familiar()} for r in refs]
    if img.id in deleted:
        out += [{"Untagged": d} for d in repo_digests(img)]
    seen: set[str] = set()
    for d in ([img.id] if img.id in deleted else []) + deleted:
        if d not in seen:
            seen.add(d)
            out.append({"Deleted": d})
    return out


# -- POST /images/create ---------------------------------------------------------------


def pull_reference(from_image: str, tag: str) -> tuple[Reference, bool]:
    """fromImage + tag (a tag or a digest) → (the reference, whether every tag
    of the repository is wanted: fromImage names no tag and `tag` is empty).
    DockerError 400 "invalid reference format: …" on a bad one."""
    if not from_image:
        raise DockerError(400, "fromImage (or fromSrc) is required")
    text = from_image
    if tag:
        text += ("@" if ":" in tag else ":") + tag  # a digest is algorithm:hex
    try:
        ref = parse(text)
    except ReferenceError as e:
        raise DockerError(400, f"invalid reference format: {e}") from None
    whole = not tag and "@" not in from_image and ":" not in from_image.rsplit("/", 1)[-1]
    return ref, whole


def registry_auth(header: str) -> tuple[str, str]:
    """(username, password) from X-Registry-Auth (base64url JSON AuthConfig),
    ("", "") when absent or empty; DockerError 400 when unreadable."""
    if not header:
        return "", ""
    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        auth = json.loads(raw) if raw.strip() else {}
    except (binascii.Error, ValueError):
        raise DockerError(400, "invalid X-Registry-Auth header: not base64 JSON") from None
    if not isinstance(auth, dict):
        return "", ""
    return str(auth.get("username") or ""), str(auth.get("password") or "")


def _bar(current: int, total: int) -> str:
    """Docker's progress text (jsonmessage.JSONProgress.String, wide terminal):
    `[=====>        ]  1.23MB/4.56MB`, 50 steps of 2%."""
    from juggler.images.listing import human_size

    done = min(50, int(current * 100 / total) // 2) if total else 0
    return f"[{'=' * done}>{' ' * (50 - done)}] {human_size(current):>8}/{human_size(total)}"


# A layer's Downloading message is sent each time this many more bytes came
# (or the layer is whole): Docker's progress reader reports every 512 KiB.
PROGRESS_EVERY = 512 * 1024


_STATUS = {"waiting": "Pulling fs layer", "already exists": "Already exists",
           "verifying": "Verifying Checksum", "pull complete": "Pull complete"}


class PullMessages:
    """One reference pulled on some agents → Docker's JSON progress messages:

        {"status": "Pulling from library/x", "id": "3.10"}            once, first
        {"status": "Pulling fs layer", "progressDetail": {}, "id": L}   per layer
        {"status": "Downloading", "progressDetail": {"current": n, "total": m},
         "progress": "[==>  ] …", "id": L}
        {"status": "Pull complete", "progressDetail": {}, "id": L}
        {"status": "Digest: sha256:…"}                                  at the end
        {"status": "Status: Downloaded newer image for x:3.10"}

    L is the layer blob digest's first 12 hex digits, as Docker's; with several
    agents, "<agent>: L", so that each agent's layer has its own line."""

    def __init__(self, ref: Reference, agents: list[str]) -> None:
        self.ref = ref
        self.several = len(agents) > 1
        self.started = False
        self.reported: dict[str, int] = {}  # layer line → bytes last reported

    def update(self, agent: str, p: agent_pb2.PullImageProgress) -> list[dict[str, Any]]:
        if p.HasField("image"):
            return []
        out: list[dict[str, Any]] = []
        if not self.started:
            self.started = True
            # Docker names the repository by its path in the registry (reference.Path).
            out.append({"status": f"Pulling from {self.ref.repository}",
                        "id": self.ref.tag or self.ref.digest})
        if not p.layer:
            prefix = f"{agent}: " if self.several else ""
            return [*out, {"status": prefix + p.status}]
        layer = p.layer.removeprefix("sha256:")[:12]
        ident = f"{agent}: {layer}" if self.several else layer
        if p.status == "downloading":
            last = self.reported.get(ident)
            if last is not None and p.current - last < PROGRESS_EVERY and p.current < p.total:
                return out
            self.reported[ident] = p.current
            detail: dict[str, int] = {"current": p.current, "total": p.total}
            msg: dict[str, Any] = {"status": "Downloading", "progressDetail": detail, "id": ident}
            if p.total:
                msg["progress"] = _bar(p.current, p.total)
            return [*out, msg]
        status = _STATUS.get(p.status, p.status[:1].upper() + p.status[1:])
        return [*out, {"status": status, "progressDetail": {}, "id": ident}]

    def finish(self, images: list[agent_pb2.Image], newer: bool,
               all_tags: bool = False) -> list[dict[str, Any]]:
        """The closing lines once every agent has the image; `newer`: some agent
        did not have it under this name before."""
        out = [{"status": f"Digest: {d}"} for d in dict.fromkeys(i.digest for i in images) if d]
        name = self.ref.familiar_repository if all_tags else self.ref.familiar()
        if not all_tags:
            out.append(status_line(name, newer))
        return out


def status_line(name: str, newer: bool) -> dict[str, str]:
    return {"status": f"Status: Downloaded newer image for {name}" if newer
            else f"Status: Image is up to date for {name}"}


def error_message(message: str) -> dict[str, Any]:
    """An error in the middle of a progress stream (the CLI prints it, exits 1)."""
    return {"errorDetail": {"message": message}, "error": message}
