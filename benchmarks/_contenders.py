"""
The contenders: the pools under comparison and the hand-written floors.

Each pool is wrapped in a :class:`Contender` with a blocking ``call`` (one
round trip), a ``submit`` that returns something with a blocking ``wait``,
and ``close``. The floors are two bare threads handing a value back and forth,
the least work any pool can do for a round trip: one with raw ``_thread``
locks, one whose wake-ups go through an eventfd (a pipe where eventfd is
missing), which releases the GIL before the kernel wakes the other side.
For many callers, :class:`QueueFloor` is the least a pool can be: worker
threads blocked on a ``queue.SimpleQueue`` (C code), each caller waiting on
its own raw lock for the reply; no futures, errors, timeouts or resizing.
"""

from __future__ import annotations

import _thread
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.pool import ThreadPool
from typing import Any

import tunnypy

pebble: Any
try:
    import pebble

    PEBBLE_ERROR = ""
except ImportError as exc:  # pragma: no cover - depends on the interpreter's packages
    pebble = None
    PEBBLE_ERROR = f"pebble not importable: {exc}"

__all__ = [
    "LABELS",
    "PEBBLE_ERROR",
    "Contender",
    "EventFdFloor",
    "LockFloor",
    "QueueFloor",
    "noop",
    "pool_contenders",
]

LABELS = {
    "tunnypy": "tunnypy Pool",
    "tpe": "ThreadPoolExecutor",
    "mp_threadpool": "multiprocessing ThreadPool",
    "pebble": "pebble ThreadPool",
    "floor_lock": "floor: 2 threads, _thread locks",
    "floor_eventfd": "floor: 2 threads, eventfd",
    "floor_queue": "floor: SimpleQueue + raw-lock replies",
    "bare_threads": "bare threads",
}


def noop(value: object) -> object:
    """The job: return the payload."""
    return value


class Contender:
    """One pool behind a common face: ``call``, ``submit`` (then ``wait``), ``close``."""

    def __init__(
        self,
        call: Callable[[object], object],
        submit: Callable[[object], Callable[[], object]],
        close: Callable[[], None],
    ) -> None:
        self.call = call
        self.submit = submit
        self.close = close


def _tunnypy(workers: int, fn: Callable[[object], object]) -> Contender:
    pool: tunnypy.Pool[object, object] = tunnypy.Pool.from_func(workers, fn)
    submit = pool.submit

    def sub(payload: object) -> Callable[[], object]:
        return submit(payload).result

    def close() -> None:
        pool.close()

    return Contender(pool.process, sub, close)


def _tpe(workers: int, fn: Callable[[object], object]) -> Contender:
    ex = ThreadPoolExecutor(workers)
    submit = ex.submit

    def call(payload: object) -> object:
        return submit(fn, payload).result()

    def sub(payload: object) -> Callable[[], object]:
        return submit(fn, payload).result

    return Contender(call, sub, ex.shutdown)


def _mp(workers: int, fn: Callable[[object], object]) -> Contender:
    tp = ThreadPool(workers)
    apply_async = tp.apply_async

    def call(payload: object) -> object:
        return apply_async(fn, (payload,)).get()

    def sub(payload: object) -> Callable[[], object]:
        return apply_async(fn, (payload,)).get

    def close() -> None:
        tp.close()
        tp.join()

    return Contender(call, sub, close)


def _pebble(workers: int, fn: Callable[[object], object]) -> Contender:
    assert pebble is not None
    pp: Any = pebble.ThreadPool(max_workers=workers)
    schedule = pp.schedule

    def call(payload: object) -> object:
        return schedule(fn, args=(payload,)).result()

    def sub(payload: object) -> Callable[[], object]:
        return schedule(fn, args=(payload,)).result  # type: ignore[no-any-return]

    def close() -> None:
        pp.close()
        pp.join()

    return Contender(call, sub, close)


def pool_contenders(
    workers: int, fn: Callable[[object], object] = noop
) -> dict[str, Callable[[], Contender]]:
    """Makers of every pool contender importable here, by id."""
    makers: dict[str, Callable[[], Contender]] = {
        "tunnypy": lambda: _tunnypy(workers, fn),
        "tpe": lambda: _tpe(workers, fn),
        "mp_threadpool": lambda: _mp(workers, fn),
    }
    if pebble is not None:
        makers["pebble"] = lambda: _pebble(workers, fn)
    return makers


class LockFloor:
    """Two bare threads passing a value through a pair of raw ``_thread`` locks."""

    def __init__(self) -> None:
        self._go = _thread.allocate_lock()
        self._go.acquire()
        self._back = _thread.allocate_lock()
        self._back.acquire()
        self._value: object = None
        self._stop = False
        self._thread = threading.Thread(target=self._serve, name="floor-lock", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        go, back = self._go, self._back
        while True:
            go.acquire()
            if self._stop:
                return
            self._value = noop(self._value)
            back.release()

    def call(self, value: object) -> object:
        self._value = value
        self._go.release()
        self._back.acquire()
        return self._value

    def close(self) -> None:
        self._stop = True
        self._go.release()
        self._thread.join()


class EventFdFloor:
    """The same hand-off with each wake-up written to an eventfd (or a pipe)."""

    def __init__(self) -> None:
        self.kind = "eventfd" if hasattr(os, "eventfd") else "pipe"
        if self.kind == "eventfd":
            self._go = self._go_w = os.eventfd(0, os.EFD_CLOEXEC)
            self._back = self._back_w = os.eventfd(0, os.EFD_CLOEXEC)
            self.call = self._call_eventfd  # type: ignore[method-assign]
            target = self._serve_eventfd
        else:
            self._go, self._go_w = os.pipe()
            self._back, self._back_w = os.pipe()
            target = self._serve_pipe
        self._value: object = None
        self._stop = False
        self._thread = threading.Thread(target=target, name="floor-eventfd", daemon=True)
        self._thread.start()

    def _serve_eventfd(self) -> None:
        go, back, read, write = self._go, self._back, os.eventfd_read, os.eventfd_write
        while True:
            read(go)
            if self._stop:
                return
            self._value = noop(self._value)
            write(back, 1)

    def _serve_pipe(self) -> None:
        go, back = self._go, self._back_w
        while True:
            os.read(go, 1)
            if self._stop:
                return
            self._value = noop(self._value)
            os.write(back, b"\0")

    def _call_eventfd(self, value: object) -> object:
        self._value = value
        os.eventfd_write(self._go, 1)
        os.eventfd_read(self._back)
        return self._value

    def call(self, value: object) -> object:
        self._value = value
        os.write(self._go_w, b"\0")
        os.read(self._back, 1)
        return self._value

    def close(self) -> None:
        self._stop = True
        if self.kind == "eventfd":
            os.eventfd_write(self._go, 1)
        else:
            os.write(self._go_w, b"\0")
        self._thread.join()
        for fd in {self._go, self._go_w, self._back, self._back_w}:
            os.close(fd)


class QueueFloor:
    """Worker threads on a ``SimpleQueue``; each caller waits on its own raw lock."""

    def __init__(self, workers: int) -> None:
        self._queue: queue.SimpleQueue[tuple[object, list[object], _thread.LockType] | None]
        self._queue = queue.SimpleQueue()
        self._local = threading.local()
        self._threads = [
            threading.Thread(target=self._serve, name=f"floor-queue-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def _serve(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is None:
                return
            value, box, reply = item
            box.append(noop(value))
            reply.release()

    def _reply_lock(self) -> _thread.LockType:
        try:
            return self._local.lock  # type: ignore[no-any-return]
        except AttributeError:
            lock = self._local.lock = _thread.allocate_lock()
            lock.acquire()
            return lock

    def call(self, value: object) -> object:
        reply = self._reply_lock()
        box: list[object] = []
        self._queue.put((value, box, reply))
        reply.acquire()
        return box[0]

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
