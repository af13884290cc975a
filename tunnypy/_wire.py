"""
The transport between a pool and a process worker's child: one object per message.

``send`` pickles the whole object (protocol 5) before writing a byte, so an
object that does not pickle raises in the sender and leaves the connection
as it was. ``recv`` reads one whole message before unpickling it, so an
object that does not unpickle raises in the receiver and leaves the
connection at the next message.
"""

from __future__ import annotations

import pickle
from multiprocessing.connection import Connection

__all__ = ["recv", "send"]


def send(conn: Connection, obj: object) -> None:
    """
    Write *obj* to *conn* as one message.

    Raises:
        pickle.PicklingError, TypeError, AttributeError: *obj* does not pickle;
            nothing was written.
        OSError: The connection is broken (the other end is gone).
    """
    data = pickle.dumps(obj, protocol=5)
    conn.send_bytes(data)


def recv(conn: Connection) -> object:
    """
    Read one message from *conn* and return the object it holds.

    Raises:
        EOFError: The other end closed the connection (or died).
        OSError: The connection is broken.
        Exception: Whatever unpickling the message raised; the message was
            consumed, so the next ``recv`` reads the next one.
    """
    return pickle.loads(conn.recv_bytes())
