"""
Processes: each worker of a pool in a child process of its own (``isolation="process"``).

The parent side is a proxy :class:`Worker` per worker thread (``_ChildWorker``)
that forwards each hook to its child over two pipes: *jobs* (duplex, strictly
one request then one reply) and *control* (parent to child, read by a thread
in the child, so ``interrupt()`` reaches a busy job). The child side is
``_child_main``. A killed, crashed or recycled child is replaced in
``block_until_ready``, before the worker is offered again (docs/design.md,
"Isolation"; docs/processes.md).
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import pickle
import select
import signal
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, final

import attrs

from . import _wire
from ._isolation import ChildOptions, Host, HostCounts, IsolationStats
from ._job import set_current_runner
from ._log import log
from ._worker import BaseWorker, RestartFailed, Worker, check_worker
from .exceptions import WorkerCrashedError

__all__ = ["DEFAULT_KILL_GRACE", "Processes", "RemoteTraceback"]

DEFAULT_KILL_GRACE = 1.0
"""Seconds from ``interrupt()`` to the kill (docs/processes.md, "kill_grace")."""

_START_METHODS = ("forkserver", "spawn")

# Proxy phases, for where an interrupt() lands (see _ChildWorker.interrupt).
_BETWEEN = 0  # block_until_ready ran: the next interrupt is for the job taken next
_RUNNING = 1  # process() is sending the job or waiting for its reply
_RETURNED = 2  # process() has returned: an interrupt now is late and ignored


class RemoteTraceback(Exception):  # noqa: N818 - named as concurrent.futures names its twin
    """The child's formatted traceback, attached as ``__cause__`` of a job's exception."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


@final
class Processes:
    """
    Workers in child processes: ``Pool(..., isolation=Processes(...))``.

    ``isolation="process"`` is ``Processes()``. Each worker of the pool is a
    child process that calls the (picklable) factory once and holds the
    worker object; every hook runs there. See docs/processes.md.

    Args:
        start_method: ``"forkserver"`` (the default where it exists, as on
            Linux: children are forked from a small server process, so they
            start in tens of milliseconds and inherit none of the parent's
            threads or locks) or ``"spawn"`` (a fresh interpreter per child:
            slower to start, but it works everywhere and imports nothing the
            parent had imported). ``"fork"`` is refused: forking a parent
            that runs threads (the pool's own) can deadlock the child.

    Raises:
        ValueError: *start_method* is none of those, or not available here.

    Not guaranteed: that a child whose job holds the GIL in C survives or
    ends with its parent under ``"spawn"``; under ``"forkserver"`` on Linux it
    is killed when the parent dies.
    """

    __slots__ = ("start_method",)

    def __init__(self, start_method: str | None = None) -> None:
        available = multiprocessing.get_all_start_methods()
        if start_method is None:
            start_method = "forkserver" if "forkserver" in available else "spawn"
        if start_method not in _START_METHODS or start_method not in available:
            offered = " or ".join(repr(m) for m in _START_METHODS if m in available)
            msg = f"start_method must be {offered} (got {start_method!r})"
            raise ValueError(msg)
        self.start_method: str = start_method
        """How the children start, ``"forkserver"`` or ``"spawn"``."""

    def open(self, factory: Callable[[], Worker[Any, Any]], options: ChildOptions) -> Host:
        """
        Make the host of one pool's child processes (called by :class:`Pool`).

        Raises:
            Exception: *factory* does not pickle (``pickle.PicklingError``
                and the like).

        :meta private:
        """
        factory_bytes = pickle.dumps(factory, protocol=5)
        if self.start_method == "forkserver":
            _preload_tunnypy()
        return _ProcessHost(multiprocessing.get_context(self.start_method), factory_bytes, options)

    def __repr__(self) -> str:
        return f"Processes(start_method={self.start_method!r})"


def _preload_tunnypy() -> None:
    # Children forked from a server that has imported tunnypy start in
    # milliseconds, not the ~0.2 s of importing it each time. The preload
    # list is the default server's own; only an addition, and only before
    # the server starts (docs/processes.md, "Start methods").
    from multiprocessing import forkserver  # noqa: PLC0415 - not on every platform

    server = getattr(forkserver, "_forkserver", None)
    modules = getattr(server, "_preload_modules", None)
    if (
        isinstance(modules, list)
        and __name__ not in modules
        and getattr(server, "_forkserver_pid", 0) is None
    ):
        forkserver.set_forkserver_preload([*modules, __name__])


# -- the parent side ----------------------------------------------------------


@attrs.define(eq=False)
class _Child:
    """One running child and the parent's ends of its pipes."""

    process: Any  # multiprocessing's BaseProcess, whose type is not public
    jobs: Connection
    control: Connection
    pid: int
    has_ready: bool  # its worker has a block_until_ready of its own
    ready_due: bool = False  # it runs block_until_ready and will say "ready"
    jobs_run: int = 0
    recycle: bool = False  # due for replacement before its next job


class _ProcessHost:
    """The children of one pool (private): starts them, counts them, ends them."""

    def __init__(self, ctx: Any, factory: bytes, options: ChildOptions) -> None:
        self.ctx = ctx
        self.factory = factory
        self.options = options
        self.lock = threading.Lock()
        self.proxies: weakref.WeakSet[_ChildWorker] = weakref.WeakSet()
        self.counts = HostCounts()
        self.count = self.counts.count
        _open_hosts.add(self)

    def new_worker(self) -> Worker[Any, Any]:
        child = self.start_child()
        proxy = _ChildWorker(self, child)
        with self.lock:
            self.proxies.add(proxy)
        return proxy

    def start_child(self, proxy: _ChildWorker | None = None) -> _Child:
        """
        Start a child, run the factory there, and return once it has.

        With *proxy*, the proxy is told the child's pid while the factory
        runs, so its ``end()`` can kill it (see ``_ChildWorker.awaiting``).
        """
        ctx = self.ctx
        jobs, child_jobs = ctx.Pipe(duplex=True)
        child_control, control = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=_child_main,
            args=(
                self.factory,
                child_jobs,
                child_control,
                self.options.max_memory_per_child is not None,
                ctx.get_start_method() == "forkserver",
            ),
            name="tunnypy-worker",
            daemon=True,
        )
        try:
            try:
                process.start()
            finally:
                # Only the child holds its ends: its death is our EOF.
                child_jobs.close()
                child_control.close()
            if proxy is not None:
                proxy.await_child(process.pid)
            reply: Any = _wire.recv(jobs)
        except BaseException as exc:
            _end_process(process, kill=True)
            jobs.close()
            control.close()
            if isinstance(exc, EOFError):
                raise WorkerCrashedError(
                    f"worker process died while the factory ran ({_exit_status(process)})"
                ) from None
            raise
        if reply[0] == "failed":
            error: BaseException = reply[1]
            error.__cause__ = RemoteTraceback(reply[2])
            _end_process(process, kill=False)
            jobs.close()
            control.close()
            raise error
        return _Child(process, jobs, control, process.pid, has_ready=reply[1], ready_due=reply[1])

    def stats(self) -> IsolationStats:
        return self.counts.stats()

    def close(self) -> None:
        # Every proxy has been terminated by now, unless interpreter exit
        # left one whose thread it did not wait for: end what is left
        # (docs/design.md, "Isolation").
        with self.lock:
            proxies = list(self.proxies)
        for proxy in proxies:
            proxy.end()
        _open_hosts.discard(self)


_open_hosts: weakref.WeakSet[_ProcessHost] = weakref.WeakSet()


@atexit.register
def _close_hosts_at_exit() -> None:
    # After the pools' own exit handling: no child outlives the interpreter.
    for host in list(_open_hosts):
        host.close()


class _ChildWorker:
    """The parent-side proxy of one child's worker: what the pool's worker thread runs."""

    def __init__(self, host: _ProcessHost, child: _Child) -> None:
        self.host = host
        self.child: _Child | None = child
        self.lock = threading.Lock()
        self.seq = 0
        self.phase = _BETWEEN
        self.pending = False  # interrupted before process() began
        self.killing: threading.Timer | None = None
        self.killed = False
        # Set by end(): no child is started or waited for any more.
        self.closed = False
        # The pid of a child whose own code (its factory, its
        # block_until_ready) this proxy's thread waits for, which may never
        # return: end() kills it, then waits (on ``settled``) until that
        # thread has let go of the child.
        self.awaiting: int | None = None
        self.settled = threading.Condition(self.lock)
        # Held while a child is ended: a second drop() waits for the first
        # to finish, so no child is left running when either returns.
        self.ending = threading.Lock()

    def block_until_ready(self) -> None:
        with self.lock:
            self.phase = _BETWEEN
            self.pending = False
            child = self.child
            if self.closed or (child is not None and not child.recycle and not child.ready_due):
                return  # ready as it is (or closed: end() ends the child)
        if child is not None and child.recycle:
            self.host.count("recycled")
            self.drop(kill=False)
            child = None
        while True:
            if child is None:
                try:
                    child = self.respawn()
                except BaseException as exc:  # the factory's SystemExit too: it is the child's
                    # Not ready, and this worker cannot serve: it leaves as failed and
                    # the pool replaces it, with the backoff (docs/design.md, "Isolation").
                    msg = f"worker process could not be started again: {_describe(exc)}"
                    raise RestartFailed(msg) from exc
                if child is None:
                    return  # closed meanwhile
            with self.lock:
                if self.closed or not child.ready_due:
                    return
                child.ready_due = False
                self.awaiting = child.pid
            try:
                _wire.recv(child.jobs)  # ("ready",): its block_until_ready returned
            except (EOFError, OSError):
                self.crashed(child)  # it died in block_until_ready: a fresh one
                child = None
                continue
            finally:
                self.settle()
            return

    def respawn(self) -> _Child | None:
        """Start a new child; ``None`` if end() came first (the factory's error is raised)."""
        with self.lock:
            if self.closed:
                return None
        try:
            child = self.host.start_child(self)  # the factory's error reaches the caller
        except BaseException:
            self.settle()
            with self.lock:
                if self.closed:  # end() killed it: not a failure
                    return None
            raise
        self.settle(child)  # end(), if it came meanwhile, ends it
        self.host.count("respawned")
        return child

    def await_child(self, pid: int) -> None:
        """The thread is about to wait for code of child *pid*'s own (see ``awaiting``)."""
        with self.lock:
            self.awaiting = pid
            if self.closed:
                self._kill_awaited()

    def settle(self, started: _Child | None = None) -> None:
        """The thread waits for no child's code any more (and keeps *started*, a new child)."""
        with self.lock:
            if started is not None:
                self.child = started
            self.awaiting = None
            self.settled.notify_all()

    def _kill_awaited(self) -> None:
        # Under self.lock.
        if self.awaiting is not None:
            with contextlib.suppress(OSError):  # it may have ended already
                os.kill(self.awaiting, signal.SIGKILL)

    def end(self) -> None:
        """
        From the host's close(): end the child, whatever this proxy's thread is doing.

        The child's terminate() runs, unless its own code that may never
        return is running (a factory, its block_until_ready): then it is
        killed. Returns once the child is ended and reaped, by this thread
        or by the proxy's own (docs/design.md, "Isolation").
        """
        with self.lock:
            self.closed = True
            self._kill_awaited()
            while self.awaiting is not None:
                self.settled.wait()
            child = self.child
            kill = child is not None and child.ready_due
        self.drop(kill=kill)

    def process(self, payload: Any) -> Any:
        child = self.child
        if child is None or _ended(child):
            # Died while idle (no job of it fails): start one now, for this job.
            if child is not None:
                self.crashed(child)
            try:
                child = self.respawn()
            except Exception as exc:
                msg = f"worker process could not be started again: {_describe(exc)}"
                raise WorkerCrashedError(msg) from exc
            if child is None:
                raise WorkerCrashedError("worker process was not started again: its pool has ended")
        with self.lock:
            self.seq += 1
            seq = self.seq
            interrupted = self.pending
            self.pending = False
            self.phase = _RUNNING
            self.killed = False
            if interrupted:
                self._arm_kill(child)
        try:
            try:
                _wire.send(child.jobs, ("job", seq, payload, interrupted))
            except (OSError, EOFError):
                raise self.crashed(child) from None
            del payload
            try:
                reply: Any = _wire.recv(child.jobs)
            except (EOFError, OSError):
                raise self.crashed(child) from None
        finally:
            with self.lock:
                self.phase = _RETURNED
                if self.killing is not None:
                    self.killing.cancel()
                    self.killing = None
                killed = self.killed
        if killed:  # killed as it replied: the reply stands, the child is gone
            self.crashed(child)
        kind = reply[0]
        child.jobs_run += 1
        child.ready_due = child.has_ready
        options = self.host.options
        if (
            options.max_jobs_per_child is not None and child.jobs_run >= options.max_jobs_per_child
        ) or (options.max_memory_per_child is not None and reply[2] > options.max_memory_per_child):
            child.recycle = True
        if kind == "ok":
            return reply[1]
        error: BaseException = reply[1]
        error.__cause__ = RemoteTraceback(reply[3])
        raise error

    def interrupt(self) -> None:
        with self.lock:
            if self.phase == _BETWEEN:
                self.pending = True  # for the job process() is about to send
                return
            if self.phase == _RETURNED:
                return
            child = self.child
            if child is None:
                return
            try:
                _wire.send(child.control, ("interrupt", self.seq))
            except OSError:
                return  # it died already: process() is finding out
            self._arm_kill(child)

    def _arm_kill(self, child: _Child) -> None:
        # Under self.lock, once per job.
        grace = self.host.options.kill_grace
        if grace <= 0:
            self._kill(child, self.seq)
            return
        timer = threading.Timer(grace, self._kill_later, (child, self.seq))
        timer.name = "tunnypy-kill-timer"
        timer.daemon = True
        self.killing = timer
        timer.start()

    def _kill_later(self, child: _Child, seq: int) -> None:
        with self.lock:
            if self.seq == seq and self.phase == _RUNNING and self.child is child:
                self._kill(child, seq)

    def _kill(self, child: _Child, seq: int) -> None:
        # Under self.lock: the job *seq* is still running. Its reply, or the
        # EOF the kill makes, ends process().
        self.killed = True
        with contextlib.suppress(OSError):  # it may have ended already
            os.kill(child.pid, signal.SIGKILL)

    def crashed(self, child: _Child) -> WorkerCrashedError:
        """The child died: count it, drop it, and say why (its exit status, or the kill)."""
        _end_process(child.process, kill=True)
        with self.lock:
            killed = self.killed
            self.killed = False
        if killed:
            self.host.count("killed")
            why = (
                f"worker process was killed: the job outlived kill_grace="
                f"{self.host.options.kill_grace:g} s after its interrupt"
            )
        else:
            self.host.count("crashed")
            why = f"worker process died during the job ({_exit_status(child.process)})"
        self.drop(kill=True)
        return WorkerCrashedError(why)

    def terminate(self) -> None:
        self.drop(kill=False)

    def drop(self, *, kill: bool) -> None:
        """End the current child (its terminate() first, unless *kill*) and release its ends."""
        with self.ending:
            with self.lock:
                child = self.child
                self.child = None
            if child is None:
                return
            if not kill:
                try:
                    if child.ready_due:
                        self.await_child(child.pid)
                        try:
                            _wire.recv(child.jobs)  # its block_until_ready ends first
                        finally:
                            self.settle()
                    _wire.send(child.jobs, ("terminate",))
                    _wire.recv(child.jobs)
                except (EOFError, OSError):
                    pass  # it died meanwhile
            _end_process(child.process, kill=kill)
            child.jobs.close()
            child.control.close()
            child.process.close()


def _ended(child: _Child) -> bool:
    """
    Whether *child* has died while idle, without waiting.

    Between jobs nothing is due on its jobs pipe, so that pipe reads as ready
    only once it ends: the moment the child dies, before the process is
    reaped and its sentinel says so.
    """
    poller = select.poll()  # not select(): an fd may be above FD_SETSIZE
    poller.register(child.jobs.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _end_process(process: Any, *, kill: bool) -> None:
    """Wait for *process* to end (killing it first with *kill*, or if it lingers); reap it."""
    if process.pid is None:
        return  # never started
    if kill:
        process.kill()
    process.join(5.0)
    if process.exitcode is None:
        process.kill()
        process.join()


def _describe(error: BaseException) -> str:
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:
        return type(error).__name__


def _exit_status(process: Any) -> str:
    code = process.exitcode
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit code {code}"


# -- the child side -----------------------------------------------------------


@attrs.define(eq=False)
class _ChildJob:
    """What tunnypy.interrupted() reads of the running job, in the child."""

    seq: int
    withdrawn: bool = False


@attrs.define(eq=False)
class _ChildRunner:
    """The child's main thread, as a job sees its runner (a ``_job.Runner``)."""

    worker: Any
    job: _ChildJob | None = None
    interrupted_up_to: int = 0  # the last job an interrupt came for
    retiring: bool = False
    index: int = 0
    line: object = None


_NO_OP_READY = BaseWorker.block_until_ready


def _child_main(
    factory_bytes: bytes,
    jobs: Connection,
    control: Connection,
    measure: bool,
    forkserver: bool,
) -> None:
    """The child: make the worker, then serve jobs until told to terminate or orphaned."""
    # Ctrl-C reaches the whole process group; the parent decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if forkserver:
        _die_with_forkserver()
    try:
        factory = pickle.loads(factory_bytes)
        worker = factory()
        check_worker(worker)
    except BaseException as exc:
        _wire.send(jobs, ("failed", *_portable(exc)))
        return
    ready: Any = getattr(worker, "block_until_ready", None)
    has_ready = ready is not None and getattr(ready, "__func__", None) is not _NO_OP_READY
    runner = _ChildRunner(worker)
    set_current_runner(runner)  # type: ignore[arg-type] # its job is a _ChildJob
    lock = threading.Lock()
    watcher = threading.Thread(
        target=_watch_control,
        args=(control, runner, lock),
        name="tunnypy-child-control",
        daemon=True,
    )
    watcher.start()
    process = worker.process
    _wire.send(jobs, ("started", has_ready))
    if has_ready:
        _run_ready(ready)
        _wire.send(jobs, ("ready",))
    while True:
        try:
            message: Any = _wire.recv(jobs)
        except EOFError:
            os._exit(0)  # the parent is gone
        except Exception as exc:  # a payload that does not unpickle here
            error, text = _portable(exc)
            _wire.send(jobs, ("error", error, _rss() if measure else 0, text))
            continue
        if message[0] == "terminate":
            terminate = getattr(worker, "terminate", None)
            if terminate is not None:
                try:
                    terminate()
                except BaseException:
                    log.exception("terminate_failed", worker=os.getpid())
            _wire.send(jobs, ("terminated",))
            os._exit(0)
        _, seq, payload, interrupted = message
        with lock:
            # Its interrupt may have come on the control pipe before the job did.
            interrupted = interrupted or seq <= runner.interrupted_up_to
            job = runner.job = _ChildJob(seq, interrupted)
            if interrupted:
                _interrupt(worker)
        try:
            ok, outcome, text = True, process(payload), ""
        except BaseException as exc:
            ok = False
            outcome, text = _portable(exc)
        del payload
        with lock:
            runner.job = None
        del job
        rss = _rss() if measure else 0
        reply = ("ok", outcome, rss) if ok else ("error", outcome, rss, text)
        del outcome
        try:
            _wire.send(jobs, reply)
        except Exception as exc:  # a result that does not pickle
            kind = type(reply[1]).__name__
            error = TypeError(f"job result of type {kind} cannot be pickled: {exc}")
            _wire.send(jobs, ("error", error, rss, traceback.format_exc()))
        del reply
        if has_ready:
            _run_ready(ready)
            _wire.send(jobs, ("ready",))


def _watch_control(control: Connection, runner: _ChildRunner, lock: threading.Lock) -> None:
    while True:
        try:
            message: Any = _wire.recv(control)
        except BaseException:
            os._exit(0)  # EOF: the parent is gone, without a word
        with lock:
            runner.interrupted_up_to = max(runner.interrupted_up_to, message[1])
            job = runner.job
            if job is not None and job.seq == message[1] and not job.withdrawn:
                job.withdrawn = True
                # Under the lock: the next job does not start until it returns.
                _interrupt(runner.worker)


def _interrupt(worker: object) -> None:
    interrupt = getattr(worker, "interrupt", None)
    if interrupt is None:
        return
    try:
        interrupt()
    except Exception:
        log.exception("interrupt_failed", worker=os.getpid())


def _run_ready(ready: Callable[[], None]) -> None:
    try:
        ready()
    except BaseException:
        log.exception("block_until_ready_failed", worker=os.getpid())


def _portable(exc: BaseException) -> tuple[BaseException, str]:
    """*exc* if it survives pickling, else a RuntimeError naming it; and its traceback text."""
    text = "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc, protocol=5))
    except Exception:
        kind = type(exc).__name__
        return RuntimeError(f"{kind}: {_safe_str(exc)} (the exception did not pickle)"), text
    exc.__traceback__ = None
    return exc, text


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "(str() failed)"


def _rss() -> int:
    """This process's resident memory in bytes (0 where it cannot be read)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource  # noqa: PLC0415 - not on every platform

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    except (ImportError, OSError):
        return 0


def _die_with_forkserver() -> None:
    # The forkserver ends with our parent; ask Linux to kill us then, even
    # while a job holds the GIL in C (docs/processes.md, "Nothing left behind").
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes  # noqa: PLC0415 - Linux only

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # it died before prctl
        os._exit(0)
