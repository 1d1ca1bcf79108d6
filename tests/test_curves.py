"""Learning curves: checkpoint validation, the warm-up rule, joint fits and forecasts of the rest of a run."""

import json

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.cli.main import main
from bayescale.curves.learning_curves import fit_curves, forecast_curves, load_checkpoints, upto_steps
from bayescale.errors import DataError


@pytest.fixture(scope="module")
def curves():
    return bs.datasets.synthetic_curves(0)


def test_checkpoint_errors_name_the_run_and_rows(curves):
    shuffled = curves.copy()
    shuffled.loc[[3, 4], "step"] = shuffled.loc[[4, 3], "step"].to_numpy()
    with pytest.raises(DataError, match="run 'run0': steps must increase within a run, but rows 5 "):
        load_checkpoints(shuffled)
    with pytest.raises(DataError, match="needs a 'run' column"):
        load_checkpoints(curves.drop(columns="run"))
    negative = curves.copy()
    negative.loc[2, "step"] = -5
    with pytest.raises(DataError, match="column 'step': must be > 0, but rows 3 "):
        load_checkpoints(negative)
    with pytest.raises(bs.BayescaleError, match="warmup must be"):
        load_checkpoints(curves, warmup=-1)


def test_warm_up_rule(curves):
    runs = load_checkpoints(curves, warmup=0.05)
    limit = 0.05 * curves["total_steps"]
    assert len(runs) == int((curves["step"] > limit).sum()) and "early-phase checkpoints" in runs.notes[-1]
    assert len(load_checkpoints(curves, warmup=0)) == len(curves)
    # the default: 20% of the planned steps, at most half of what the fit will see; 5% without total_steps
    default = load_checkpoints(curves)
    assert (default.frame["step"] > 0.2 * default.frame["total_steps"]).all()
    assert len(default) == int((curves["step"] > 0.2 * curves["total_steps"]).sum())
    early = load_checkpoints(curves, upto=0.25)
    assert len(early) == int((curves["step"] > 0.125 * curves["total_steps"]).sum())
    unplanned = load_checkpoints(curves.drop(columns="total_steps"))
    last = curves.groupby("run")["step"].transform("max")
    assert len(unplanned) == int((curves["step"] > 0.05 * last).sum())
    assert (load_checkpoints(curves, warmup=1000).frame["step"] > 1000).all()
    np.testing.assert_allclose(upto_steps(runs.frame, 0.5), 0.5 * runs.frame["total_steps"])


def test_a_single_run_with_too_few_checkpoints_is_refused(curves):
    runs = load_checkpoints(curves[curves.run == "run0"].head(4), warmup=0)
    with pytest.raises(DataError, match="rows but law 'curve_power'.*parameters"):
        fit_curves(runs, upto=0.5, draws=10, tune=10)


def test_a_law_that_needs_learning_rates_says_so(curves):
    law = bs.Law.from_formula(
        "E + A * step**(-alpha) * lr**(-g)",
        priors={
            "E": "LogNormal(0.7, 0.5)",
            "A": "LogNormal(3, 2)",
            "alpha": "LogNormal(-0.7, 0.5)",
            "g": "LogNormal(-2, 1)",
        },
        inputs=("step", "lr"),
    )
    with pytest.raises(DataError, match="needs column\\(s\\) lr"):
        fit_curves(load_checkpoints(curves), law, upto=0.5, draws=10, tune=10)


@pytest.fixture(scope="module")
def curve_fit(curves):
    runs = load_checkpoints(curves, warmup=0.05)  # geometric checkpoints: the default 20% would leave few
    return runs, fit_curves(runs, upto=0.5, draws=300, tune=400, chains=2, progressbar=False, extrapolation="none")


@pytest.mark.slow
def test_forecast_of_the_rest_of_each_run(curve_fit, curves):
    runs, fit = curve_fit
    assert set(fit.spec.pooled) == {"E", "A"} and fit.spec.pooled["E"].column == "run"
    out = forecast_curves(fit, runs, upto=0.5, delta=0.01)
    assert list(out["run"]) == ["run0", "run1", "run2", "run3"]
    final = curves.groupby("run")["loss"].last().to_numpy()
    rel = np.abs(out["final_median"] / final - 1)
    assert np.median(rel) < 0.03
    assert ((out["final_pred_lower"] < out["final_median"]) & (out["final_median"] < out["final_pred_upper"])).all()
    assert out["p_improve"].between(0, 1).all() and (out["p_improve"] > 0.5).all()  # halfway, loss still falls
    assert (out["saturation_step"] > out["upto_step"]).all()
    longer = forecast_curves(fit, runs, upto=0.5, horizon=1e6)
    assert (longer["final_median"] < out["final_median"]).all() and (longer["horizon_step"] == 1e6).all()


@pytest.mark.slow
def test_curve_cli_json(tmp_path, curves, capsys, monkeypatch):
    from conftest import fake_fit

    fit = fake_fit(
        load_checkpoints(curves.query("run == 'run1'")),
        "curve_power",
        {"E": 2.0, "A": 30.0, "alpha": 0.45},
        spread=0.01,
    )
    asked = {}
    # plumbing: the command takes fit_curves from bs.__all__
    monkeypatch.setattr(bs, "fit_curves", lambda *args, **kwargs: asked.update(kwargs) or fit)
    path = tmp_path / "curves.csv"
    curves.to_csv(path, index=False)
    code = main(
        [
            "curve",
            str(path),
            "--upto",
            "0.5",
            "--run",
            "run1",
            "--draws",
            "150",
            "--tune",
            "200",
            "--sensitivity",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data["ci_prob"] == 0.9 and len(data["runs"]) == 1
    assert data["band_includes"] == {"credible": ["parameters"], "predictive": ["parameters", "noise"]}
    record = data["runs"][0]
    assert record["run"] == "run1" and set(record["final"]) == {
        *("median", "pred_lower", "pred_upper"),
        *("prior_sensitivity", "prior_driven", "prior_note"),  # of the law's final loss, as predict gives it
    }
    final = bs.forecast_curves(fit, load_checkpoints(curves), upto=0.5, run="run1").attrs["final_points"]
    assert record["final"]["prior_sensitivity"] == pytest.approx(
        bs.forecast_sensitivity(fit, final)["prior_sensitivity"].iloc[0], rel=1e-9
    )
    assert {"upto_step", "horizon_step", "p_improve", "saturation_step"} <= set(record)
    assert main(["curve", str(path), "--upto", "0.5", "--run", "run1", "--quiet"]) == 0
    assert asked["progressbar"] is False
    text = capsys.readouterr().out  # the total drop and the per-1,000-step gain are told apart
    assert f"P(loss falls by more than 0.01 between steps {record['upto_step']:.0f} and " in text
    assert "each further 1,000 steps gains less than 0.01" in text
    assert "bands: 90% intervals; law: parameters only, no extrapolation discrepancy; run: parameters + noise" in text
    assert main(["curve", str(path), "--upto", "0.5", "--run", "nope", "--draws", "20", "--tune", "20"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_draws_where_the_curve_law_breaks_down_are_named_and_left_out(curve_fit):
    import copy
    import warnings

    from bayescale.errors import ExtrapolationWarning

    runs, fit = curve_fit
    broken = copy.copy(fit)
    broken.idata = fit.idata.copy()
    posterior = fit.idata["posterior"].to_dataset()
    floor = posterior["E"].copy()
    floor[:, :30] = -50.0  # 30 of 300 draws per chain: the law is negative everywhere for them
    broken.idata["posterior"] = posterior.assign(E=floor)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = forecast_curves(broken, runs, upto=0.5)
    assert [w.category for w in caught] == [ExtrapolationWarning], [str(w.message) for w in caught]
    assert "run run0 at step" in str(caught[0].message) and "10% of draws" in str(caught[0].message)
    reference = forecast_curves(fit, runs, upto=0.5)
    assert np.isfinite(out["final_median"]).all()
    np.testing.assert_allclose(out["final_median"], reference["final_median"], rtol=0.01)


@pytest.mark.slow
def test_far_forecast_warnings_name_the_run_asked_about_not_internal_grid_points(curve_fit):
    import copy
    import warnings

    from bayescale.errors import ExtrapolationWarning
    from bayescale.inference.discrepancy import Discrepancy
    from bayescale.inference.distance import last_seen_steps, observed_ranges

    runs, fit = curve_fit
    seen = runs.frame[runs.frame["step"] <= 0.5 * runs.frame.groupby("run")["step"].transform("max")]
    widened = copy.copy(fit)
    widened.discrepancy = Discrepancy(
        observed_ranges(fit.runs, fit.law.inputs),
        np.full(fit.diagnostics.n_draws, 0.01),
        pd.DataFrame(),
        0.2,
        last_seen_steps(seen),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        forecast_curves(widened, runs, upto=0.5)
    messages = [str(w.message) for w in caught if w.category is ExtrapolationWarning]
    assert len(messages) == 1 and messages[0].startswith("the forecast of run run") and "at step" in messages[0]
    assert "as do 3 other runs' forecasts" in messages[0]
