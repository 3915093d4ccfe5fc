"""Images from a real registry (Debian's docker-registry on loopback), built with
umoci and pushed with skopeo (tests/registry.py): pulled into a real store,
run as containers on a real cluster, and the bad cases — corrupt blobs, unknown
tags, a registry that is down, a pull killed halfway, token and basic auth.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from juggler.common import servers
from juggler.images.config import host_platform
from juggler.images.registry import Credentials, RegistryClient
from juggler.images.store import Image, ImageError, ImageStore, PullEvent
from juggler.testing.registry import TestImages, proxy_for, start_registry
from tests.conftest import Cluster, needs_root, wait_for

pytestmark = [pytest.mark.root]


def pull(store: ImageStore, ref: str, client: RegistryClient | None = None):  # type: ignore[no-untyped-def]
    return asyncio.run(store.pull(ref, None, client))


def trusted(store: ImageStore) -> set[str]:
    return {p.name for p in store.layers.iterdir()} | {p.name for p in store.blobs.iterdir()}


# -- the store -------------------------------------------------------------------------


def test_pull_applies_whiteouts_and_opaque_dirs_in_the_layers(test_images: TestImages,
                                                              tmp_path: Path) -> None:
    needs_root()
    store = ImageStore(tmp_path / "images")
    image = pull(store, test_images.refs["multi"])
    assert len(image.layers) == 3
    base, second, third = (store.layer_path(d) for d in image.layers)
    assert (base / "etc/motd").is_file()
    assert (second / "etc/motd").is_char_device()  # the whiteout, overlayfs-style
    assert os.getxattr(third / "opq", "trusted.overlay.opaque") == b"y"
    assert store.get(test_images.refs["multi"]).id == image.id
    assert list(store.tmp.iterdir()) == []


def test_a_shared_layer_is_stored_once_and_refcounted(test_images: TestImages,
                                                      tmp_path: Path) -> None:
    needs_root()
    store = ImageStore(tmp_path / "images")
    a = pull(store, test_images.refs["base"])
    b = pull(store, test_images.refs["sibling"])
    assert a.layers[0] == b.layers[0]
    assert len(list(store.layers.iterdir())) == 2
    assert store.layer_users()[a.layers[0]] == (2, 0)
    # A container pins its image: removing the reference keeps its layers.
    _, dirs = store.acquire("fw/task", test_images.refs["sibling"])
    assert dirs[-1] == str(store.layer_path(a.layers[0]))  # top first: base is last
    store.remove(test_images.refs["sibling"])
    assert store.layer_path(b.layers[1]).is_dir()
    store.release("fw/task")
    store.gc()
    assert not store.layer_path(b.layers[1]).exists()
    assert store.layer_path(a.layers[0]).is_dir()  # base still has an image
    store.remove(test_images.refs["base"])
    assert list(store.layers.iterdir()) == [] and list(store.blobs.iterdir()) == []


def test_concurrent_pulls_of_one_image_download_once(test_images: TestImages,
                                                     tmp_path: Path) -> None:
    needs_root()
    store = ImageStore(tmp_path / "images")
    with proxy_for(test_images.registry) as proxy:
        ref = test_images.refs["multi"].replace(test_images.registry.address, proxy.address)

        async def both():  # type: ignore[no-untyped-def]
            return await asyncio.gather(store.pull(ref), store.pull(ref))

        a, b = asyncio.run(both())
    assert a.id == b.id
    blobs = [p for p in proxy.requests if "/blobs/" in p]
    assert len(blobs) == len(set(blobs)) == 4  # config + three layers, once each


def test_multi_platform_index_resolves_to_this_host(test_images: TestImages,
                                                    tmp_path: Path) -> None:
    needs_root()
    store = ImageStore(tmp_path / "images")
    image = pull(store, test_images.refs["multiarch"])
    arch = host_platform()[1]
    assert (store.layer_path(image.layers[-1]) / "arch").read_text() == f"{arch}\n"
    other = "arm64" if arch == "amd64" else "amd64"
    client = RegistryClient(platform=("linux", other, ""))
    image2 = pull(ImageStore(tmp_path / "other"), test_images.refs["multiarch"], client)
    assert image2.id != image.id


def test_a_corrupt_blob_is_rejected_and_not_kept(test_images: TestImages,
                                                 tmp_path: Path) -> None:
    needs_root()
    store = ImageStore(tmp_path / "images")
    with proxy_for(test_images.registry) as proxy:
        ref = test_images.refs["sibling"].replace(test_images.registry.address, proxy.address)
        manifest = json.loads(test_images.registry.request(
            "GET", "/v2/sibling/manifests/1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})[2])
        proxy.corrupt = manifest["layers"][1]["digest"]
        with pytest.raises(ImageError, match="digest") as e:
            pull(store, ref)
        assert e.value.kind == "corrupt"
    assert store.get(ref) is None
    assert list(store.tmp.iterdir()) == []
    bad = manifest["layers"][1]["digest"].removeprefix("sha256:")
    assert bad not in trusted(store)
    assert len(list(store.layers.iterdir())) <= 1  # at most the good base layer
    pull(store, test_images.refs["sibling"])  # the real registry's blob is fine


def test_unknown_tag_and_a_registry_that_is_down_give_clear_errors(
        test_images: TestImages, tmp_path: Path) -> None:
    needs_root()
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ImageError, match=r"manifest unknown.*base:nope") as e:
        pull(store, f"{test_images.registry.address}/base:nope")
    assert e.value.kind == "not_found"
    with pytest.raises(ImageError,
                       match=r"cannot reach the registry at http://127\.0\.0\.1:1") as e:
        pull(store, "127.0.0.1:1/base:1")
    assert e.value.kind == "unreachable"
    with pytest.raises(ImageError, match="lowercase"):
        pull(store, "127.0.0.1:1/Base")


def test_a_pull_killed_halfway_leaves_nothing_trusted_and_runs_again(
        test_images: TestImages, tmp_path: Path) -> None:
    needs_root()
    work = tmp_path / "agent"
    with proxy_for(test_images.registry) as proxy:
        ref = test_images.refs["base"].replace(test_images.registry.address, proxy.address)
        manifest = json.loads(test_images.registry.request(
            "GET", "/v2/base/manifests/1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})[2])
        proxy.stall = manifest["layers"][0]["digest"]
        proc = subprocess.Popen([sys.executable, "-m", "juggler.cli.main", "pull",
                                 "--work-dir", str(work), ref],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proxy.stalled.wait(60), "the pull never reached the layer"
            wait_for(lambda: any((work / "images/tmp").iterdir()), 60, what="a partial layer")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        proxy.release.set()
        store = ImageStore(work / "images")  # opening it drops the dead pull's leftovers
        assert list(store.tmp.iterdir()) == []
        assert store.get(ref) is None and list(store.layers.iterdir()) == []
        proxy.stall = ""
        image = pull(store, ref)
    assert (store.layer_path(image.layers[0]) / "data/keep").read_text() == "kept\n"


def test_pull_cancelled_halfway_in_process_then_again(test_images: TestImages,
                                                      tmp_path: Path) -> None:
    needs_root()
    store = ImageStore(tmp_path / "images")
    with proxy_for(test_images.registry) as proxy:
        ref = test_images.refs["configured"].replace(test_images.registry.address,
                                                     proxy.address)
        manifest = json.loads(test_images.registry.request(
            "GET", "/v2/configured/manifests/1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})[2])
        proxy.stall = manifest["layers"][0]["digest"]

        async def cancel_midway() -> None:
            job = asyncio.ensure_future(store.pull(ref))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while not proxy.stalled.is_set():
                assert loop.time() < deadline, "the pull never reached the layer"
                await asyncio.sleep(0.02)
            job.cancel()
            proxy.release.set()
            with pytest.raises(asyncio.CancelledError):
                await job
            # The layer's download goes on (shielded, shared with other pulls) until its
            # thread sees the cancel; the cleanup needs this loop alive, so wait here.
            deadline = loop.time() + 60
            while list(store.tmp.iterdir()):
                assert loop.time() < deadline, "the cancelled pull did not clean up"
                await asyncio.sleep(0.05)

        asyncio.run(cancel_midway())
        assert store.get(ref) is None
        proxy.stall = ""
        assert pull(store, ref).layers


def test_a_layer_shared_with_a_pull_that_ends_is_still_pulled_for_the_other(
        test_images: TestImages, tmp_path: Path) -> None:
    """Two images share their base layer. The pull that started its download ends
    (cancelled by its caller) while the other still waits for that layer: the
    download goes on, and the other image is pulled."""
    needs_root()
    store = ImageStore(tmp_path / "images")
    registry = test_images.registry

    def layers_of(name: str) -> list[str]:
        manifest = json.loads(registry.request(
            "GET", f"/v2/{name}/manifests/1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})[2])
        return [layer["digest"] for layer in manifest["layers"]]

    with proxy_for(registry) as proxy:
        def via(name: str) -> str:
            return test_images.refs[name].replace(registry.address, proxy.address)

        base, top = layers_of("configured")
        assert layers_of("sibling")[0] == base
        proxy.stall, proxy.finish_after_release = base, True

        async def both() -> Image:
            first = asyncio.ensure_future(store.pull(via("sibling")))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while not proxy.stalled.is_set():  # the first pull downloads the base layer
                assert loop.time() < deadline, "the first pull never reached the base layer"
                await asyncio.sleep(0.02)
            events: list[PullEvent] = []
            second = asyncio.ensure_future(store.pull(via("configured"), events.append))
            # Once its own top layer is in, the second pull waits for the base layer only.
            while not any(e.layer == top and e.status == "pull complete" for e in events):
                assert loop.time() < deadline, f"the second pull did not get on: {events}"
                await asyncio.sleep(0.02)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            proxy.release.set()
            return await asyncio.wait_for(second, 60)

        image = asyncio.run(both())
        got = store.get(via("configured"))
        assert got is not None and got.id == image.id
        assert store.get(via("sibling")) is None
    assert (store.layer_path(image.layers[0]) / "data/keep").read_text() == "kept\n"
    assert list(store.tmp.iterdir()) == []


def test_token_auth_pulls_with_credentials_and_is_refused_without(
        test_images: TestImages, tmp_path: Path) -> None:
    needs_root()
    with proxy_for(test_images.registry, token=("alice", "s3cret")) as proxy:
        ref = test_images.refs["base"].replace(test_images.registry.address, proxy.address)
        with pytest.raises(ImageError, match="refused a token anonymously") as e:
            pull(ImageStore(tmp_path / "anon"), ref)
        assert e.value.kind == "unauthorized"
        wrong = RegistryClient(credentials={proxy.address: Credentials("alice", "nope")})
        with pytest.raises(ImageError, match="refused a token for 'alice'"):
            pull(ImageStore(tmp_path / "wrong"), ref, wrong)
        good = RegistryClient(credentials={proxy.address: Credentials("alice", "s3cret")})
        assert pull(ImageStore(tmp_path / "good"), ref, good).layers
        assert any(p.startswith("/token") for p in proxy.requests)


def test_basic_auth_with_htpasswd(test_images: TestImages, tmp_path: Path) -> None:
    needs_root()
    reg = start_registry(tmp_path / "reg", auth=("bob", "pa55word"))
    try:
        ref = reg.push(test_images.layout, "base", "private:1")
        with pytest.raises(ImageError, match=r"refused access anonymously|wants a user name"):
            pull(ImageStore(tmp_path / "anon"), ref)
        client = RegistryClient(credentials={reg.address: Credentials("bob", "pa55word")})
        assert pull(ImageStore(tmp_path / "good"), ref, client).layers
    finally:
        reg.stop()


def test_import_oci_layout_and_docker_save(test_images: TestImages, tmp_path: Path) -> None:
    needs_root()
    store = ImageStore(tmp_path / "images")
    images = asyncio.run(store.import_archive(test_images.layout, "imported/app"))
    by_ref = {r: i for i in images for r in i.references}
    multi = by_ref["docker.io/imported/app:multi"]
    assert len(multi.layers) == 3
    assert store.layer_path(multi.layers[1]).joinpath("etc/motd").is_char_device()
    # A `docker save` tar of the sibling image, made from the OCI layout's blobs.
    saved = tmp_path / "saved.tar"
    blobs = test_images.layout / "blobs/sha256"
    index = json.loads((test_images.layout / "index.json").read_text())
    entry = next(m for m in index["manifests"]
                 if m["annotations"]["org.opencontainers.image.ref.name"] == "sibling")
    manifest = json.loads((blobs / entry["digest"][7:]).read_bytes())
    with tarfile.open(saved, "w") as tar:
        layers = []
        for d in manifest["layers"]:
            raw = gzip.decompress((blobs / d["digest"][7:]).read_bytes())
            name = f"{hashlib.sha256(raw).hexdigest()}/layer.tar"
            (tmp_path / "l.tar").write_bytes(raw)
            tar.add(tmp_path / "l.tar", name)
            layers.append(name)
        tar.add(blobs / manifest["config"]["digest"][7:], "config.json")
        (tmp_path / "m.json").write_text(json.dumps(
            [{"Config": "config.json", "RepoTags": ["saved/app:1"], "Layers": layers}]))
        tar.add(tmp_path / "m.json", "manifest.json")
    dstore = ImageStore(tmp_path / "docker")
    got = asyncio.run(dstore.import_archive(saved))
    assert got[0].references == ["docker.io/saved/app:1"]
    assert (dstore.layer_path(got[0].layers[1]) / "sibling").read_text() == "sibling\n"


# -- containers from images on a real cluster -----------------------------------------


def test_run_an_image_on_the_cluster(cluster: Cluster, test_images: TestImages) -> None:
    r = cluster.juggler("run", "--image", test_images.refs["multi"], "--", "sh", "-c",
                        "test -e /etc/motd && echo motd-present; ls /opq; cat /layer2 "
                        "/data/keep", check=True)
    assert r.stdout.split() == ["new", "layer", "2", "kept"], r.stdout + r.stderr


def test_the_image_config_applies_and_the_task_overrides_it(cluster: Cluster,
                                                            test_images: TestImages) -> None:
    ref = test_images.refs["configured"]
    r = cluster.juggler("run", "--image", ref, check=True)
    assert r.stdout.splitlines() == ["hello from the image", "/srv", "65534"], r.stderr
    r = cluster.juggler("run", "--image", ref, "-e", "GREETING=overridden", "-w", "/tmp",
                        "-u", "root", "--", "sh", "-c", "echo $GREETING; pwd; id -u",
                        check=True)
    assert r.stdout.splitlines() == ["overridden", "/tmp", "0"]


def test_two_containers_from_one_image_do_not_share_writes(cluster: Cluster,
                                                           test_images: TestImages) -> None:
    ref = test_images.refs["base"]
    a = cluster.juggler("run", "--image", ref, "--", "sh", "-c",
                        "echo mine > /data/keep; echo new > /written; cat /data/keep",
                        check=True)
    assert a.stdout == "mine\n"
    b = cluster.juggler("run", "--image", ref, "--", "sh", "-c",
                        "cat /data/keep; test -e /written && echo leaked || echo clean",
                        check=True)
    assert b.stdout == "kept\nclean\n"


def test_an_image_that_cannot_be_had_fails_the_task_with_a_reason(
        cluster: Cluster, test_images: TestImages) -> None:
    # -q hides status changes, not why the task failed; the exit code is Docker's
    # for a container that could not be started (125), not the command's.
    r = cluster.juggler("run", "-q", "--image", f"{test_images.registry.address}/nope:1",
                        "--", "true")
    assert r.returncode == 125
    assert "REASON_CONTAINER_LAUNCH_FAILED" in r.stderr
    assert "cannot get image" in r.stderr and "manifest unknown" in r.stderr
    assert "no sandbox" not in r.stderr  # no noise about the output it never had
    r = cluster.juggler("run", "--image", f"{test_images.registry.address}/nope:1", "--",
                        "true")
    assert r.returncode == 125 and "no sandbox" not in r.stderr, r.stderr
    # Attached (-i) the same: one error, no second one about attaching to a
    # task that never ran.
    r = cluster.juggler("run", "-i", "--role", "*", "--image",
                        f"{test_images.registry.address}/nope:1", "--", "true")
    assert r.returncode == 125 and "cannot get image" in r.stderr, r.stderr
    assert "attach" not in r.stderr and "cannot read" not in r.stderr, r.stderr
    r = cluster.juggler("run", "--image", "Bad_Ref", "--", "true")
    assert r.returncode == 2 and "lowercase" in r.stderr


def test_pull_images_rmi_through_the_agents(cluster: Cluster, test_images: TestImages) -> None:
    ref = test_images.refs["sibling"]
    r = cluster.juggler("pull", ref, check=True)
    assert "Status: downloaded" in r.stdout and "Pull complete" in r.stderr
    listing = cluster.juggler("images", check=True).stdout
    assert f"{test_images.registry.address}/sibling" in listing and "IMAGE ID" in listing
    tree = cluster.juggler("images", "--tree", check=True).stdout
    assert "shared with" in tree or tree.count("└─") >= 1
    r = cluster.juggler("rmi", ref, check=True)
    assert "Untagged" in r.stdout
    assert f"{test_images.registry.address}/sibling " not in cluster.juggler(
        "images", check=True).stdout
    assert cluster.juggler("rmi", ref).returncode == 1


def test_exec_into_a_task_from_an_image(cluster: Cluster, test_images: TestImages) -> None:
    """`juggler exec` enters the container as it was launched: the image's layers,
    and its config's user, working directory and environment (it failed with
    "container.image ... was not resolved to layers by the agent")."""

    from juggler.v1 import common_pb2, operator_pb2, operator_pb2_grpc

    def running() -> bool:
        with servers.sync_channel(cluster.master) as ch:
            got = operator_pb2_grpc.OperatorStub(ch).GetTasks(
                operator_pb2.GetTasksRequest(), timeout=10)
        return any(v.info.task_id == "img-exec" and v.state == common_pb2.TASK_RUNNING
                   for v in got.tasks)

    proc = cluster.popen("run", "-q", "--name", "img-exec", "--image",
                         test_images.refs["configured"], "--", "sh", "-c",
                         "while :; do sleep 0.2; done")
    try:
        wait_for(lambda: running() or proc.poll() is not None, 60, what="img-exec RUNNING")
        assert proc.poll() is None, proc.communicate()
        r = cluster.juggler("exec", "img-exec", "--", "sh", "-c",
                            "echo $GREETING; pwd; id -u; cat /data/keep; ls /srv")
        assert (r.returncode, r.stderr) == (0, "")
        assert r.stdout.splitlines() == ["hello from the image", "/srv", "65534", "kept"]
        r = cluster.juggler("exec", "-u", "root", "-w", "/data", "img-exec", "--", "sh", "-c",
                            "id -u; pwd; exit 4")
        assert (r.returncode, r.stdout.split()) == (4, ["0", "/data"]), r.stderr
        r = cluster.juggler("exec", "img-exec", "--", "nosuch")
        assert (r.returncode, r.stderr) == (
            127, "juggler exec: exec 'nosuch': No such file or directory\n")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # juggler run kills its task
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
