"""A tiny root filesystem made of busybox, for container tests."""

from __future__ import annotations

import shutil
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh", "ash", "echo", "cat", "ls", "ps", "hostname", "sleep", "id", "true", "false",
    "mount", "umount", "touch", "head", "tail", "ip", "ifconfig", "env", "pwd", "mkdir",
    "rm", "kill", "grep", "wc", "yes", "dd", "test", "[", "whoami", "uname", "stat",
    "readlink", "printf", "seq", "tr", "sed", "cut", "date", "df",
    "httpd", "wget", "nc",  # as Docker Hub's busybox: `busybox httpd -f -p 80` serves
)


def make_busybox_rootfs(path: Path) -> Path:
    """Build a busybox tree at `path` (bin/busybox + applet symlinks, empty
    proc/ dev/ sys/ tmp/ etc/, and an etc/passwd with root and nobody); returns it."""
    path = Path(path)
    for d in ("bin", "sbin", "usr/bin", "proc", "dev", "sys", "tmp", "etc", "root"):
        (path / d).mkdir(parents=True, exist_ok=True)
    (path / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    for applet in APPLETS:
        link = path / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
    )
    (path / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (path / "etc" / "hostname").write_text("busybox\n")
    return path
