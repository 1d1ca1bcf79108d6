"""Tuning the learning rate and batch size: the optimum per draw, penalties, plan, CLI, errors, real fits."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import fake_fit, shared_file

import bayescale as bs
from bayescale.cli.main import main
from bayescale.data.datasets import CHINCHILLA_TRUTH, TUNING_TRUTH, synthetic_tuning_sweep
from bayescale.errors import BayescaleError, DataError
from bayescale.forecast import plan, tuning

#: an asymmetric basin where too low a rate costs more (s < 0), as the misfitting sweep says
ASYM = {**CHINCHILLA_TRUTH, "l0": float(np.log(1e-3)), "a": -0.5, "b": 0.2, "c": 0.05, "s": -1.0}


def best_rate(values, n, d):
    return np.exp(values["l0"]) * (n / 1e9) ** values["a"] * (d / 2e10) ** values["b"]


@pytest.fixture(scope="module")
def asym_fit():
    """chinchilla_lr_asym with every draw at ASYM (no sampling): the optimum is known in closed form."""
    return fake_fit(synthetic_tuning_sweep(), "chinchilla_lr_asym", values=ASYM)


def test_tune_finds_the_best_rate_and_prices_both_sides_of_an_asymmetric_basin(asym_fit):
    points = pd.DataFrame({"N": [1e8, 3e9, 1e11], "D": [2e9, 6e10, 2e12]})  # the last is far beyond the runs
    table = tuning.tune(asym_fit, points, given={"lr": 3e-4})
    np.testing.assert_allclose(table["lr_opt_median"], best_rate(ASYM, points["N"], points["D"]), rtol=1e-4)
    assert list(table["lr_opt_beyond_data"]) == [False, False, True]
    side = np.tanh(np.log(2.0) / 0.1)  # the card's smooth step, 2x away from the best rate
    np.testing.assert_allclose(
        table["lr_penalty_high_median"], ASYM["c"] * np.exp(ASYM["s"] * side) * np.log(2) ** 2, rtol=1e-4
    )
    np.testing.assert_allclose(
        table["lr_penalty_low_median"], ASYM["c"] * np.exp(-ASYM["s"] * side) * np.log(2) ** 2, rtol=1e-4
    )
    x = np.log(3e-4 / best_rate(ASYM, points["N"], points["D"]))
    np.testing.assert_allclose(
        table["given_penalty_median"], ASYM["c"] * x**2 * np.exp(ASYM["s"] * np.tanh(x / 0.1)), rtol=1e-4
    )
    assert table["lr_p_within_2x"].tolist() == [0.0, 0.0, 1.0]  # 3e-4 against 1.6e-3, 7.2e-4, 2.5e-4
    # the loss of a tuned run is predict's forecast at the best rate
    forecast = asym_fit.predict(points.assign(lr=table["lr_opt_median"]))
    np.testing.assert_allclose(table["loss_median"], forecast["median"])


@pytest.mark.slow
def test_plan_assumes_a_tuned_rate_and_reports_it(asym_fit):
    """With the rate at its best the penalty vanishes, so N* and D* are Chinchilla's closed form."""
    draws = plan.optimal_allocation(asym_fit, 1e22)
    n_closed, d_closed = plan.chinchilla_closed_form(ASYM, 1e22)
    np.testing.assert_allclose(draws["N_opt"], n_closed, rtol=1e-4)
    np.testing.assert_allclose(draws["lr_opt"], best_rate(ASYM, draws["N_opt"], draws["D_opt"]), rtol=1e-4)
    result = asym_fit.plan(1e22)
    assert result["lr_opt"]["median"] == pytest.approx(best_rate(ASYM, n_closed, d_closed), rel=1e-4)
    assert result["run_at_plan"]["lr"] == pytest.approx(result["lr_opt"]["median"], rel=1e-4)
    options = plan.candidates(asym_fit, [{"N": 1e9, "D": 2e10}, {"N": 3e9, "D": 6e10}])
    np.testing.assert_allclose(options["lr_opt"], best_rate(ASYM, options["N"], options["D"]), rtol=1e-4)


def test_tune_cli_json_and_text(asym_fit, tmp_path, capsys):
    path = asym_fit.save(tmp_path / "asym.nc")
    assert main(["tune", str(path), "--at", "N=3e9,D=6e10", "--lr", "3e-4", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)["predictions"][0]
    assert record["lr_opt"]["median"] == pytest.approx(best_rate(ASYM, 3e9, 6e10), rel=1e-4)
    assert set(record["loss"]) == {"median", "lower", "upper", "pred_lower", "pred_upper", "extrapolation"}
    assert record["lr_penalty_2x"]["low"]["median"] > record["lr_penalty_2x"]["high"]["median"] > 0
    assert record["given"]["lr"] == 3e-4 and record["given"]["penalty"]["median"] > 0
    assert record["given"]["penalty"]["mean"] == pytest.approx(record["given"]["penalty"]["median"], rel=1e-3)
    assert main(["tune", str(path), "--at", "N=3e9,D=6e10"]) == 0
    text = capsys.readouterr().out
    assert "lr 2x too high costs" in text and "lr* " in text


def _misfitting_like(**changes) -> pd.DataFrame:
    """A small runs table with two rates per cell (enough to fit the basin), changed as asked."""
    frame = (
        synthetic_tuning_sweep()
        .query("batch == 524288")
        .drop(columns="batch")
        .rename(columns={"lr": "peak_lr"})
        .reset_index(drop=True)
    )
    return frame.assign(**changes) if changes else frame


@pytest.mark.parametrize(
    "frame, columns, fragment",
    [
        (_misfitting_like(), {}, "perhaps --columns lr=peak_lr"),
        (
            _misfitting_like(peak_lr=lambda f: f["peak_lr"].where(f.index != 3, -1e-3)),
            {"lr": "peak_lr"},
            "must lie in (0, 1], but rows 4 (1 = the first data row) are -0.001. Drop those runs",
        ),
        (_misfitting_like(peak_lr=lambda f: f["peak_lr"] * 1e6), {"lr": "peak_lr"}, "a batch size or a step count"),
        (_misfitting_like().query("peak_lr == 1e-3"), {"lr": "peak_lr"}, "say nothing about where the best lr lies"),
    ],
)
def test_tuning_data_errors_name_the_column_and_say_what_is_allowed(frame, columns, fragment):
    with pytest.raises(DataError, match=None) as caught:
        bs.fit(frame, "chinchilla_lr", columns=columns, progressbar=False)
    assert fragment in str(caught.value)


def test_tune_errors(asym_fit, demo_runs, capsys):
    with pytest.raises(BayescaleError, match="has no tunable input"):
        tuning.tune(fake_fit(demo_runs), {"N": [1e9], "D": [2e10]})
    with pytest.raises(BayescaleError, match=r"must lie in \(0, 1\]"):
        tuning.tune(asym_fit, {"N": [1e9], "D": [2e10]}, given={"lr": 3.0})
    with pytest.raises(BayescaleError, match="tunes lr; it has no batch"):
        tuning.tune(asym_fit, {"N": [1e9], "D": [2e10]}, given={"batch": 1e6})
    assert main(["tune", str(bs.datasets.demo_runs_path())]) == 2
    assert "--at N=...,D=..." in capsys.readouterr().err


@pytest.mark.slow
def test_a_synthetic_sweep_recovers_the_known_optima():
    """Real sampling on a sweep with known lr* and batch* exponents: the 95% intervals hold the truth."""
    fit = bs.fit(synthetic_tuning_sweep(), "chinchilla_lr_batch", draws=500, tune=500, progressbar=False)
    assert fit.diagnostics.divergences == 0
    summary = fit.summary(ci_prob=0.95)
    for name in ("l0", "a", "b", "c", "g0", "g", "cb"):
        assert summary.loc[name, "lower"] <= TUNING_TRUTH[name] <= summary.loc[name, "upper"], name
    table = tuning.tune(fit, {"N": [3e9], "D": [6e10]}, ci_prob=0.95).iloc[0]
    truth_lr = best_rate(TUNING_TRUTH, 3e9, 6e10)
    truth_batch = np.exp(TUNING_TRUTH["g0"]) * 3.0 ** TUNING_TRUTH["g"]
    assert table["lr_opt_lower"] <= truth_lr <= table["lr_opt_upper"]
    assert table["batch_opt_lower"] <= truth_batch <= table["batch_opt_upper"]


@pytest.mark.slow
def test_misfitting_backtest_ranks_the_best_rate_of_the_held_out_sizes(capsys):
    """The issue's protocol, default settings: fit below 5e8 parameters, forecast the 17 runs of 400M and 1.2B."""
    path = shared_file("misfitting/scaling_results_last_ckpt_only.csv")
    assert main(["tune", str(path), "--columns", "lr=peak_lr", "--holdout", "N >= 5e8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_heldout"] == 17 and result["n_cells"] == 6
    assert {"N", "D", "lr", "loss", "median", "pred_lower", "pred_upper"} <= set(result["runs"][0])
    assert result["coverage"]["0.9"] >= 0.8
    assert result["median_abs_rel_error"] < 0.02
    assert result["cells_ranked_first"] >= 5


@pytest.mark.slow
def test_a_law_with_inputs_other_than_n_and_d_cannot_be_planned_and_says_why():
    runs = synthetic_tuning_sweep().assign(N_no_embed=lambda t: 0.8 * t["N"])
    fit = fake_fit(runs, "chinchilla_lr_ne", values=ASYM)
    for call in (
        lambda: fit.plan(1e21),
        lambda: plan.candidates(fit, [{"N": 1e9, "D": 2e10}]),
        lambda: plan.marginal_value(fit, 1e9, 2e10),
    ):
        with pytest.raises(BayescaleError, match="also needs N_no_embed, which is not a function of them"):
            call()
    table = tuning.tune(fit, {"N": [3e9], "D": [6e10], "N_no_embed": [2.4e9]})
    assert table["lr_opt_median"].iloc[0] == pytest.approx(best_rate(ASYM, 2.4e9, 6e10), rel=1e-4)


def test_tune_bands_carry_the_extrapolation_discrepancy_and_say_so(demo_runs):
    """Far beyond the runs the loss given up widens with the discrepancy, as predict's bands do, and so does the best rate.

    This discrepancy has no decision draws (as a fit calibrated before 2026-12-07): the best rate's
    band takes tau from its prior (tests/test_decision_discrepancy.py tests the calibrated one).
    """
    from bayescale.inference.discrepancy import Discrepancy
    from bayescale.inference.distance import observed_ranges

    fit = fake_fit(synthetic_tuning_sweep(), "chinchilla_lr_asym", values=ASYM, spread=0.02)
    far = pd.DataFrame({"N": [1e11], "D": [2e12]})
    plain = tuning.tune(fit, far)
    assert plain.attrs["band_includes"] == {
        "best": ["parameters"],
        "credible": ["parameters"],
        "predictive": ["parameters", "noise"],
    }
    fit.discrepancy = Discrepancy(
        observed_ranges(fit.runs, fit.law.inputs), np.full(fit.diagnostics.n_draws, 0.02), pd.DataFrame(), 10.0
    )
    wide = tuning.tune(fit, far)
    assert wide.attrs["band_includes"]["credible"] == ["parameters", "extrapolation discrepancy"]
    assert wide.attrs["band_includes"]["best"] == ["parameters", "extrapolation discrepancy"]
    assert wide.attrs["best_calibration"]["source"] == "prior only"
    assert (wide["lr_opt_upper"] / wide["lr_opt_lower"] > 2 * plain["lr_opt_upper"] / plain["lr_opt_lower"]).all()
    width = {
        name: t["lr_penalty_high_upper"] - t["lr_penalty_high_lower"] for name, t in (("plain", plain), ("wide", wide))
    }
    assert (width["wide"] > 1.2 * width["plain"]).all()
    forecast = fit.predict(far.assign(lr=wide["lr_opt_median"]))
    for stat in ("median", "lower", "upper"):
        np.testing.assert_allclose(wide[f"loss_{stat}"], forecast[stat])
