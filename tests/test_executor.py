"""The executor behind every fan-out: local worker processes and a real Dask LocalCluster."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import executor_tasks as tasks
import pytest

from bayescale.errors import BayescaleError
from bayescale.parallel.executor import LocalExecutor, WorkerError, executor_for, fan_out

TESTS = Path(__file__).resolve().parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_until(condition, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_results_come_back_in_task_order_from_several_workers():
    tasks_ = {i: (tasks.add, (i, 100), {}) for i in range(6)}
    outcomes = fan_out(tasks_, max_workers=2)
    assert list(outcomes) == list(range(6))
    assert [o.result for o in outcomes.values()] == [100 + i for i in range(6)]


def test_chatty_workers_do_not_block():
    """1 MiB on both stdout and stderr from each of two workers: pipes would deadlock at 64 KiB."""
    with LocalExecutor(2) as executor:
        futures = [executor.submit(tasks.chatty, 1 << 20) for _ in range(2)]
        assert [f.result(timeout=120) for f in futures] == [1 << 20, 1 << 20]


def test_a_failing_task_reports_its_error_and_the_others_finish():
    progress = []
    outcomes = fan_out(
        {
            "good": (tasks.add, (1, 2), {}),
            "bad": (tasks.fail, ("no luck",), {}),
            "dead": (tasks.die, (9,), {}),
            "also good": (tasks.add, (3, 4), {}),
        },
        max_workers=2,
        progress=lambda o, done, total: progress.append((o.key, done, total)),
    )
    assert outcomes["good"].result == 3 and outcomes["also good"].result == 7
    error = outcomes["bad"].error
    assert isinstance(error, ValueError) and str(error) == "no luck"
    assert "about to fail: no luck" in error.worker_stderr and "raise ValueError" in error.worker_traceback
    dead = outcomes["dead"].error
    assert isinstance(dead, WorkerError) and "exit 9" in str(dead) and "dying now" in str(dead)
    assert sorted(done for _, done, _ in progress) == [1, 2, 3, 4] and {t for *_, t in progress} == {4}


def test_fail_fast_cancels_the_rest(tmp_path):
    outcomes = fan_out(
        {
            "bad": (tasks.fail_after, (1.0, "stop"), {}),  # the others are running by then
            **{f"slow{i}": (tasks.sleep_and_record, (str(tmp_path), 60), {}) for i in range(3)},
        },
        max_workers=2,
        fail_fast=True,
    )
    assert str(outcomes["bad"].error) == "stop"
    assert all(not outcomes[f"slow{i}"].ok for i in range(3))
    pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
    assert pids and _wait_until(lambda: not any(map(_alive, pids)), 10)


def test_unpicklable_results_and_arguments_are_reported_not_lost():
    with LocalExecutor(1) as executor:
        future = executor.submit(tasks.add, (i for i in range(2)), ())  # a generator cannot be pickled
        with pytest.raises(WorkerError, match="cannot send add to a worker"):
            future.result(timeout=60)
        assert executor.submit(tasks.add, 2, 2).result(timeout=60) == 4


def test_executor_for_accepts_executors_and_rejects_the_rest():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        assert executor_for(pool) == (pool, False)
        assert fan_out({"a": (tasks.add, (1, 1), {})}, executor=pool)["a"].result == 2
    with pytest.raises(BayescaleError, match="concurrent.futures.Executor or a dask.distributed.Client"):
        executor_for("localhost")
    with pytest.raises(BayescaleError, match="not both"):
        executor_for(pool, scheduler="tcp://127.0.0.1:1")


SCRIPT = """
import signal
import sys
# a user at a terminal: Ctrl-C raises KeyboardInterrupt even when the test runner was started in the
# background by a shell that set SIGINT to be ignored (which the script would otherwise inherit)
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {tests!r})
import executor_tasks
from bayescale.parallel.executor import fan_out
print("started", flush=True)
fan_out({{i: (executor_tasks.sleep_and_record, ({folder!r}, 120), {{}}) for i in range(4)}}, max_workers=2)
"""


def _start_script(tmp_path) -> subprocess.Popen:
    """A user's script (no __main__ guard) fanning out sleepers; returns once both workers run."""
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(TESTS), folder=str(tmp_path))))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_until(lambda: len(list(tmp_path.glob("*.pid"))) == 2, 60), (
        process.stderr.read() if process.poll() else ""
    )
    return process


def test_ctrl_c_cancels_everything_and_leaves_no_orphan(tmp_path):
    process = _start_script(tmp_path)
    pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert "KeyboardInterrupt" in stderr
    # gone as the script ends: killed by it, not left to notice later that their parent died
    assert not any(map(_alive, pids)), f"workers {pids} outlived Ctrl-C"
    assert len(list(tmp_path.glob("*.pid"))) == 2  # the pending tasks never started


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    process = _start_script(tmp_path)
    pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
    process.kill()
    process.wait()
    assert _wait_until(lambda: not any(map(_alive, pids)), 15), f"workers {pids} outlived a killed parent"


@pytest.mark.slow
def test_dask_runs_tasks_and_reports_failures(dask_client):
    outcomes = fan_out({"a": (tasks.add, (2, 3), {}), "bad": (tasks.fail, ("on dask",), {})}, executor=dask_client)
    assert outcomes["a"].result == 5
    assert isinstance(outcomes["bad"].error, ValueError) and str(outcomes["bad"].error) == "on dask"
    assert dask_client.status == "running"  # a client the caller gave is not closed


@pytest.mark.slow
def test_scheduler_address_connects_and_an_unreachable_one_is_a_clear_error(dask_client, monkeypatch):
    address = dask_client.scheduler.address
    assert fan_out({"a": (tasks.add, (1, 2), {})}, scheduler=address)["a"].result == 3
    monkeypatch.setattr("bayescale.parallel.executor.SCHEDULER_TIMEOUT", "2s")  # nothing listens there: give up sooner
    with pytest.raises(BayescaleError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        executor_for(scheduler="tcp://127.0.0.1:9")


def test_a_worker_killed_while_idle_is_replaced():
    with LocalExecutor(1) as executor:
        pid = executor.submit(os.getpid).result(timeout=60)
        os.kill(pid, signal.SIGKILL)
        assert _wait_until(lambda: not _alive(pid), 10)
        assert executor.submit(tasks.add, 1, 1).result(timeout=60) == 2
        assert executor.submit(os.getpid).result(timeout=60) != pid


def test_a_failing_dispatcher_fails_the_futures_instead_of_hanging(monkeypatch):
    import bayescale.parallel.executor as executor_module

    def cannot_start(self, folder, index):
        raise OSError("no more processes")

    monkeypatch.setattr(executor_module._Worker, "__init__", cannot_start)
    executor = LocalExecutor(1)
    future = executor.submit(tasks.add, 1, 1)
    with pytest.raises(WorkerError, match="the executor failed: OSError: no more processes"):
        future.result(timeout=30)
    with pytest.raises(RuntimeError, match="shut down"):  # a broken executor takes no more work
        executor.submit(tasks.add, 2, 2)
