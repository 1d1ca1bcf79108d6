"""Batch fits: every group x law fanned out, compared within groups, saved with a report (tiny real fits)."""

import json

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
