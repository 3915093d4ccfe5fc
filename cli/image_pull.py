"""`juggler run` and `juggler create` on an image no agent has, as the docker
CLI's run and create do (docker/cli command/container/create.go): the create
answers 404 "No such image: REF"; say "Unable to find image 'REF' locally" on
stderr, pull it through POST /images/create with its progress drawn as
`juggler pull` draws it (cli/images.py Bars), and create again. A pull that
fails raises PullFailed with the pull's error; no container was made.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from juggler.cli.docker_client import DockerClient, DockerError

# Docker's progress statuses → the agent's, which Bars draws (apps/docker_image_views).
_AGENT_STATUS = {"Pulling fs layer": "waiting", "Already exists": "already exists",
                 "Verifying Checksum": "verifying", "Pull complete": "pull complete",
                 "Downloading": "downloading"}


class PullFailed(Exception):
    """The pull of a missing image failed: str() is what to print after the
    program's name (the daemon's error, as the docker CLI prints it)."""


def missing_image(e: DockerError) -> bool:
    """Whether a create's error is Docker's "the image is not here" (a 404 of
    moby's ErrImageDoesNotExist, which the docker CLI answers by pulling)."""
    return e.status == 404 and e.message.startswith("No such image: ")


class Progress:
    """Docker's JSON pull messages drawn as `juggler pull` draws an agent's."""

    def __init__(self, out: IO[str]) -> None:
        from juggler.cli.images import Bars  # only once a pull is needed (start-up time)

        self.out = out
        self.bars = Bars(out=out)
        self.error = ""

    def __call__(self, m: dict[str, Any]) -> None:
        if m.get("error") or m.get("errorDetail"):
            self.error = str(m.get("error") or (m.get("errorDetail") or {}).get("message"))
            return
        status, ident = str(m.get("status") or ""), str(m.get("id") or "")
        if not ident or status.startswith("Pulling from "):
            print(f"{ident}: {status}" if ident else status, file=self.out, flush=True)
            return
        from juggler.v1 import agent_pb2

        detail = m.get("progressDetail") or {}
        self.bars.update(agent_pb2.PullImageProgress(
            layer=ident, status=_AGENT_STATUS.get(status, status.lower()),
            current=int(detail.get("current") or 0), total=int(detail.get("total") or 0)))


def create(docker: DockerClient, body: dict[str, Any], name: str = "",
           out: IO[str] | None = None) -> dict[str, Any]:
    """POST /containers/create; on Docker's missing-image 404, pull the image
    (progress on `out`, default stderr) and create again. Returns the
    create's answer. Raises PullFailed (the pull failed), DockerError and
    DockerUnreachable as DockerClient.create."""
    try:
        return docker.create(body, name)
    except DockerError as e:
        if not missing_image(e):
            raise
    from juggler.images.reference import ReferenceError, parse

    out = out or sys.stderr
    image = str(body.get("Image") or "")
    try:
        ref = parse(image)
    except ReferenceError as e:   # the service found it missing, so it parsed there
        raise PullFailed(str(e)) from None
    # Docker's words (cli/command/container/create.go), with ":latest" added
    print(f"Unable to find image '{ref.familiar()}' locally", file=out, flush=True)
    progress = Progress(out)
    try:
        docker.pull(ref.name, ref.digest or ref.tag, progress)
    except DockerError as e:
        raise PullFailed(str(e)) from None
    if progress.error:
        raise PullFailed(progress.error)
    return docker.create(body, name)
