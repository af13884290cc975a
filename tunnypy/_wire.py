"""
The transport between a pool and a process worker's child: one object per message.

``send`` pickles the whole object (protocol 5) before writing a byte, so an
object that does not pickle raises in the sender and leaves the connection
as it was. ``recv`` reads one whole message before returning, so an object
that does not unpickle raises in the receiver and leaves the connection at
the next message.

A message is framed as ``Connection.send_bytes`` frames it (a 4-byte length,
or -1 and an 8-byte length), so either side may also be a plain
``Connection``. Large buffers are not copied in user space on the way out,
and are copied once on the way in: the pickler hands each large bytes-like payload to
``send`` by reference and ``send`` writes it with ``os.writev``; the
unpickler reads a large message through ``_Reader``, whose ``readinto``
fills each large bytes or bytearray object straight from the connection.
See docs/design.md, "The wire to a child process".
"""

from __future__ import annotations

import os
import pickle
import struct
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["recv", "send"]

# Messages up to this size are read whole and unpickled from memory: two reads,
# no Python call per pickle frame. The pickler streams payloads of this size
# or more by reference (its FRAME_SIZE_TARGET).
_SMALL = 64 * 1024
_IOV_MAX = 1024  # at least what POSIX guarantees for one writev
_SHORT_MAX = 0x7FFFFFFF  # larger messages: a length of -1, then an 8-byte length
_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")


class _Pickling:
    """A pickler kept between sends (making one costs more than a small send) and its output."""

    __slots__ = ("chunks", "pickler")

    def __init__(self) -> None:
        self.chunks: list[Any] = []
        # The pickler writes to chunks.append: its output buffer when it is
        # done, and each large bytes-like payload by reference.
        self.pickler = pickle.Pickler(_Sink(self.chunks.append), protocol=5)


class _Sink:
    __slots__ = ("write",)

    def __init__(self, write: Callable[[Any], object]) -> None:
        self.write = write


class _Spare(threading.local):
    """This thread's idle pickling, or None while a send (perhaps one inside it) uses it."""

    pickling: _Pickling | None = None


_spare = _Spare()


def send(conn: Connection, obj: object) -> None:
    """
    Write *obj* to *conn* as one message.

    Raises:
        pickle.PicklingError, TypeError, AttributeError: *obj* does not pickle;
            nothing was written.
        OSError: The connection is broken (the other end is gone).

    Not guaranteed: a bytearray or other mutable buffer changed by another
    thread while ``send`` runs arrives as it was when it was written, not as
    it was when ``send`` was called; an exception raised by a signal handler
    during the write leaves the connection unusable (as with
    ``Connection.send``). One sender at a time per connection.
    """
    spare = _spare
    # A send from inside pickling (a __reduce__, a finalizer) gets a pickler of its own.
    pickling = spare.pickling or _Pickling()
    spare.pickling = None
    chunks = pickling.chunks
    try:
        pickling.pickler.dump(obj)
        if len(chunks) == 1:
            conn.send_bytes(chunks[0])
            return
        # Flat byte views of each chunk, Fortran-ordered buffers included.
        views = [pickle.PickleBuffer(chunk).raw() for chunk in chunks]
        total = sum(map(len, views))
        long = total > _SHORT_MAX
        header = _SHORT.pack(-1) + _LONG.pack(total) if long else _SHORT.pack(total)
        _write_all(conn.fileno(), [memoryview(header), *views])
    finally:
        # The memo and the chunks hold the payload: let it go with the call.
        pickling.pickler.clear_memo()
        chunks.clear()
        spare.pickling = pickling


def _write_all(fd: int, views: list[memoryview]) -> None:
    """Write every view in order, resuming after short writes."""
    start = 0
    while start < len(views):
        written = os.writev(fd, views[start : start + _IOV_MAX])
        while written:
            head = views[start]
            if written >= len(head):
                written -= len(head)
                start += 1
            else:
                views[start] = head[written:]
                written = 0
        while start < len(views) and not views[start]:
            start += 1


def recv(conn: Connection) -> object:
    """
    Read one message from *conn* and return the object it holds.

    Raises:
        EOFError: The other end closed the connection (or died) between messages.
        OSError: The connection is broken, or ended inside a message.
        Exception: Whatever unpickling the message raised; the rest of the
            message was read, so the next ``recv`` reads the next one.

    Not guaranteed: an exception raised by a signal handler during the read
    leaves the connection unusable (as with ``Connection.recv``). One
    receiver at a time per connection.
    """
    fd = conn.fileno()
    (size,) = _SHORT.unpack(_read_exact(fd, 4, first=True))
    if size == -1:
        (size,) = _LONG.unpack(_read_exact(fd, 8))
    if size <= _SMALL:
        return pickle.loads(_read_exact(fd, size))
    reader = _Reader(fd, size)
    try:
        obj = pickle.Unpickler(reader).load()
    except Exception:
        reader.skip_rest()
        raise
    reader.skip_rest()
    return obj


def _read_exact(fd: int, n: int, *, first: bool = False) -> bytes:
    """Read exactly *n* bytes; EOFError if *first* and nothing came, else OSError."""
    data = os.read(fd, n)
    if len(data) == n:
        return data
    if not data and first:
        raise EOFError
    buffer = bytearray(n)
    buffer[: len(data)] = data
    _fill(fd, memoryview(buffer)[len(data) :])
    return bytes(buffer)


def _fill(fd: int, view: memoryview) -> None:
    """Fill *view* from *fd*; OSError if the connection ends first."""
    while view:
        got = os.readv(fd, [view])
        if not got:
            raise OSError("got end of file during message")
        view = view[got:]


class _Reader:
    """The unpickler's file for one large message: reads nothing past its end."""

    __slots__ = ("fd", "left")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        view = view[: self.left]
        _fill(self.fd, view)
        self.left -= len(view)
        return len(view)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = _read_exact(self.fd, n) if n else b""
        self.left -= n
        return data

    def readline(self) -> bytes:
        # Protocol 5 never needs it; text opcodes from other picklers might.
        line = bytearray()
        while self.left and not line.endswith(b"\n"):
            line += self.read(1)
        return bytes(line)

    def skip_rest(self) -> None:
        """Read and drop what is left of the message, so the next one reads."""
        scratch = memoryview(bytearray(min(self.left, _SMALL)))
        while self.left:
            self.readinto(scratch[: self.left])
