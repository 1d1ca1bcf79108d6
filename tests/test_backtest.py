"""Leave-future-out backtests: holdout rules, scoring, and the CLI end to end (small real fits)."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import fake_fit

import bayescale as bs
from bayescale.cli.main import main
from bayescale.data.datasets import CHINCHILLA_TRUTH, demo_runs_path
from bayescale.evaluation.backtesting import BacktestResult, holdout_mask, score


@pytest.fixture
def frame():
    return pd.DataFrame({"N": [1e8, 1e9, 1e10, 1e11], "D": [2e9, 2e10, 2e11, 2e12], "loss": [3.0, 2.6, 2.3, 2.1]})


def test_holdout_rules(frame):
    assert holdout_mask(frame, "N >= 1e10").tolist() == [False, False, True, True]
    assert holdout_mask(frame, "N > 1e8 and D < 1e11").tolist() == [False, True, False, False]
    assert holdout_mask(frame, "top 25% N").tolist() == [False, False, False, True]
    assert holdout_mask(frame, "top 50% of D").tolist() == [False, False, True, True]


@pytest.mark.parametrize(
    "rule, fragment",
    [
        ("N >= 1e20", "selects none of the 4 runs"),
        ("N > 0", "selects all 4 runs: nothing left to fit on"),
        ("params >= 3", "no column 'params'"),
        ("N >= __import__('os')", "cannot read holdout"),
        ("N >=", "cannot parse holdout"),
        ("top 150% N", "share must be between 0 and 100%"),
    ],
)
def test_bad_holdout_rules(frame, rule, fragment):
    with pytest.raises(bs.BayescaleError, match=fragment):
        holdout_mask(frame, rule)


def test_scores_of_a_known_posterior(demo_runs):
    frame = demo_runs.frame
    train, heldout = frame[frame.C < 1e21], frame[frame.C >= 1e21].reset_index(drop=True)
    fit = fake_fit(train, values={**CHINCHILLA_TRUTH, "sigma": 0.01, "nu": 30.0}, spread=0.0)
    result = score(fit, bs.load_runs(heldout), seed=0)
    runs = result["runs"]
    assert len(runs) == len(heldout) and set(result["coverage"]) == {"0.5", "0.8", "0.9"}
    expected_err = np.median(np.abs(runs["median"] / heldout["loss"] - 1))
    assert result["median_abs_rel_error"] == pytest.approx(expected_err)
    assert result["coverage"]["0.9"] == pytest.approx(np.mean(runs["inside_90"]))
    assert result["coverage"]["0.5"] <= result["coverage"]["0.8"] <= result["coverage"]["0.9"]
    from bayescale.evaluation.backtesting import interval_score

    assert result["interval_score_90"] == pytest.approx(
        np.mean(interval_score(heldout["loss"], runs["pred_lower"], runs["pred_upper"], 0.9))
    )
    # one draw, Student-t noise: the held-out lpd is the sum of the pointwise densities
    from scipy import stats

    mu = np.log(runs["median"].to_numpy())
    lpd = stats.t(df=30.0, loc=mu, scale=0.01).logpdf(np.log(heldout["loss"])).sum()
    assert result["heldout_lpd"] == pytest.approx(lpd, rel=1e-6)


def test_interval_score_rewards_narrow_bands_only_while_they_hold():
    from bayescale.evaluation.backtesting import interval_score

    # inside: the width; below by 0.1 at 90%: width + 20 * 0.1; above by 0.05 at 50%: width + 4 * 0.05 (all / y)
    got = interval_score([2.0, 1.8, 2.6], [1.9, 1.9, 2.4], [2.1, 2.1, 2.55], 0.9)
    assert got[0] == pytest.approx(0.2 / 2.0) and got[1] == pytest.approx((0.2 + 20 * 0.1) / 1.8)
    assert interval_score([2.6], [2.4], [2.55], 0.5)[0] == pytest.approx((0.15 + 4 * 0.05) / 2.6)


@pytest.mark.slow
def test_backtest_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "bt.json"
    code = main(
        [
            "backtest",
            str(demo_runs_path()),
            "--law",
            "chinchilla",
            "--law",
            "chinchilla likelihood=normal",
            "--holdout",
            "C >= 1e21",
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
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data["holdout"] == "C >= 1e21" and data["n_heldout"] == 9 and data["n_train"] == 54
    assert [law["law"] for law in data["laws"]] == ["chinchilla", "chinchilla (likelihood=normal)"]
    for law in data["laws"]:
        assert set(law["coverage"]) == set(law["coverage_if_right"]) == {"0.5", "0.8", "0.9"}
        assert all(0 <= low <= high <= 1 for low, high in law["coverage_if_right"].values())
        assert 0 <= law["median_abs_rel_error"] < 0.05 and np.isfinite(law["heldout_lpd"])
        assert len(law["runs"]) == 9
        assert set(law["runs"][0]) >= {"N", "D", "loss", "median", "pred_lower", "pred_upper"}
        assert all(r["pred_lower"] < r["median"] < r["pred_upper"] for r in law["runs"])
    assert "[2/2]" in captured.err  # progress
    loaded = BacktestResult.load(out)
    assert list(loaded.table.columns[:4]) == ["rank", "coverage_0.5", "coverage_0.8", "coverage_0.9"]


def test_backtest_prints_the_coverage_a_right_forecast_would_show(capsys):
    from bayescale.cli.evaluation_commands import coverage_ranges_text

    record = {
        "laws": [
            {
                "law": "chinchilla",
                "coverage": {"0.5": 0.29, "0.8": 0.71, "0.9": 0.99},
                "coverage_if_right": {"0.5": [0.06, 0.79], "0.8": [0.75, 0.97], "0.9": [0.32, 0.98]},
            }
        ]
    }
    out = "\n".join(coverage_ranges_text(record))
    assert (
        "chinchilla: 50%: 0.06-0.79, got 0.29; 80%: 0.75-0.97, got 0.71 (narrower than right); "
        "90%: 0.32-0.98, got 0.99 (wider than right)" in out
    )


def test_backtest_cli_errors(capsys):
    code = main(["backtest", str(demo_runs_path()), "--law", "chinchilla", "--holdout", "N > 1e20"])
    assert code == 2 and "selects none" in capsys.readouterr().err
    code = main(["backtest", str(demo_runs_path()), "--law", "chinchilla colour=red", "--holdout", "N > 1e9"])
    assert code == 2 and "unknown option 'colour'" in capsys.readouterr().err


TINY = {"draws": 150, "tune": 200, "chains": 2}


def _numbers(result) -> dict:
    """Every number a backtest reports, per law (sampler warnings aside)."""
    return {
        law["law"]: {k: law[k] for k in ("coverage", "median_abs_rel_error", "heldout_lpd", "runs")}
        for law in result.to_dict()["laws"]
    }


@pytest.mark.slow
def test_same_numbers_serial_local_pool_and_dask(demo_runs, dask_client):
    laws = ["chinchilla", bs.Candidate("chinchilla", {"likelihood": "normal"})]
    args = (demo_runs, laws, "C >= 1e21")
    serial = bs.backtest(*args, **TINY, processes=1)  # compiled fresh or loaded: the same bits (no fastmath)
    pool = bs.backtest(*args, **TINY, processes=2)
    dask = bs.backtest(*args, **TINY, executor=dask_client)
    assert _numbers(serial) == _numbers(pool) == _numbers(dask)
    assert len(serial.results) == 2 and not serial.errors


@pytest.mark.slow
def test_a_failing_law_is_reported_and_the_others_finish(tmp_path, capsys):
    out = tmp_path / "bt.json"
    code = main(
        [
            "backtest",
            str(demo_runs_path()),
            "--law",
            "chinchilla likelihood=normal",
            "--law",
            "chinchilla prior=gamma:'Normal(0, 1)'",
            "--holdout",
            "C >= 1e21",
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
    captured = capsys.readouterr()
    assert code == 1, captured.err
    data = json.loads(captured.out)
    good, bad = data["laws"]
    assert good["law"] == "chinchilla (likelihood=normal)" and len(good["runs"]) == 9
    assert bad["law"].startswith("chinchilla (priors=") and "no parameter(s) gamma to put a prior on" in bad["error"]
    assert "failed: no parameter(s) gamma" in captured.err
    loaded = BacktestResult.load(out)
    assert list(loaded.table.index) == ["chinchilla (likelihood=normal)"] and set(loaded.errors) == {bad["law"]}


@pytest.mark.slow
def test_several_holdouts_fan_out_together(demo_runs):
    results = bs.backtest(
        demo_runs, [bs.Candidate("chinchilla", {"likelihood": "normal"})], ["C >= 1e21", "top 20% N"], **TINY
    )
    assert [r.holdout for r in results] == ["C >= 1e21", "top 20% N"]
    assert results[0].n_heldout == 9 and results[1].n_heldout == int(
        np.sum(demo_runs["N"] >= np.quantile(demo_runs["N"], 0.8))
    )


def test_coverage_if_right_is_wide_where_held_out_runs_err_together(demo_runs):
    """Independent errors: the binomial range around the nominal level. One shared bend: nearly all in or all out."""
    from bayescale.evaluation.backtesting import coverage_if_right
    from bayescale.inference.discrepancy import Discrepancy
    from bayescale.inference.distance import observed_ranges

    frame = demo_runs.frame
    train, heldout = frame[frame.C < 1e21], frame[frame.C >= 1e21].reset_index(drop=True)
    fit = fake_fit(train, values={**CHINCHILLA_TRUTH, "sigma": 0.01, "nu": 1000.0}, draws=2000, spread=0.0)
    points, n = heldout[["N", "D"]], len(heldout)
    independent = coverage_if_right(fit, points, seed=0)
    for level, (low, high) in independent.items():
        half = 1.645 * np.sqrt(float(level) * (1 - float(level)) / n)  # the binomial 5-95% range
        assert low <= float(level) <= high
        assert high - low == pytest.approx(2 * half, abs=2 / n + 0.05)
    fit.discrepancy = Discrepancy(observed_ranges(fit.runs, fit.law.inputs), np.full(4000, 0.05), pd.DataFrame(), 10.0)
    shared = coverage_if_right(fit, points, seed=0)
    assert shared["0.5"][0] < 0.15 and shared["0.5"][1] > 0.85
    # and score() reports it, as the CLI prints it
    result = score(fit, bs.load_runs(heldout), seed=0)
    assert result["coverage_if_right"] == shared


def test_the_calibration_plot_shades_what_a_right_forecast_would_show():
    from bayescale.viz import plots

    coverage = {"0.5": 0.29, "0.8": 0.71, "0.9": 0.94}
    result = BacktestResult(
        "N >= 2.9e9",
        211,
        34,
        {
            "chinchilla": {
                "coverage": coverage,
                "coverage_if_right": {"0.5": [0.06, 0.79], "0.8": [0.2, 0.97], "0.9": [0.32, 1.0]},
            },
            "bnsl_1": {"coverage": coverage},  # an older result without the range: a line only
            "broken": {"error": "the fit failed"},
        },
    )
    ax = plots.calibration(result).axes[0]
    assert len(ax.lines) == 3  # the diagonal and one line per scored law
    (shade,) = ax.collections
    corners = shade.get_paths()[0].vertices
    assert corners[:, 1].min() == pytest.approx(0.06) and corners[:, 1].max() == pytest.approx(1.0)
