"""Layer unpacking: whiteouts, opaque dirs, modes, owners, links, hostile names."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from juggler.images.layer import LayerError, unpack

pytestmark = [pytest.mark.root]


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("requires root (mknod, trusted.* xattrs, chown)")


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644,
           link: str = "", uid: int = 0, gid: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.uid, info.gid = kind, mode, link, uid, gid
    info.mtime = 1_600_000_000
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def layer(*members: tuple[tarfile.TarInfo, bytes], compress: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    raw = buf.getvalue()
    return gzip.compress(raw) if compress else raw


def test_files_dirs_links_modes_owners_and_the_diff_id(tmp_path: Path) -> None:
    needs_root()
    plain = layer(
        member("bin/", tarfile.DIRTYPE, mode=0o755),
        member("bin/tool", data=b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1001),
        member("bin/alias", tarfile.SYMTYPE, link="tool"),
        member("bin/hard", tarfile.LNKTYPE, link="bin/tool"),
        member("ro/", tarfile.DIRTYPE, mode=0o555),
        member("ro/f", data=b"x"),
        member("dev/null", tarfile.CHRTYPE),  # never from an image
        member("fifo", tarfile.FIFOTYPE),
        compress=False)
    for data in (plain, gzip.compress(plain)):
        dest = tmp_path / f"l{len(data)}"
        dest.mkdir()
        diff_id, size = unpack(io.BytesIO(data), dest)
        assert diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
        assert size == len(b"#!/bin/sh\n") + 1
        st = os.stat(dest / "bin/tool")
        assert stat.S_IMODE(st.st_mode) == 0o4755 and (st.st_uid, st.st_gid) == (1000, 1001)
        assert os.readlink(dest / "bin/alias") == "tool"
        assert os.stat(dest / "bin/hard").st_ino == st.st_ino
        assert stat.S_IMODE(os.stat(dest / "ro").st_mode) == 0o555
        assert not (dest / "dev/null").exists()
        assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)
        assert int(os.stat(dest / "bin/tool").st_mtime) == 1_600_000_000


def test_whiteouts_become_overlay_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    needs_root()
    unpack(io.BytesIO(layer(member("etc/.wh.motd"), member("opq/", tarfile.DIRTYPE),
                            member("opq/.wh..wh..opq"), member("opq/new", data=b"n"))),
           tmp_path)
    st = os.lstat(tmp_path / "etc/motd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert not (tmp_path / "etc/.wh.motd").exists()
    assert os.getxattr(tmp_path / "opq", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(tmp_path / "opq")) == ["new"]


@pytest.mark.parametrize("members", [
    [member("../escape", data=b"x")],
    [member("a/../../escape", data=b"x")],
    [member("link", tarfile.SYMTYPE, link="/"), member("link/etc/passwd", data=b"x")],
    [member("hard", tarfile.LNKTYPE, link="/etc/passwd")],
])
def test_hostile_layers_cannot_write_outside(tmp_path: Path, members) -> None:
    needs_root()
    dest = tmp_path / "layer"
    dest.mkdir()
    with pytest.raises(LayerError):
        unpack(io.BytesIO(layer(*members)), dest)
    assert not (tmp_path / "escape").exists()


def test_not_a_tar_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LayerError):
        unpack(io.BytesIO(gzip.compress(b"not a tar" * 100)), tmp_path)


def test_whiteouts_apply_to_the_layers_below_only(tmp_path: Path) -> None:
    """layer.md: "Files that are present in the same layer as a whiteout file
    can only be hidden by whiteout files in subsequent layers"."""
    needs_root()
    from juggler.images.layer import BELOW, INHERIT, NEW, unpack_layer

    done = unpack_layer(io.BytesIO(layer(
        member("f", data=b"kept"), member(".wh.f"),           # a file of the layer stays
        member(".wh.d"), member("d/new", data=b"n"),          # a new, opaque directory
        member("p/q/.wh.x"),                                  # only a whiteout's parents
        member("s", tarfile.SYMTYPE, link="f"), member("h", tarfile.LNKTYPE, link="s"))),
        tmp_path)
    assert (tmp_path / "f").read_bytes() == b"kept"
    assert os.getxattr(tmp_path / "d", "trusted.overlay.opaque") == b"y"
    assert os.listdir(tmp_path / "d") == ["new"]
    assert os.lstat(tmp_path / "h").st_ino == os.lstat(tmp_path / "s").st_ino
    assert done.implicit == {"": INHERIT, "d": NEW, "p": BELOW, "p/q": BELOW}
    assert done.whiteout_dirs == ["p/q"]


@pytest.mark.parametrize("members", [
    [member("f", data=b"x"), member("f/g", data=b"y")],      # beneath a file of the layer
    [member("h", tarfile.LNKTYPE, link="later"), member("later", data=b"x")],
    [member(".", tarfile.SYMTYPE, link="/")],                  # the root as a symlink
])
def test_contradictory_layers_are_refused(tmp_path: Path, members) -> None:
    needs_root()
    with pytest.raises(LayerError):
        unpack(io.BytesIO(layer(*members)), tmp_path)
