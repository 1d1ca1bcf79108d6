"""Tasks for the executor tests: importable module-level functions, as worker processes need."""

import os
import sys
import time
from pathlib import Path


def add(a, b):
    return a + b


def chatty(n_bytes: int) -> int:
    """Write ``n_bytes`` to stdout and to stderr (far more than a pipe's 64 KiB buffer), then return."""
    block = "x" * 1023 + "\n"
    for _ in range(n_bytes // len(block)):
        sys.stdout.write(block)
        sys.stderr.write(block)
    return n_bytes


def fail(message: str):
    print(f"about to fail: {message}", file=sys.stderr)
    raise ValueError(message)


def fail_after(seconds: float, message: str):
    time.sleep(seconds)
    raise ValueError(message)


def die(code: int):
    print("dying now", file=sys.stderr, flush=True)
    os._exit(code)


def sleep_and_record(folder: str, seconds: float) -> int:
    """Write this process's pid into ``folder``, then sleep."""
    Path(folder, f"{os.getpid()}.pid").write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()
