"""Images as the Agent API's messages (agent.proto `Image`), for the agent's
image RPCs (agent/image_service.py) and the CLI's local listings."""

from __future__ import annotations

from juggler.images.store import Image, ImageStore
from juggler.v1 import agent_pb2


def image_proto(image: Image, store: ImageStore,
                users: dict[str, tuple[int, int]] | None = None) -> agent_pb2.Image:
    users = users if users is not None else store.layer_users()
    sizes = store.layer_sizes()
    out = agent_pb2.Image(
        id=image.id, digest=image.digest, references=image.references, created=image.created,
        size=image.size, containers=image.containers, config=image.config_json,
        layers=[agent_pb2.ImageLayer(diff_id=d, size=sizes.get(d, 0),
                                     images=users.get(d, (0, 0))[0]) for d in image.layers])
    return out
