"""Images on an agent: references, the registry client, the content store,
layer unpacking and image configs (issue 6).

    reference.py  "busybox" → docker.io/library/busybox:latest (pure)
    config.py     image config + task → the command to run; platform choice (pure)
    registry.py   Docker Registry HTTP API v2 client (auth, manifests, blobs)
    layer.py      a layer tar (gzip or plain) → an overlayfs-ready directory
    archive.py    OCI layout (dir or tar) and `docker save` tar readers
    store.py      blobs, unpacked layers, image records, refcounts, gc, pulls
    service.py    the Agent API's image RPCs (PullImage, ListImages, ...)
"""
