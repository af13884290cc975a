"""Every test must leave no thread behind; the call-path fixtures of the promise suite."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import attrs
import pytest

from tests.helpers import on_sigusr1
from tests.paths import INTERRUPTING, LEAVING, PATHS, WAITING, Callers, CallPath

# Threads a test may leave: daemon helpers of the test tools themselves.
_GRACE = 5.0


@pytest.fixture(autouse=True)
def no_leaked_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """
    Fail the test if a thread it started is still alive shortly after it ends.

    A module may name threads a module-scoped fixture of its own owns (a
    shared Dask cluster starts and keeps threads as it serves): with a
    ``threads_checked_by_module_fixture(thread) -> bool``, those are left to
    that fixture, which must check they end when it does.
    """
    deferred = getattr(request.module, "threads_checked_by_module_fixture", None)
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + _GRACE
    leaked: list[threading.Thread] = []
    for thread in set(threading.enumerate()) - before:
        if deferred is not None and deferred(thread):
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            leaked.append(thread)
    if leaked:
        names = ", ".join(sorted(t.name for t in leaked))
        pytest.fail(f"test leaked {len(leaked)} thread(s): {names}")


@pytest.fixture
def callers() -> Iterator[Callers]:
    """Caller threads reused by the test's calls on the reused-thread paths."""
    callers = Callers()
    yield callers
    callers.close()


def bound(name: str, callers: Callers) -> CallPath:
    path = PATHS[name]
    return attrs.evolve(path, callers=callers) if path.reused else path


@pytest.fixture(params=sorted(PATHS))
def call_path(request: pytest.FixtureRequest, callers: Callers) -> CallPath:
    """Each of the pool's calls in turn: process, process_timed, process_ctx, submit, try_*."""
    return bound(request.param, callers)


@pytest.fixture(params=WAITING)
def waiting_path(request: pytest.FixtureRequest, callers: Callers) -> CallPath:
    """Each call that waits in line while every worker is busy (not the try_* ones)."""
    return bound(request.param, callers)


@pytest.fixture(params=LEAVING)
def leaving_path(request: pytest.FixtureRequest, callers: Callers) -> CallPath:
    """Each call whose caller can give up while in line: a deadline, a token, future.cancel()."""
    return bound(request.param, callers)


@pytest.fixture(params=INTERRUPTING)
def interrupting_path(request: pytest.FixtureRequest, callers: Callers) -> CallPath:
    """Each call whose caller can give up on its running job, interrupting it."""
    return bound(request.param, callers)


@pytest.fixture
def handled() -> Iterator[threading.Event]:
    """SIGUSR1 gets a Python handler that sets the event this yields."""
    event = threading.Event()
    with on_sigusr1(lambda signum, frame: event.set()):
        yield event
