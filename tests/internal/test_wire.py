"""The wire between a pool and a process worker's child: one object per message, both ways."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest

from tests.helpers import WAIT
from tunnypy import _wire

BIG = 8 * 1024 * 1024 + 3  # past any pipe or socket buffer, and not a round size


@pytest.fixture(params=["duplex", "simplex"])
def pipe(request: pytest.FixtureRequest) -> Iterator[tuple[Connection, Connection]]:
    """A (reading end, writing end) pair: a socketpair (duplex) or an os.pipe (simplex)."""
    reader, writer = multiprocessing.Pipe(duplex=request.param == "duplex")
    yield reader, writer
    reader.close()
    writer.close()


def through(pipe: tuple[Connection, Connection], obj: object) -> Any:
    """Send *obj* from a thread (a big message fills the pipe) and receive it here."""
    reader, writer = pipe
    failed: list[BaseException] = []

    def write() -> None:
        try:
            _wire.send(writer, obj)
        except BaseException as exc:  # pragma: no cover - reported below
            failed.append(exc)

    thread = threading.Thread(target=write, name="wire-writer")
    thread.start()
    try:
        assert reader.poll(WAIT), "nothing arrived"
        return _wire.recv(reader)
    finally:
        thread.join(WAIT)
        assert not thread.is_alive()
        assert not failed, failed


def send_all(conn: Connection, objs: list[object]) -> None:
    for obj in objs:
        _wire.send(conn, obj)


class Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle Unpicklable objects")


def _refuse_to_load() -> None:
    raise ValueError("refused to load")


class Unloadable:
    """Pickles fine; unpickling it raises."""

    def __reduce__(self) -> Any:
        return (_refuse_to_load, ())


class TestRoundTrip:
    @pytest.mark.parametrize(
        "obj",
        [
            None,
            0,
            "text",
            b"",
            b"small",
            bytearray(b"small"),
            {"nested": [1, (2, 3.0)], "set": {4}},
            ValueError("why"),
        ],
        ids=repr,
    )
    def test_small_objects(self, pipe: tuple[Connection, Connection], obj: object) -> None:
        """Small objects arrive equal and of the same type."""
        got = through(pipe, obj)
        assert obj == got or isinstance(obj, ValueError)
        assert type(obj) is type(got)

    def test_big_bytes(self, pipe: tuple[Connection, Connection]) -> None:
        """A large bytes object arrives whole, as bytes."""
        data = bytes(range(256)) * (BIG // 256) + b"end"
        got = through(pipe, data)
        assert type(got) is bytes
        assert data == got

    def test_big_bytearray(self, pipe: tuple[Connection, Connection]) -> None:
        """A large bytearray arrives whole, as a bytearray."""
        data = bytearray(b"x" * BIG)
        data[-1] = 0
        got = through(pipe, data)
        assert type(got) is bytearray
        assert data == got

    def test_big_memoryview(self, pipe: tuple[Connection, Connection]) -> None:
        """A memoryview arrives with its bytes (as pickle gives it: a bytes object)."""
        data = memoryview(b"y" * BIG)
        got = through(pipe, pickle.PickleBuffer(data))
        assert bytes(data) == bytes(got)

    def test_many_buffers_in_one_object(self, pipe: tuple[Connection, Connection]) -> None:
        """Several large buffers inside one object arrive, each in its place."""
        obj = {"a": b"a" * BIG, "b": [bytearray(b"b" * BIG), b"c" * 10], "d": b"d" * BIG}
        assert obj == through(pipe, obj)

    def test_messages_keep_their_order(self, pipe: tuple[Connection, Connection]) -> None:
        """Messages, big and small mixed, arrive in the order they were sent."""
        reader, writer = pipe
        sent: list[object] = [1, b"z" * BIG, "two", bytearray(BIG), 3]
        thread = threading.Thread(target=send_all, args=(writer, sent), name="wire-writer")
        thread.start()
        got = [_wire.recv(reader) for _ in sent]
        thread.join(WAIT)
        assert sent == got


class TestFailures:
    def test_unpicklable_raises_in_sender_and_writes_nothing(
        self, pipe: tuple[Connection, Connection]
    ) -> None:
        """An object that does not pickle raises in send, and the reader sees no bytes."""
        reader, writer = pipe
        with pytest.raises(TypeError, match="cannot pickle Unpicklable"):
            _wire.send(writer, [b"x" * BIG, Unpicklable()])
        assert not reader.poll(0)
        assert through(pipe, "next") == "next"

    def test_unloadable_raises_in_receiver_and_the_next_message_reads(
        self, pipe: tuple[Connection, Connection]
    ) -> None:
        """A message that does not unpickle raises in recv; the next message reads as sent."""
        reader, writer = pipe
        sent = [[b"q" * BIG, Unloadable()], 7]
        thread = threading.Thread(target=send_all, args=(writer, sent), name="wire-writer")
        thread.start()
        with pytest.raises(ValueError, match="refused to load"):
            _wire.recv(reader)
        assert _wire.recv(reader) == 7
        thread.join(WAIT)

    def test_closed_writer_is_eof(self, pipe: tuple[Connection, Connection]) -> None:
        """recv on a connection whose other end closed raises EOFError."""
        reader, writer = pipe
        writer.close()
        with pytest.raises(EOFError):
            _wire.recv(reader)


def _echo(conn: Connection) -> None:
    """Child: send back every object received, until None."""
    while (obj := _wire.recv(conn)) is not None:
        _wire.send(conn, obj)
    conn.close()


class TestAcrossProcesses:
    @pytest.mark.parametrize("method", ["forkserver", "spawn"])
    def test_echo_through_a_child(self, method: str) -> None:
        """Objects big and small go to a child process and come back equal."""
        context: Any = multiprocessing.get_context(method)
        parent, child = context.Pipe()
        process = context.Process(target=_echo, args=(child,), name="wire-echo")
        process.start()
        child.close()
        try:
            for obj in (1, b"e" * BIG, {"k": bytearray(b"f" * BIG)}, "last"):
                _wire.send(parent, obj)
                assert parent.poll(WAIT)
                assert obj == _wire.recv(parent)
            _wire.send(parent, None)
        finally:
            process.join(WAIT)
            if process.is_alive():  # pragma: no cover - a failure path
                process.kill()
                process.join(WAIT)
            parent.close()
        assert process.exitcode == 0
