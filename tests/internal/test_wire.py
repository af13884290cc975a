"""The wire between a pool and a process worker's child: one object per message, both ways."""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import threading
import tracemalloc
import weakref
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

    def test_unloadable_before_a_large_payload(self, pipe: tuple[Connection, Connection]) -> None:
        """Unpickling that fails before a large payload is read skips it; the next reads."""
        reader, writer = pipe
        sent = [[Unloadable(), b"t" * BIG], "after"]
        thread = threading.Thread(target=send_all, args=(writer, sent), name="wire-writer")
        thread.start()
        with pytest.raises(ValueError, match="refused to load"):
            _wire.recv(reader)
        assert _wire.recv(reader) == "after"
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


class TestFraming:
    """Messages are framed as Connection.send_bytes frames them."""

    def test_a_plain_connection_reads_what_send_writes(
        self, pipe: tuple[Connection, Connection]
    ) -> None:
        """Connection.recv_bytes reads a message written by send, small or large."""
        reader, writer = pipe
        for obj in ("small", [b"h" * BIG, bytearray(b"i" * BIG)]):
            thread = threading.Thread(target=send_all, args=(writer, [obj]), name="wire-writer")
            thread.start()
            assert obj == pickle.loads(reader.recv_bytes())
            thread.join(WAIT)

    def test_recv_reads_what_a_plain_connection_writes(
        self, pipe: tuple[Connection, Connection]
    ) -> None:
        """recv reads a pickle written with Connection.send_bytes, small or large."""
        reader, writer = pipe
        for obj in ("small", b"j" * BIG):
            data = pickle.dumps(obj, protocol=5)
            thread = threading.Thread(target=writer.send_bytes, args=(data,), name="wire-writer")
            thread.start()
            assert obj == _wire.recv(reader)
            thread.join(WAIT)

    def test_the_long_length_form(
        self, pipe: tuple[Connection, Connection], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past the 4-byte length's reach the length is -1 and then 8 bytes, both ways."""
        monkeypatch.setattr(_wire, "_SHORT_MAX", 1024)
        reader, writer = pipe
        obj = [b"k" * BIG, b"l" * BIG]
        thread = threading.Thread(target=send_all, args=(writer, [obj, obj]), name="wire-writer")
        thread.start()
        assert obj == pickle.loads(reader.recv_bytes())
        assert obj == _wire.recv(reader)
        thread.join(WAIT)

    def test_short_writes_resume(
        self, pipe: tuple[Connection, Connection], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A writev that writes only part of what it was given is resumed where it stopped."""
        real = os.writev

        def stingy(fd: int, buffers: list[Any]) -> int:
            """Write at most 7,777 bytes: a prefix of what was asked."""
            prefix, budget = [], 7_777
            for buffer in buffers:
                prefix.append(memoryview(buffer)[:budget])
                budget -= len(prefix[-1])
                if not budget:
                    break
            return real(fd, prefix)

        monkeypatch.setattr(os, "writev", stingy)
        monkeypatch.setattr(_wire, "_IOV_MAX", 3)
        obj = [bytes([i]) * (100_000 + i) for i in range(5)]
        assert obj == through(pipe, obj)

    @pytest.mark.parametrize("size", [100, BIG])
    def test_end_of_file_inside_a_message(self, size: int) -> None:
        """A message cut short by the other end's exit raises OSError, small or large."""
        reader, writer = multiprocessing.Pipe()
        with writer:
            os.write(writer.fileno(), size.to_bytes(4, "big") + b"\x80\x05partial")
        with reader, pytest.raises(OSError, match="end of file during message"):
            _wire.recv(reader)


class TestCopies:
    """Large buffers are not copied in user space on the way out, and once on the way in."""

    def test_send_writes_large_payloads_in_place(
        self, pipe: tuple[Connection, Connection], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """send hands the payload objects themselves to writev."""
        written: list[Any] = []
        real = os.writev

        def spying(fd: int, buffers: list[Any]) -> int:
            written.extend(view.obj for view in buffers)
            return real(fd, buffers)

        monkeypatch.setattr(os, "writev", spying)
        data, more = b"m" * BIG, bytearray(b"n" * BIG)
        assert [data, more] == through(pipe, [data, more])
        assert any(obj is data for obj in written)
        assert any(obj is more for obj in written)

    def test_sending_allocates_no_copy(self, pipe: tuple[Connection, Connection]) -> None:
        """Sending a large payload allocates far less than the payload."""
        reader, writer = pipe
        data = b"o" * BIG
        sink = bytearray(BIG + 1024)
        thread = threading.Thread(target=drain, args=(reader, sink), name="wire-reader")
        thread.start()
        tracemalloc.start()
        try:
            _wire.send(writer, data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            thread.join(WAIT)
        assert peak < BIG // 8

    def test_receiving_allocates_the_payload_once(
        self, pipe: tuple[Connection, Connection]
    ) -> None:
        """Receiving a large payload allocates little more than the payload itself."""
        reader, writer = pipe
        data = b"p" * BIG
        thread = threading.Thread(target=send_all, args=(writer, [data]), name="wire-writer")
        thread.start()
        tracemalloc.start()
        try:
            got = _wire.recv(reader)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            thread.join(WAIT)
        assert data == got
        assert peak < BIG * 9 // 8

    def test_numpy_arrays_cross_as_their_buffers(
        self, pipe: tuple[Connection, Connection], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A NumPy array's data is written in place and received with one allocation."""
        np = pytest.importorskip("numpy")
        array = np.asfortranarray(np.arange(BIG // 4, dtype=np.float32).reshape(-1, 4))
        written: list[Any] = []
        real = os.writev

        def spying(fd: int, buffers: list[Any]) -> int:
            written.extend(view.obj for view in buffers)
            return real(fd, buffers)

        monkeypatch.setattr(os, "writev", spying)
        reader, writer = pipe
        thread = threading.Thread(target=send_all, args=(writer, [array]), name="wire-writer")
        thread.start()
        tracemalloc.start()
        try:
            got = _wire.recv(reader)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            thread.join(WAIT)
        assert (array == got).all()
        # A Fortran-ordered array is pickled as its transpose: a view of the same memory.
        assert any(obj is array or getattr(obj, "base", None) is array for obj in written)
        assert peak < array.nbytes * 9 // 8


def drain(conn: Connection, into: bytearray) -> None:
    """Read one message's bytes into *into*, allocating nothing on the way."""
    view = memoryview(into)
    done = 0
    while done < 4 or done < 4 + int.from_bytes(view[:4], "big"):
        got = os.readv(conn.fileno(), [view[done:]])
        assert got, "the message ended early"
        done += got


class Payload:
    pass


class TestPayloadLifetime:
    def test_send_keeps_no_reference(self, pipe: tuple[Connection, Connection]) -> None:
        """After send returns, the wire holds no reference to what it sent."""
        obj = [Payload(), b"r" * BIG]
        ref = weakref.ref(obj[0])
        through(pipe, obj)
        del obj
        gc.collect()
        assert ref() is None

    def test_a_failed_send_keeps_no_reference(self, pipe: tuple[Connection, Connection]) -> None:
        """After send fails to pickle, the wire holds no reference to what it was given."""
        obj = [Payload(), b"s" * BIG, Unpicklable()]
        ref = weakref.ref(obj[0])
        with pytest.raises(TypeError):
            _wire.send(pipe[1], obj)
        del obj
        gc.collect()
        assert ref() is None


class SendsWhilePickled:
    """Pickling it sends another object on the same thread first (as a finalizer might)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __reduce__(self) -> Any:
        _wire.send(self.conn, "inner")
        return (str, ("outer",))


class TestReentrancy:
    def test_a_send_inside_pickling_leaves_the_outer_send_whole(
        self, pipe: tuple[Connection, Connection]
    ) -> None:
        """A send made on the same thread while send pickles does not disturb the outer one."""
        reader, writer = pipe
        _wire.send(writer, [b"u" * 100, SendsWhilePickled(writer), b"v" * 100])
        assert _wire.recv(reader) == "inner"
        assert _wire.recv(reader) == [b"u" * 100, "outer", b"v" * 100]
