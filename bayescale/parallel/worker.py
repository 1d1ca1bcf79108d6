"""A worker process of :class:`bayescale.parallel.executor.LocalExecutor`: ``python -m bayescale.parallel.worker FD``.

It reads pickled ``(function, args, kwargs)`` tasks from the socket it inherited as file descriptor
``FD``, runs them one at a time and sends back ``(ok, result or (error, traceback))``. Its stdout and
stderr are files chosen by the parent. It exits when the parent closes the socket or dies.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import threading
import time
from multiprocessing.connection import Connection


def _exit_when_orphaned(parent: int, interval: float = 1.0) -> None:
    """End this process once its parent is gone, even in the middle of a task."""
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            os._exit(3)


def serve(fd: int) -> None:
    from bayescale.parallel.executor import STARTED, SYS_PATH_VARIABLE, run_task

    sys.path[:] = list(dict.fromkeys([*json.loads(os.environ.get(SYS_PATH_VARIABLE, "[]")), *sys.path]))
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    connection = Connection(fd)
    while True:
        try:
            message = connection.recv_bytes()
        except (EOFError, OSError):
            return
        connection.send_bytes(STARTED)  # the parent may re-send a task that was never acknowledged
        fn, args, kwargs = pickle.loads(message)
        reply = run_task(fn, args, kwargs)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            data = pickle.dumps(reply)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result is reported, not lost silently
            data = pickle.dumps(
                (
                    False,
                    (
                        None,
                        f"the result of {getattr(fn, '__qualname__', fn)} cannot be "
                        f"sent back: {type(exc).__name__}: {exc}",
                    ),
                )
            )
        connection.send_bytes(data)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
