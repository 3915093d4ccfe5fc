"""A process's terminal: a pty made inside the container, its master passed out.

As runc's console socket: the pty is allocated *inside* the container's mount
namespace (its own devpts instance, see rootfs.populate_dev), so the process
sees `/dev/pts/N` of its container; the master travels back to the process
that serves it (executor or agent) over a Unix socket with SCM_RIGHTS.

    inside (child)                          outside
    master, slave = openpty()
    send master ───── socketpair ─────────▶ receive(sock) → master
    slave → controlling tty (TIOCSCTTY),
            fds 0, 1, 2
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios


def open_in_container(console_fd: int) -> int:
    """Allocate a pty in the current mount namespace, send its master over the
    socket `console_fd` (closed afterwards) and return the slave, already the
    controlling terminal of this process (a session leader without one)."""
    master, slave = os.openpty()
    with socket.socket(fileno=console_fd) as sock:
        socket.send_fds(sock, [b"m"], [master])
    os.close(master)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    return slave


def receive(sock: socket.socket) -> int | None:
    """The master sent by `open_in_container`, or None when the peer ended first."""
    _, fds, _, _ = socket.recv_fds(sock, 16, 1)
    return fds[0] if fds else None


def set_size(fd: int, rows: int, columns: int) -> None:
    if rows and columns:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, columns, _, _ = struct.unpack(
        "HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, columns
