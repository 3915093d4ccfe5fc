"""Images: references, the registry client, the content store, layer unpacking
and image configs. Used by the agent (which pulls and runs them), the master
(which checks references in Accept), the CLI (local listings) and the apps
service's Docker Engine API (references, listings).

    reference.py  "busybox" → docker.io/library/busybox:latest (pure)
    config.py     image config + task → the command to run; platform choice (pure)
    mirrors.py    Docker Hub mirrors (`--registry-mirror`): where to try a Hub name (pure)
    registry.py   Docker Registry HTTP API v2 client (auth, manifests, blobs, tags)
    layer.py      a layer tar (gzip or plain) → an overlayfs-ready directory
    changeset.py  the image-spec's rules for a layer's entries, in any order
    stack.py      an image's layers stacked as the spec says: its stack directory
    archive.py    OCI layout (dir or tar) and `docker save` tar readers
    store.py      blobs, unpacked layers, image records, refcounts, gc, pulls
    messages.py   images as agent.proto messages
    listing.py    images as Docker lists them: rows, filter, sizes, ages (pure)

The agent's own parts live beside it: agent/image_tasks.py (pull, pin and
launch a task's image), agent/image_service.py (the image RPCs).
"""
