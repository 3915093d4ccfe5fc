"""Non-blocking pipe and pty I/O on an asyncio loop, by file descriptor.

Used where a process's stdio is a raw fd rather than a stream asyncio made:
the executor's end of its task's pipes or pty master, the agent's end of an
exec'd process's pty. A pty master reports the end of its slave with EIO, not
EOF; both count as the end here. A `Reader` can be paused: what the process
writes then stays in the pipe, and once the pipe is full the process waits
in write(2) (the executor's back-pressure, executor/attach.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import sys
from collections.abc import Callable, Iterator

CHUNK = 64 * 1024


def watch(fd: int, on_data: Callable[[bytes], None]) -> asyncio.Future[None]:
    """Read `fd` as data arrives, calling `on_data` with each chunk; the future
    completes at EOF (or EIO). `fd` is made non-blocking; the caller closes it."""
    return Reader(fd, on_data).done


class Reader:
    """`watch` that can stop reading for a while: `pause()` leaves what is
    written in the fd (a writer to a full pipe then blocks in write(2)),
    `resume()` reads on. `done` completes at EOF (or EIO); pausing after it
    changes nothing."""

    def __init__(self, fd: int, on_data: Callable[[bytes], None], *,
                 paused: bool = False) -> None:
        self.fd = fd
        self._on_data = on_data
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        self.paused = paused
        os.set_blocking(fd, False)
        if not paused:
            self._loop.add_reader(fd, self._readable)
        self.done.add_done_callback(lambda _: self._loop.remove_reader(fd))

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self._loop.remove_reader(self.fd)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            if not self.done.done():
                self._loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        for _ in range(16):  # bounded, so one busy task cannot starve the loop
            if self.paused or self.done.done():  # on_data may pause
                return
            try:
                data = os.read(self.fd, CHUNK)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                self._loop.remove_reader(self.fd)
                if not self.done.done():
                    self.done.set_result(None)
                return
            self._on_data(data)


class FdWriter:
    """Writes to a non-blocking fd without blocking the loop; the rest waits
    in a buffer. A peer that went away (EPIPE, EIO) silently drops input."""

    def __init__(self, fd: int, *, close_fd: bool = True) -> None:
        self.fd = fd
        self._close_fd = close_fd
        self._buffer = bytearray()
        self._closing = False
        self._closed = False
        os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        if self._closed or self._closing:
            return
        self._buffer += data
        self._flush()

    def close(self) -> None:
        """Close once everything buffered is written."""
        self._closing = True
        self._flush()

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._buffer and not self._closed:
            try:
                n = os.write(self.fd, self._buffer)
            except BlockingIOError:
                loop.add_writer(self.fd, self._flush)
                return
            except OSError:
                self._buffer.clear()
                break
            del self._buffer[:n]
        loop.remove_writer(self.fd)
        if self._closing and not self._closed:
            self._closed = True
            if self._close_fd:
                os.close(self.fd)


SUN_PATH_MAX = 107   # bytes of a Unix socket's path (unix(7): sun_path[108], NUL-ended)


@contextlib.contextmanager
def _through_dirfd(directory: os.PathLike[str] | str, name: str) -> Iterator[str]:
    """`directory`/`name` as /proc/self/fd/<directory fd>/<name>, a path a
    Unix socket can be bound or connected by whatever the length of the real
    one (sun_path holds 108 bytes; a sandbox path may be longer). The fd is
    closed on leaving."""
    dirfd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{dirfd}/{name}"
    finally:
        os.close(dirfd)


def _via_dirfd(directory: os.PathLike[str] | str, name: str,
               act: Callable[[socket.socket, str], None]) -> socket.socket:
    """A Unix socket bound or connected (`act`) to `directory`/`name`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _through_dirfd(directory, name) as path:
            act(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_unix(directory: os.PathLike[str] | str, name: str) -> socket.socket:
    return _via_dirfd(directory, name, lambda s, path: s.bind(path))


def connect_unix(directory: os.PathLike[str] | str, name: str) -> socket.socket:
    return _via_dirfd(directory, name, lambda s, path: s.connect(path))


async def connect_unix_async(directory: os.PathLike[str] | str, name: str) -> socket.socket:
    """connect_unix without blocking the loop (a listener whose queue is full
    makes a blocking connect wait): the connected, non-blocking socket.
    Raises OSError as connect(2) does."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        with _through_dirfd(directory, name) as path:
            await asyncio.get_running_loop().sock_connect(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve_unix(callback: Callable[..., object], directory: os.PathLike[str] | str,
                     name: str, mode: int = 0o600) -> asyncio.AbstractServer:
    """asyncio.start_unix_server on `directory`/`name` bound through the
    directory's fd (bind_unix), given `mode` before it listens. The socket
    file is the caller's to remove: Python 3.13's cleanup would stat the
    /proc/self/fd path it was bound by, an fd closed since (cleanup_socket=False
    there). Raises OSError."""
    sock = bind_unix(directory, name)
    try:
        os.chmod(os.path.join(directory, name), mode)
    except BaseException:
        sock.close()
        raise
    extra = {"cleanup_socket": False} if sys.version_info >= (3, 13) else {}
    return await asyncio.start_unix_server(callback, sock=sock, **extra)  # type: ignore[arg-type]
