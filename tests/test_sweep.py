"""Batch fits: every group x law fanned out, compared within groups, saved with a report (tiny real fits)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.cli.main import main

TINY = {"draws": 150, "tune": 200, "chains": 2}


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    """Two synthetic sweeps as two 'datasets' of one table."""
    frames = [bs.datasets.synthetic_sweep(seed=seed).assign(dataset=name) for seed, name in ((0, "web"), (1, "books"))]
    path = tmp_path_factory.mktemp("sweep") / "runs.csv"
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def cli_sweep(two_corpora, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-out")
    code = main(
        [
            "sweep",
            str(two_corpora),
            "--by",
            "dataset",
            "--law",
            "chinchilla likelihood=normal",
            "--law",
            "kaplan_nd likelihood=normal",
            "--draws",
            "150",
            "--tune",
            "200",
            "--chains",
            "2",
            "--out",
            str(out),
            "--json",
        ]
    )
    return code, out


@pytest.mark.slow
def test_sweep_cli_writes_fits_a_comparison_and_a_report(cli_sweep, capsys):
    code, out = cli_sweep
    assert code == 0
    table = pd.read_csv(out / "comparison.csv")
    assert sorted(table["group"].unique()) == ["books", "web"] and len(table) == 4
    for _, group in table.groupby("group"):
        assert group["weight"].sum() == pytest.approx(1.0)
        assert sorted(group["rank"]) == [1, 2]
        assert group.loc[group["rank"] == 1, "elpd_diff"].iloc[0] == 0
    # the data are Chinchilla-shaped: LOO prefers the Chinchilla law in both corpora
    assert set(table.loc[table["rank"] == 1, "law"]) == {"chinchilla (likelihood=normal)"}
    assert len(list((out / "fits").glob("*.nc"))) == 4
    (path,) = (out / "fits").glob("web--chinchilla*.nc")
    fit = bs.load(path)
    assert fit.n_obs == 63 and fit.law.name == "chinchilla"
    report = (out / "report.html").read_text()
    assert "bayescale sweep report" in report and report.count("<img") >= 8 and "dataset = books" in report


@pytest.mark.slow
def test_sweep_same_numbers_locally_and_on_dask(two_corpora, cli_sweep, dask_client):
    """The CLI sweep ran on local worker processes; the same sweep on a Dask cluster gives the same numbers."""
    laws = [bs.Candidate("chinchilla", {"likelihood": "normal"}), bs.Candidate("kaplan_nd", {"likelihood": "normal"})]
    table = bs.fit_many(two_corpora, laws, by="dataset", **TINY, executor=dask_client).comparison()
    saved = pd.read_csv(cli_sweep[1] / "comparison.csv")
    assert list(table["law"]) == list(saved["law"]) and list(table["group"]) == list(saved["group"])
    for column in ("elpd", "se", "weight", "rhat_max", "ess_bulk_min"):
        assert np.array_equal(table[column].to_numpy(float), saved[column].to_numpy(float)), column


@pytest.mark.slow
def test_sweep_reports_a_failed_fit_and_keeps_the_others(two_corpora, tmp_path, capsys):
    code = main(
        [
            "sweep",
            str(two_corpora),
            "--by",
            "dataset",
            "--law",
            "chinchilla likelihood=normal",
            "--law",
            "chinchilla prior=gamma:'Normal(0, 1)'",
            "--draws",
            "150",
            "--tune",
            "200",
            "--chains",
            "2",
            "--out",
            str(tmp_path),
            "--no-report",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    rows = json.loads(captured.out)["comparison"]
    failed = [r for r in rows if r["error"]]
    assert len(failed) == 2 and all("no parameter(s) gamma" in r["error"] for r in failed)
    assert len(list((tmp_path / "fits").glob("*.nc"))) == 2
    assert "error: chinchilla (priors=" in captured.err


def test_sweep_errors_name_the_option(two_corpora, capsys):
    assert main(["sweep", str(two_corpora), "--by", "corpus", "--law", "chinchilla", "--out", "x"]) == 2
    assert "column(s) corpus are not in the runs table" in capsys.readouterr().err
    assert (
        main(
            [
                "sweep",
                str(two_corpora),
                "--law",
                "chinchilla",
                "--out",
                "x",
                "--processes",
                "2",
                "--scheduler",
                "tcp://127.0.0.1:9",
            ]
        )
        == 2
    )
    assert "not both" in capsys.readouterr().err


def test_identical_warnings_of_many_fits_print_once_with_their_sources(demo_runs, tmp_path, monkeypatch, capsys):
    """The same sampler warning from several fits is one line naming them; one fit's own warning keeps its prefix."""
    from conftest import fake_fit

    from bayescale.evaluation.sweep import Sweep

    sweep = Sweep(
        "dataset",
        fits={
            ("a", "chinchilla"): fake_fit(demo_runs, spread=0.01, seed=1),
            ("b", "chinchilla"): fake_fit(demo_runs, spread=0.01, seed=2),
        },
        warnings={("a", "chinchilla"): ["the same advice", "only a's"], ("b", "chinchilla"): ["the same advice"]},
    )
    monkeypatch.setattr(bs, "fit_many", lambda *args, **kwargs: sweep)
    args = ["sweep", str(bs.datasets.demo_runs_path()), "--law", "chinchilla", "--no-report", "--out"]
    assert main([*args, str(tmp_path / "out"), "--json"]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert lines == [
        "warning: the same advice (2 times: chinchilla on a, chinchilla on b)",
        "warning: chinchilla on a: only a's",
    ]
    assert json.loads(captured.out)["warnings"] == [
        {"message": "the same advice", "count": 2, "from": ["chinchilla on a", "chinchilla on b"]},
        {"message": "only a's", "count": 1, "from": ["chinchilla on a"]},
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["comparison.csv", "fits"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def _demo_halves(tmp_path) -> Path:
    """The demo sweep split into two groups of alternate rows (each spans the whole grid)."""
    path = tmp_path / "halves.csv"
    pd.read_csv(bs.datasets.demo_runs_path()).assign(half=lambda t: np.where(t.index % 2, "a", "b")).to_csv(
        path, index=False
    )
    return path


def _sweep_process(runs: Path, out: Path, *extra: str) -> subprocess.Popen:
    # pytest-xdist's workers ignore SIGINT, and a child inherits that: give the sweep Ctrl-C's default back
    return subprocess.Popen(
        [sys.executable, "-m", "bayescale.cli.main", "sweep", str(runs), "--by", "half", "--law", "chinchilla"]
        + ["--chains", "2", "--out", str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.slow
def test_a_sweep_warns_only_about_what_was_asked_each_warning_once(tmp_path):
    """The report's own forecast points (10x and 100x the largest run) are not the user's question.

    Before, this sweep printed 4 warnings "the forecast at N=8.73e+11, ... lies 12.85 e-folds beyond the
    observed runs" (2 groups x the report's table and fan chart); the report keeps what they said.
    """
    process = _sweep_process(_demo_halves(tmp_path), tmp_path / "out", "--draws", "100", "--tune", "150")
    _, err = process.communicate(timeout=900)
    assert process.returncode == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warned) == len(set(warned)), warned
    assert not [line for line in warned if "the forecast at" in line], warned
    report = (tmp_path / "out" / "report.html").read_text()
    assert "Note: the forecast at N=" in report and "Bands are equal-tailed at 90%: credible (the law)" in report


def _workers_of(pid: int) -> list[int]:
    """The bayescale worker processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().split(")")[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid and b"bayescale.parallel.worker" in command:
            found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:  # a zombie has exited: it runs nothing
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def _interrupted(process: subprocess.Popen, workers: list[int]) -> str:
    """Ctrl-C to ``process``: one line, exit 130 within 15 s, and no worker left; returns what it printed after."""
    process.send_signal(signal.SIGINT)
    start = time.monotonic()
    _, rest = process.communicate(timeout=60)
    assert time.monotonic() - start < 15
    assert process.returncode == 130
    assert [line for line in rest.splitlines() if line.strip()] == [
        "interrupted: every running fit was cancelled and nothing was saved"
    ], rest
    end = time.monotonic() + 15
    while any(map(_running, workers)) and time.monotonic() < end:
        time.sleep(0.1)
    assert not any(map(_running, workers)), f"workers {workers} outlived Ctrl-C"
    return rest


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds worker processes through /proc")
def test_ctrl_c_during_a_sweep_exits_130_with_one_line_no_file_and_no_worker(tmp_path):
    runs = _demo_halves(tmp_path)
    # while the fits run in worker processes
    out = tmp_path / "fitting"
    process = _sweep_process(runs, out, "--draws", "200000", "--tune", "200")
    try:
        end = time.monotonic() + 120
        while len(_workers_of(process.pid)) < 2 and time.monotonic() < end and process.poll() is None:
            time.sleep(0.1)
        workers = _workers_of(process.pid)
        assert len(workers) == 2, process.communicate(timeout=60)
        time.sleep(2)  # into the fits
        _interrupted(process, workers)
    finally:
        process.kill()
    assert not out.exists()
    # while the fits are saved and the report is written: nothing half-written is left
    out = tmp_path / "reporting"
    process = _sweep_process(runs, out, "--draws", "100", "--tune", "150")
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith("report: "):
                break
        _interrupted(process, [])
    finally:
        process.kill()
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
