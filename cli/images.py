"""`juggler pull`, `juggler images`, `juggler rmi`, `juggler image import`.

On a cluster they act on every agent, or on the one `--agent HOST|ID` names,
through the Agent API (agent/image_service.py; addresses from the master's
state). With `--work-dir DIR` they act on an agent work dir on this host
directly, with no daemon (air-gapped preparation, tests, benchmarks).

`pull` draws one progress line per layer, as `docker pull` does (redrawn in
place on a terminal; status changes only otherwise); `pull -a REPOSITORY`
pulls each tag the registry lists for it (the agent asks the registry, through
its mirrors for a Docker Hub name). `images` prints Docker's table
(REPOSITORY TAG IMAGE ID CREATED SIZE, through rich, never colored or wrapped:
scripts parse it), CREATED and SIZE as Docker spells them (go-units:
"2 weeks ago", "4.26MB").
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from juggler.cli import address as addr
from juggler.cli import operator
from juggler.common import servers
from juggler.images.listing import human_size, image_rows, merge
from juggler.v1 import agent_pb2, agent_pb2_grpc, operator_pb2


def add_parsers(sub: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--master", default=None, help="master address (default: what `up` "
                                                      "wrote)")
        p.add_argument("--agent", default="", metavar="HOST|ID",
                       help="act on this agent only (default: every agent)")
        p.add_argument("--work-dir", default="", metavar="DIR",
                       help="act on the agent work dir DIR on this host, without a daemon")

    p = sub.add_parser("pull", help="pull an image onto agents",
                       description="Pull an image from its registry into agents' stores.")
    p.add_argument("reference", help="e.g. busybox, library/busybox:1.36, host:5000/app@sha256:…")
    p.add_argument("-u", "--username", default="", help="registry user name")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the registry password from stdin")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.add_argument("-a", "--all-tags", action="store_true",
                   help="pull every tag of the repository (give it without a tag)")
    common(p)
    p.set_defaults(func=pull_main)

    p = sub.add_parser("images", help="list images on agents",
                       description="List the images in agents' stores (merged: an image on "
                                   "several agents is listed once), newest first.")
    p.add_argument("repository", nargs="?", default="", metavar="REPOSITORY[:TAG]",
                   help="only this repository (and tag); shell-style * and ? match within "
                        "a path component, as Docker's")
    p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    p.add_argument("--no-trunc", action="store_true", help="full image ids (sha256:…)")
    p.add_argument("-a", "--all", action="store_true",
                   help="accepted for Docker's sake: stores hold no intermediate images, so "
                        "every image is always listed")
    p.add_argument("--tree", action="store_true",
                   help="show each agent's images with their layer stacks and the layers "
                        "images share")
    common(p)
    p.set_defaults(func=images_main)

    p = sub.add_parser("rmi", help="remove images from agents",
                       description="Remove image references; delete what nothing uses.")
    p.add_argument("references", nargs="+")
    common(p)
    p.set_defaults(func=rmi_main)

    p = sub.add_parser("image", help="image subcommands (import)")
    isub = p.add_subparsers(dest="image_command", metavar="COMMAND")
    q = isub.add_parser("import", help="import an OCI layout or `docker save` tar",
                        description="Import images from an OCI image layout (directory or "
                                    "tar) or a `docker save` tar into agents' stores.")
    q.add_argument("file")
    q.add_argument("--name", default="", help="reference for an image the archive leaves "
                                              "unnamed")
    common(q)
    q.set_defaults(func=import_main)
    p.set_defaults(func=lambda a: (p.print_help(sys.stderr), 2)[1])


# -- targets -------------------------------------------------------------------------


class Target:
    def __init__(self, name: str, address: str = "", work_dir: str = "") -> None:
        self.name, self.address, self.work_dir = name, address, work_dir


def targets(args: argparse.Namespace) -> list[Target]:
    if args.work_dir:
        return [Target(args.work_dir, work_dir=args.work_dir)]
    got = operator.call(addr.resolve(args.master), "GetAgents", operator_pb2.GetAgentsRequest())
    agents = [a for a in got.agents if a.state == operator_pb2.AGENT_ACTIVE and a.info.address]
    if args.agent:
        agents = [a for a in agents if args.agent in (a.info.id, a.info.hostname)
                  or a.info.address.startswith(args.agent + ":")]
        if not agents:
            raise LookupError(f"no active agent {args.agent!r}")
    if not agents:
        raise LookupError("no active agent")
    return [Target(a.info.hostname or a.info.id, address=a.info.address) for a in agents]


def _local_store(work_dir: str):  # type: ignore[no-untyped-def]
    from juggler.images.registry import RegistryClient, load_docker_config
    from juggler.images.store import ImageStore

    client = RegistryClient(credentials=load_docker_config())
    return ImageStore(Path(work_dir) / "images", client)


def _local_proto(store, images) -> list[agent_pb2.Image]:  # type: ignore[no-untyped-def]
    from juggler.images.messages import image_proto

    users = store.layer_users()
    return [image_proto(i, store, users) for i in images]


# -- pull ------------------------------------------------------------------------------


class Bars:
    """docker-pull-like lines: `<layer12>: <status> [====>   ] 1.2MB/3.4MB`."""

    def __init__(self, prefix: str = "", out=sys.stderr) -> None:  # type: ignore[no-untyped-def]
        self.prefix, self.out = prefix, out
        self.tty = out.isatty()
        self.rows: dict[str, str] = {}
        self.drawn = 0
        self.last = 0.0

    def update(self, p: agent_pb2.PullImageProgress) -> None:
        key = p.layer[7:19] if p.layer.startswith("sha256:") else p.layer
        if not key:
            print(f"{self.prefix}{p.status}", file=self.out)
            return
        line = f"{self.prefix}{key}: {p.status.capitalize()}"
        if p.status == "downloading" and p.total:
            width = 30
            done = min(width, p.current * width // p.total)
            line += f" [{'=' * max(0, done - 1)}{'>' if done else ''}{' ' * (width - done)}] " \
                    f"{human_size(p.current)}/{human_size(p.total)}"
        old = self.rows.get(key)
        self.rows[key] = line
        if not self.tty:
            if old is None or old.split(" [")[0] != line.split(" [")[0]:
                print(line.split(" [")[0], file=self.out, flush=True)
            return
        now = time.monotonic()
        if p.status == "downloading" and now - self.last < 0.1 and old is not None:
            return
        self.last = now
        self.draw()

    def draw(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}A")
        for line in self.rows.values():
            self.out.write(f"\x1b[2K{line}\n")
        self.drawn = len(self.rows)
        self.out.flush()


def pull_main(args: argparse.Namespace) -> int:
    from juggler.images.reference import ReferenceError, parse_name

    repository = None
    if args.all_tags:
        try:
            repository = parse_name(args.reference)
        except ReferenceError as e:
            print(f"juggler pull: {e}", file=sys.stderr)
            return 1
    password = ""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif args.username:
        password = getpass.getpass(f"password for {args.username}: ")
    try:
        chosen = targets(args)
    except (LookupError, operator.NoMaster, grpc.RpcError) as e:
        print(f"juggler pull: {_err(e)}", file=sys.stderr)
        return 1
    failed = 0
    for t in chosen:
        prefix = f"{t.name}: " if len(chosen) > 1 else ""
        try:
            tags = _tags(t, args.reference, args.username, password) if repository else [""]
        except (grpc.RpcError, ImageFailure) as e:
            print(f"juggler pull: {prefix}{_err(e)}", file=sys.stderr)
            failed += 1
            continue
        for tag in tags:
            reference = f"{args.reference}:{tag}" if tag else args.reference
            if repository is not None and not args.quiet:
                print(f"{prefix}{tag}: Pulling from {repository.repository}",  # Docker's
                      file=sys.stderr, flush=True)
            bars = Bars(prefix)
            try:
                if t.work_dir:
                    image = asyncio.run(_pull_local(t.work_dir, reference, args, password,
                                                    bars))
                else:
                    image = _pull_remote(t.address, reference, args, password, bars)
            except (grpc.RpcError, ImageFailure) as e:
                print(f"juggler pull: {prefix}{_err(e)}", file=sys.stderr)
                failed += 1
                break  # as Docker's -a: the first failed tag ends the pull
            if args.quiet:
                print(image.id)
            else:
                print(f"{prefix}Digest: {image.digest or '-'}")
                print(f"{prefix}Status: downloaded {_normalized(reference)}")
    return 1 if failed else 0


class ImageFailure(Exception):
    pass


def _normalized(reference: str) -> str:
    """`busybox` → docker.io/library/busybox:latest (the name the image is stored under)."""
    from juggler.images.reference import ReferenceError, parse

    try:
        return str(parse(reference))
    except ReferenceError:
        return reference


def _tags(t: Target, repository: str, username: str, password: str) -> list[str]:
    """The tags the registry lists for `repository`, asked by the agent (its
    mirrors and credentials) or, with --work-dir, from here."""
    if t.work_dir:
        from juggler.images.reference import parse_name
        from juggler.images.registry import Credentials, RegistryError

        ref = parse_name(repository)
        client = _local_store(t.work_dir).client
        if username:
            client.credentials[ref.registry] = Credentials(username, password)
        try:
            tags = asyncio.run(client.tags(ref))
        except RegistryError as e:
            raise ImageFailure(str(e)) from None
    else:
        with servers.sync_channel(t.address) as ch:
            tags = list(agent_pb2_grpc.AgentStub(ch).ListTags(agent_pb2.ListTagsRequest(
                repository=repository, username=username, password=password),
                timeout=60).tags)
    if not tags:
        raise ImageFailure(f"{repository}: the registry lists no tags for it")
    return tags


async def _pull_local(work_dir: str, reference: str, args: argparse.Namespace, password: str,
                      bars: Bars) -> agent_pb2.Image:
    from juggler.images.reference import ReferenceError, parse
    from juggler.images.registry import Credentials
    from juggler.images.store import ImageError

    store = _local_store(work_dir)
    if args.username:
        try:
            store.client.credentials[parse(reference).registry] = Credentials(
                args.username, password)
        except ReferenceError as e:
            raise ImageFailure(str(e)) from None

    def listener(e) -> None:  # type: ignore[no-untyped-def]
        if not args.quiet:
            bars.update(agent_pb2.PullImageProgress(layer=e.layer, status=e.status,
                                                    current=e.current, total=e.total))
    try:
        image = await store.pull(reference, listener)
    except ImageError as e:
        raise ImageFailure(str(e)) from None
    return _local_proto(store, [image])[0]


def _pull_remote(address: str, reference: str, args: argparse.Namespace, password: str,
                 bars: Bars) -> agent_pb2.Image:
    with servers.sync_channel(address) as ch:
        stub = agent_pb2_grpc.AgentStub(ch)
        image = None
        for p in stub.PullImage(agent_pb2.PullImageRequest(
                reference=reference, username=args.username, password=password)):
            if p.HasField("image"):
                image = p.image
            elif not args.quiet:
                bars.update(p)
    if image is None:
        raise ImageFailure("the agent ended the pull without an image")
    return image


def _err(e: BaseException) -> str:
    if isinstance(e, grpc.RpcError):
        return e.details() or e.code().name  # type: ignore[attr-defined]
    return str(e)


# -- images / rmi / import -----------------------------------------------------------


def _list(t: Target) -> list[agent_pb2.Image]:
    if t.work_dir:
        store = _local_store(t.work_dir)
        return _local_proto(store, store.images())
    with servers.sync_channel(t.address) as ch:
        return list(agent_pb2_grpc.AgentStub(ch).ListImages(agent_pb2.ListImagesRequest(),
                                                            timeout=30).images)


COLUMNS = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")


def render_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Columns as Docker's tables (3 spaces apart, left aligned), laid out by
    rich with no color, no wrapping and no trailing spaces."""
    import io

    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 3, 0, 0),
                  header_style="", highlight=False)
    for h in headers:
        table.add_column(h, no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*row)
    buf = io.StringIO()
    Console(file=buf, width=1 << 16, color_system=None, highlight=False,
            emoji=False, markup=False).print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines())


def render_tree(images: list[agent_pb2.Image]) -> str:
    """Each image, then its layers top first; a layer other images share says so."""
    users: dict[str, list[str]] = {}
    names = {}
    for img in images:
        names[img.id] = (", ".join(img.references) or img.id[:19])
        for layer in img.layers:
            users.setdefault(layer.diff_id, []).append(img.id)
    out = []
    for img in sorted(images, key=lambda i: names[i.id]):
        out.append(f"{names[img.id]}  ({img.id.removeprefix('sha256:')[:12]}, "
                   f"{human_size(img.size)})")
        layers = list(reversed(img.layers))
        for i, layer in enumerate(layers):
            branch = "└─" if i == len(layers) - 1 else "├─"
            shared = [names[o] for o in users[layer.diff_id] if o != img.id]
            note = f"  shared with {', '.join(shared)}" if shared else ""
            out.append(f"  {branch} {layer.diff_id.removeprefix('sha256:')[:12]}  "
                       f"{human_size(layer.size)}{note}")
    return "\n".join(out)


def images_main(args: argparse.Namespace) -> int:
    try:
        chosen = targets(args)
    except (LookupError, operator.NoMaster, grpc.RpcError) as e:
        print(f"juggler images: {_err(e)}", file=sys.stderr)
        return 1
    status = 0
    found: list[agent_pb2.Image] = []
    for t in chosen:
        try:
            images = _list(t)
        except grpc.RpcError as e:
            print(f"juggler images: {t.name}: {_err(e)}", file=sys.stderr)
            status = 1
            continue
        if args.tree:
            if len(chosen) > 1:
                print(f"{t.name}:")
            print(render_tree(images))
        found += images
    if args.tree:
        return status
    rows = image_rows(merge(found), time.time(), args.repository, args.no_trunc)
    if args.quiet:
        for row in rows:
            print(row[2])
    else:
        print(render_table(COLUMNS, rows))
    return status


def rmi_main(args: argparse.Namespace) -> int:
    try:
        chosen = targets(args)
    except (LookupError, operator.NoMaster, grpc.RpcError) as e:
        print(f"juggler rmi: {_err(e)}", file=sys.stderr)
        return 1
    status = 0
    for t in chosen:
        prefix = f"{t.name}: " if len(chosen) > 1 else ""
        for ref in args.references:
            try:
                if t.work_dir:
                    from juggler.images.store import ImageError
                    try:
                        deleted = _local_store(t.work_dir).remove(ref)
                    except ImageError as e:
                        raise ImageFailure(str(e)) from None
                else:
                    with servers.sync_channel(t.address) as ch:
                        deleted = list(agent_pb2_grpc.AgentStub(ch).RemoveImage(
                            agent_pb2.RemoveImageRequest(reference=ref), timeout=60).deleted)
            except (grpc.RpcError, ImageFailure) as e:
                print(f"juggler rmi: {prefix}{_err(e)}", file=sys.stderr)
                status = 1
                continue
            print(f"{prefix}Untagged: {ref}")
            for d in deleted:
                print(f"{prefix}Deleted: {d}")
    return status


def _chunks(path: Path, name: str) -> Iterator[agent_pb2.ImportImageChunk]:
    with open(path, "rb") as f:
        first = True
        while True:
            data = f.read(1 << 20)
            if not data and not first:
                return
            yield agent_pb2.ImportImageChunk(name=name if first else "", data=data)
            first = False
            if not data:
                return


def import_main(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.exists():
        print(f"juggler image import: {path}: no such file or directory", file=sys.stderr)
        return 2
    try:
        chosen = targets(args)
    except (LookupError, operator.NoMaster, grpc.RpcError) as e:
        print(f"juggler image import: {_err(e)}", file=sys.stderr)
        return 1
    status = 0
    for t in chosen:
        prefix = f"{t.name}: " if len(chosen) > 1 else ""
        try:
            if t.work_dir:
                from juggler.images.store import ImageError
                store = _local_store(t.work_dir)
                try:
                    imported = _local_proto(store, asyncio.run(
                        store.import_archive(path, args.name)))
                except ImageError as e:
                    raise ImageFailure(str(e)) from None
            else:
                if path.is_dir():
                    raise ImageFailure(f"{path} is a directory: make it a tar to send it to "
                                       "an agent (tar -C DIR -cf FILE.tar .)")
                with servers.sync_channel(t.address) as ch:
                    imported = list(agent_pb2_grpc.AgentStub(ch).ImportImage(
                        _chunks(path, args.name), timeout=600).images)
        except (grpc.RpcError, ImageFailure) as e:
            print(f"juggler image import: {prefix}{_err(e)}", file=sys.stderr)
            status = 1
            continue
        for img in imported:
            print(f"{prefix}Loaded image: {', '.join(img.references) or img.id}")
    return status
