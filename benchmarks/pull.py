"""Pull + unpack of a multi-layer image from a loopback docker-registry, cold and
warm, side by side with `skopeo copy` + `umoci unpack` of the same image.

    sudo python benchmarks/pull.py [--quick] [--layers N] [--layer-mb M]

The image: busybox plus N layers of random (incompressible) files, at least
100 MB in all (--quick: 4 × 4 MB). Figures:

    cold_seconds            ImageStore.pull into an empty store (download,
                            verify, unpack every layer)
    skopeo_umoci_seconds    skopeo copy docker://… oci:DIR + umoci unpack
    ratio                   cold / skopeo+umoci (target ≤ 1)
    warm_start_overhead_ms  what a second container from the cached image
                            costs over one from a rootfs directory: the agent's
                            lookup + lease + config resolution, plus an
                            overlay mount with the image's layers instead of
                            one directory (median of repeats, in a private
                            mount namespace). Target < 5 ms.

Needs root, docker-registry, skopeo and umoci (scripts/setup installs them).
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from juggler.container import rootfs, syscalls
from juggler.images import config as image_config
from juggler.images.store import ImageStore
from juggler.testing.registry import ImageBuilder, run, start_registry
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.v1 import common_pb2


def build(work: Path, layers: int, layer_mb: int) -> ImageBuilder:
    b = ImageBuilder(work / "layout")
    b.new("bench")
    b.add_layer("bench", make_busybox_rootfs)
    for i in range(layers):
        def fill(root: Path, i: int = i) -> None:
            d = root / f"data{i}"
            d.mkdir()
            per = max(1, layer_mb // 4)
            for j in range(4):
                (d / f"blob{j}").write_bytes(os.urandom(per << 20))
            for j in range(200):  # and many small files, as real images have
                (d / f"small{j}").write_bytes(os.urandom(2048))
        b.add_layer("bench", fill)
    b.config("bench", "--config.cmd", "sh")
    return b


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def overlay_ms(lowers: list[str], sandbox: Path, repeats: int) -> float:
    """Median ms of an overlay mount (+ umount) with these lower dirs, in a child
    that has its own mount namespace."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            syscalls.unshare(syscalls.CLONE_NEWNS)
            rootfs.make_private()
            times = []
            for i in range(repeats):
                box = sandbox / f"{i}"
                rootfs.prepare(box)
                t = time.perf_counter()
                if len(lowers) == 1:
                    rootfs.mount_overlay(lowers[0], box)
                else:
                    rootfs.mount_overlay("", box, tuple(lowers))
                times.append((time.perf_counter() - t) * 1000)
                syscalls.umount2(str(rootfs.sandbox_dirs(box)["merged"]), 0)
            os.write(w, json.dumps(statistics.median(times)).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return float(json.loads(data))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small image, for a smoke run")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--layer-mb", type=int, default=28)
    args = ap.parse_args()
    if args.quick:
        args.layers, args.layer_mb = 4, 4
    if os.geteuid() != 0:
        print("pull: needs root (layers hold whiteouts and owners; overlay mounts)",
              file=sys.stderr)
        return 1
    for tool in ("docker-registry", "skopeo", "umoci"):
        if shutil.which(tool) is None:
            print(f"pull: needs {tool} (run scripts/setup)", file=sys.stderr)
            return 1
    work = Path(tempfile.mkdtemp(prefix="juggler-bench-pull-"))
    reg = start_registry(work / "registry")
    try:
        b = build(work, args.layers, args.layer_mb)
        ref = reg.push(b.layout, "bench", "bench:1")
        image_bytes = sum(f.stat().st_size for f in (work / "registry/data").rglob("data")
                          if f.is_file() and "blobs" in str(f))

        store = ImageStore(work / "agent/images")
        cold = timed(lambda: asyncio.run(store.pull(ref)))
        warm_pull = timed(lambda: asyncio.run(store.pull(ref)))

        def skopeo_umoci() -> None:
            run("skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                f"docker://{ref}", f"oci:{work / 'sk'}:bench")
            run("umoci", "unpack", "--image", f"{work / 'sk'}:bench", work / "sk-bundle")
        su = timed(skopeo_umoci)

        # Warm start: the agent's per-container work for an image, vs a rootfs dir.
        image = store.get(ref)
        assert image is not None
        task = common_pb2.TaskInfo(task_id="t", command=common_pb2.CommandInfo(argv=["sh"]),
                                   container=common_pb2.ContainerInfo(image=ref))
        resolve = []
        for i in range(50):
            t = time.perf_counter()
            img, layers = store.acquire(f"bench/{i}", ref)
            image_config.apply(task, img.config)
            resolve.append((time.perf_counter() - t) * 1000)
            store.release(f"bench/{i}")
        resolve_ms = statistics.median(resolve)
        _, layers = store.acquire("bench/mount", ref)
        flat = work / "sk-bundle" / "rootfs"
        layers_ms = overlay_ms(layers, work / "mnt-layers", 30)
        dir_ms = overlay_ms([str(flat)], work / "mnt-dir", 30)
        overhead = resolve_ms + max(0.0, layers_ms - dir_ms)
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)

    ratio = cold / su
    rows = [("image", f"{image_bytes / 1e6:.1f} MB in {len(layers)} layers"),
            ("juggler pull (cold)", f"{cold:.2f} s"),
            ("juggler pull (warm, cached)", f"{warm_pull * 1000:.1f} ms"),
            ("skopeo copy + umoci unpack", f"{su:.2f} s"),
            ("ratio cold / skopeo+umoci", f"{ratio:.2f} (target <= 1)"),
            ("lookup + lease + config", f"{resolve_ms:.2f} ms"),
            (f"overlay mount, {len(layers)} layers", f"{layers_ms:.2f} ms"),
            ("overlay mount, rootfs dir", f"{dir_ms:.2f} ms"),
            ("warm start overhead", f"{overhead:.2f} ms (target < 5)")]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    print(json.dumps({"image_bytes": image_bytes, "cold_seconds": round(cold, 3),
                      "skopeo_umoci_seconds": round(su, 3), "ratio": round(ratio, 3),
                      "warm_start_overhead_ms": round(overhead, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
