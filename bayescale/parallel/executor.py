"""Fan-out of independent fits: one ``concurrent.futures.Executor`` for local processes or a Dask cluster.

Backtests, sweeps and the calibration benchmark fit many models that do not depend on each other.
They all go through :func:`fan_out`, which takes any executor:

- :class:`LocalExecutor` (the default): persistent worker processes started as
  ``python -m bayescale.parallel.worker``, one per core. A user's script needs no
  ``if __name__ == "__main__"`` guard, and no process forks a multi-threaded sampler. Workers write
  their stdout and stderr to files, never to pipes, so a chatty worker cannot block; a worker whose
  parent dies exits by itself.
- a Dask ``distributed.Client`` (or a scheduler address, ``"tcp://host:8786"``): tasks run on the
  cluster's workers, which need bayescale installed. Inputs and results travel with the tasks, so
  the workers need no shared file system.

Tasks are module-level functions with explicit seeds, so the same seeds give the same numbers
wherever they run.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import cloudpickle

from bayescale.errors import BayescaleError

#: how much of a failed task's stderr an error message keeps
STDERR_TAIL = 4000
#: a worker's acknowledgement that it received a task (a task never acknowledged is re-sent elsewhere)
STARTED = b"started"
#: how often a task that no worker acknowledged is sent again before it fails
MAX_SENDS = 3
#: the environment variable that hands the caller's ``sys.path`` to worker processes
SYS_PATH_VARIABLE = "BAYESCALE_WORKER_SYS_PATH"


class WorkerError(BayescaleError):
    """A task failed in a worker: its error, the traceback text and the tail of its stderr."""


@dataclass
class _Task:
    future: cf.Future
    fn: Callable
    args: tuple
    kwargs: dict
    message: bytes | None = None  # the pickled task, once sent
    sends: int = 0


class _Worker:
    """One ``python -m bayescale.parallel.worker`` process, its socket and its output files."""

    def __init__(self, folder: Path, index: int):
        parent, child = socket.socketpair()
        self.stdout_path = folder / f"worker{index}.out"
        self.stderr_path = folder / f"worker{index}.err"
        env = {**os.environ, SYS_PATH_VARIABLE: json.dumps(sys.path)}  # the caller's modules import in workers
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bayescale.parallel.worker", str(child.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                pass_fds=[child.fileno()],
                close_fds=True,
            )
        child.close()
        self.connection = Connection(parent.detach())
        self.task: _Task | None = None
        self.started = False  # the worker acknowledged the current task
        self.stderr_offset = 0

    def send(self, task: _Task) -> None:
        self.task, self.started = task, False
        task.sends += 1
        self.stderr_offset = self.stderr_path.stat().st_size
        assert task.message is not None  # pickled by LocalExecutor._assign before it is sent
        self.connection.send_bytes(task.message)

    def stderr_tail(self) -> str:
        """What the current task wrote to stderr (its last ``STDERR_TAIL`` characters)."""
        with open(self.stderr_path, "rb") as handle:
            handle.seek(max(self.stderr_offset, self.stderr_path.stat().st_size - STDERR_TAIL))
            return handle.read().decode(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.connection.close()


class LocalExecutor(cf.Executor):
    """Run tasks in up to ``max_workers`` persistent worker processes (default: one per core).

    ``submit`` returns ordinary futures. A task that raises sets its future's exception (the
    original exception where it can be pickled, else a :class:`WorkerError`); a worker that dies
    fails only its own task, and is replaced. ``shutdown(cancel_futures=True)`` or
    :meth:`terminate` kill running tasks.
    """

    def __init__(self, max_workers: int | None = None):
        self.max_workers = max(1, int(max_workers or os.cpu_count() or 1))
        self._folder = tempfile.TemporaryDirectory(prefix="bayescale-workers-")
        self._pending: deque[_Task] = deque()
        self._workers: list[_Worker] = []
        self._started = 0
        self._lock = threading.Lock()
        self._wake_read, self._wake_write = socket.socketpair()
        self._closing = False
        self._thread = threading.Thread(target=self._dispatch, name="bayescale-executor", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable, /, *args, **kwargs) -> cf.Future:
        future: cf.Future = cf.Future()
        with self._lock:
            if self._closing:
                raise RuntimeError("cannot submit to an executor that has been shut down")
            self._pending.append(_Task(future, fn, args, kwargs))
        self._wake()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closing = True
            if cancel_futures:
                self._cancel_pending()
        if cancel_futures:
            self.terminate()
        self._wake()
        if wait:
            self._thread.join()

    def terminate(self, reason: str = "the executor was terminated") -> None:
        """Kill every worker now; running tasks fail with a :class:`WorkerError` giving ``reason``, pending ones are cancelled."""
        with self._lock:
            self._closing = True
            self._cancel_pending()
            for worker in self._workers:  # the dispatcher sees each connection close and cleans up
                if worker.process.poll() is None:
                    worker.process.kill()
                task = worker.task
                if task is not None and not task.future.done():
                    task.future.set_exception(WorkerError(f"cancelled: {reason}"))
        self._wake()

    def _cancel_pending(self) -> None:
        """Cancel tasks not yet started (lock held), waking anyone waiting on them (``as_completed``)."""
        while self._pending:
            task = self._pending.popleft()
            if task.message is None:
                task.future.cancel()
                task.future.set_running_or_notify_cancel()
            elif not task.future.done():  # already running, waiting to be sent again
                task.future.set_exception(WorkerError("cancelled before it could run"))

    def _wake(self) -> None:
        try:
            self._wake_write.send(b"x")
        except OSError:
            pass

    def _dispatch(self) -> None:
        """The executor's thread: start workers, hand out tasks, collect results."""
        try:
            while True:
                with self._lock:
                    self._assign()
                    busy = {w.connection: w for w in self._workers if w.task is not None}
                    if self._closing and not self._pending and not busy:
                        break
                ready = wait([*busy, self._wake_read], timeout=1.0)
                for item in ready:
                    if item is self._wake_read:
                        self._wake_read.recv(4096)
                    else:
                        assert isinstance(item, Connection)  # the others are the busy workers' connections
                        self._collect(busy[item])
        except BaseException as exc:  # noqa: BLE001 - never leave a caller waiting on a future nobody will set
            self._fail_all(exc)
        finally:
            for worker in self._workers:
                worker.kill()
            self._workers = []
            self._wake_read.close()
            self._wake_write.close()
            self._folder.cleanup()

    def _fail_all(self, exc: BaseException) -> None:
        """The dispatcher itself failed: every task not yet done fails with that error."""
        error = f"the executor failed: {type(exc).__name__}: {exc}"
        with self._lock:
            self._closing = True
            futures = [t.future for t in self._pending] + [w.task.future for w in self._workers if w.task is not None]
            self._pending.clear()
        for future in futures:
            if not future.done():
                future.set_exception(WorkerError(error))

    def _assign(self) -> None:
        """Give pending tasks to idle workers, starting workers up to ``max_workers`` (lock held)."""
        for dead in [w for w in self._workers if w.task is None and w.process.poll() is not None]:
            self._workers.remove(dead)  # died while idle (killed from outside): replaced below
            dead.kill()
        while self._pending:
            idle = next((w for w in self._workers if w.task is None), None)
            if idle is None and len(self._workers) < self.max_workers:
                idle = _Worker(Path(self._folder.name), self._started)
                self._started += 1
                self._workers.append(idle)
            if idle is None:
                return
            task = self._pending.popleft()
            if task.message is None:  # first time out: mark running, pickle once
                if not task.future.set_running_or_notify_cancel():
                    continue
                try:
                    task.message = cloudpickle.dumps((task.fn, task.args, task.kwargs))
                except Exception as exc:  # noqa: BLE001 - e.g. an open file among the arguments
                    task.future.set_exception(
                        WorkerError(
                            f"cannot send {_name(task.fn)} to a worker process ({type(exc).__name__}: {exc}); "
                            "its arguments must be picklable"
                        )
                    )
                    continue
            try:
                idle.send(task)
            except OSError:  # the worker is gone: replace it, try again
                self._workers.remove(idle)
                idle.kill()
                self._pending.appendleft(task)

    def _collect(self, worker: _Worker) -> None:
        task = worker.task
        try:
            data = worker.connection.recv_bytes()
            if data == STARTED:
                worker.started = True
                return
            ok, payload = pickle.loads(data)
        except (EOFError, OSError, pickle.UnpicklingError):
            code = worker.process.wait()
            with self._lock:
                if worker in self._workers:
                    self._workers.remove(worker)
                if (
                    task is not None
                    and not worker.started
                    and not task.future.done()
                    and not self._closing
                    and task.sends < MAX_SENDS
                ):
                    self._pending.appendleft(task)  # it never reached the worker: run it on another
                    task = None
            if task is not None and not task.future.done():
                tail = worker.stderr_tail().strip()
                task.future.set_exception(
                    WorkerError(
                        f"a worker process died (exit {code}) while running {_name(task.fn)}"
                        + (f"; its last output:\n{tail}" if tail else "")
                    )
                )
            worker.kill()
            return
        assert task is not None  # only busy workers are collected
        worker.task = None
        if task.future.done():  # terminated meanwhile
            return
        if ok:
            task.future.set_result(payload)
            return
        error, text = payload
        if error is None:
            error = WorkerError(text)
        error.worker_traceback = text
        error.worker_stderr = worker.stderr_tail()
        task.future.set_exception(error)


def _name(fn: Callable) -> str:
    return getattr(fn, "__qualname__", repr(fn))


def executor_for(
    executor: Any = None, *, scheduler: str | None = None, max_workers: int | None = None
) -> tuple[cf.Executor, bool]:
    """Resolve what the user gave into ``(executor, owned)``; ``owned`` executors are shut down by the caller.

    ``executor`` may be ``None`` (local processes), any ``concurrent.futures.Executor``, or a Dask
    ``distributed.Client``; ``scheduler`` is a Dask scheduler address (``"tcp://host:8786"``).
    """
    if executor is not None and scheduler is not None:
        raise BayescaleError("give an executor or a scheduler address, not both")
    if scheduler is not None:
        client = _dask_client(scheduler)
        return _DaskExecutor(client, owns_client=True), True
    if executor is None:
        return LocalExecutor(max_workers), True
    if isinstance(executor, cf.Executor):
        return executor, False
    if type(executor).__name__ == "Client" and type(executor).__module__.startswith("distributed"):
        return _DaskExecutor(executor, owns_client=False), True
    raise BayescaleError(
        f"executor must be a concurrent.futures.Executor or a dask.distributed.Client, got {type(executor).__name__}"
    )


#: how long to keep trying a Dask scheduler address before saying it cannot be reached
SCHEDULER_TIMEOUT = "20s"


def _dask_client(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise BayescaleError("a scheduler address needs Dask: pip install 'bayescale[dask]'") from None
    try:
        return Client(address, timeout=SCHEDULER_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise BayescaleError(f"cannot reach the Dask scheduler at {address!r}: {exc}") from None


class _DaskExecutor(cf.Executor):
    """A Dask client's ``concurrent.futures`` face; each task is a fresh, impure Dask task."""

    def __init__(self, client, owns_client: bool):
        self.client = client
        self._owns_client = owns_client
        self._executor = client.get_executor(pure=False)

    def submit(self, fn, /, *args, **kwargs):
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait and not cancel_futures)
        if self._owns_client:
            self.client.close()


@dataclass
class Outcome:
    """One task's result, or its error (a task that failed does not stop the others)."""

    key: Hashable
    result: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


#: one task for :func:`fan_out`: ``(fn, args, kwargs)``
Task = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def fan_out[K: Hashable](
    tasks: Mapping[K, Task],
    *,
    executor: Any = None,
    scheduler: str | None = None,
    max_workers: int | None = None,
    fail_fast: bool = False,
    progress: Callable[[Outcome, int, int], None] | None = None,
) -> dict[K, Outcome]:
    """Run ``{key: (fn, args, kwargs)}`` on an executor; return ``{key: Outcome}`` in the tasks' order.

    A failing task is recorded with its error and the others finish, unless ``fail_fast``: then the
    rest are cancelled. Ctrl-C (``KeyboardInterrupt``) cancels everything, kills local workers and
    re-raises. ``progress(outcome, done, total)`` is called as each task ends.
    """
    executor, owned = executor_for(executor, scheduler=scheduler, max_workers=max_workers)
    outcomes: dict[K, Outcome] = {}
    futures: dict[cf.Future, K] = {}
    interrupted, stopped_by = False, ""
    try:
        for key, (fn, args, kwargs) in tasks.items():
            futures[executor.submit(fn, *args, **kwargs)] = key
        for future in cf.as_completed(futures):
            key = futures[future]
            if future.cancelled():
                outcome = Outcome(key, error=WorkerError(f"cancelled: {stopped_by}"))
            else:
                error = future.exception()
                outcome = Outcome(key, error=error) if error is not None else Outcome(key, future.result())
            outcomes[key] = outcome
            if progress:
                progress(outcome, len(outcomes), len(futures))
            if fail_fast and not outcome.ok and stopped_by == "":
                stopped_by = f"{key} failed first (fail-fast)"
                for other in futures:
                    other.cancel()
                if isinstance(executor, LocalExecutor):
                    executor.terminate(stopped_by)
    except KeyboardInterrupt:
        interrupted = True
        for future in futures:
            future.cancel()
        if isinstance(executor, LocalExecutor):
            executor.terminate("interrupted (Ctrl-C)")
        raise
    finally:
        if owned:
            executor.shutdown(wait=not interrupted, cancel_futures=interrupted or fail_fast)
    return {key: outcomes[key] for key in tasks}


def plan_workers(n_tasks: int, processes: int | None = None) -> tuple[int, int]:
    """``(worker processes, sampler cores per fit)`` for ``n_tasks`` fits on this machine."""
    cpus = os.cpu_count() or 1
    workers = max(1, min(processes or cpus, n_tasks))
    return workers, max(1, cpus // workers)


def describe(error: BaseException) -> str:
    """One line for a task's error: its message, or the exception type and message."""
    if isinstance(error, BayescaleError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def run_task(fn: Callable, args: Iterable, kwargs: Mapping) -> tuple[bool, Any]:
    """Call ``fn`` in a worker; ``(True, result)`` or ``(False, (picklable error or None, traceback text))``."""
    try:
        return True, fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - a worker reports every failure to its parent
        text = traceback.format_exc()
        error: BaseException | None = exc
        try:
            pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - unpicklable exceptions travel as text
            error = None
        return False, (error, text)
