import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import fake_fit

import bayescale as bs
from bayescale.data.datasets import CHINCHILLA_TRUTH


def chinchilla(n, d, p=CHINCHILLA_TRUTH):
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def test_credible_interval_collapses_on_the_law_when_draws_agree(demo_runs):
    fit = fake_fit(demo_runs, spread=0.0)
    out = fit.predict(N=[7e10, 1e9], D=[1.4e12, 2e10])
    expected = chinchilla(np.array([7e10, 1e9]), np.array([1.4e12, 2e10]))
    np.testing.assert_allclose(out["median"], expected, rtol=1e-12)
    np.testing.assert_allclose(out["lower"], expected, rtol=1e-12)
    np.testing.assert_allclose(out["upper"], expected, rtol=1e-12)
    # the predictive interval adds Student-t noise of scale sigma on log-loss
    ratio = np.log(out["pred_upper"] / out["median"])
    assert np.all((ratio > 0.01) & (ratio < 0.05))
    assert list(out.columns) == [
        "N",
        "D",
        "C",
        "mean",
        "median",
        "lower",
        "upper",
        "pred_lower",
        "pred_upper",
        "N_vs_max",
        "D_vs_max",
        "C_vs_max",
        "D_per_N_vs_max",
        "extrapolation",
    ]
    assert out.loc[0, "N_vs_max"] == pytest.approx(7e10 / demo_runs["N"].max()) and out.loc[1, "extrapolation"] == 0
    assert out.loc[0, "C_vs_max"] == pytest.approx(6 * 7e10 * 1.4e12 / demo_runs["C"].max())


def test_predictive_interval_has_the_nominal_width_for_normal_noise(demo_runs):
    fit = fake_fit(demo_runs, likelihood="normal", values={**CHINCHILLA_TRUTH, "sigma": 0.02}, draws=5000)
    out = fit.predict(N=1e10, D=2e11, ci_prob=0.9)
    half_width = np.log(out["pred_upper"] / out["median"]).item()
    assert half_width == pytest.approx(1.6449 * 0.02, rel=0.05)


def test_intervals_widen_with_ci_prob_and_parameter_uncertainty(demo_runs):
    fit = fake_fit(demo_runs, spread=0.05)
    narrow, wide = fit.predict(N=1e11, D=2e12, ci_prob=0.5), fit.predict(N=1e11, D=2e12, ci_prob=0.95)
    assert wide["lower"].item() < narrow["lower"].item() < narrow["upper"].item() < wide["upper"].item()
    sharp = fake_fit(demo_runs, spread=0.002).predict(N=1e11, D=2e12, ci_prob=0.95)  # noise (1%) dominates
    assert sharp["pred_lower"].item() < sharp["lower"].item() < sharp["upper"].item() < sharp["pred_upper"].item()


def test_a_points_band_does_not_depend_on_the_other_points_asked_for(demo_runs):
    """Each point's noise comes from its own stream: asked alone or with others, the same band."""
    fit = fake_fit(demo_runs, spread=0.05)
    alone = fit.predict(N=1e11, D=2e12)
    together = fit.predict(N=[3e9, 1e11, 1e12], D=[6e10, 2e12, 2e13])
    for key in ("median", "lower", "upper", "pred_lower", "pred_upper"):
        assert together.loc[1, key] == alone.loc[0, key]


def test_grid_table_and_compute_inputs(demo_runs):
    fit = fake_fit(demo_runs)
    g = bs.grid(N=[1e9, 1e10, 1e11], D=[1e11, 1e12])
    assert len(g) == 6
    by_grid = fit.predict(g)
    by_compute = fit.predict(pd.DataFrame({"N": g["N"], "C": 6 * g["N"] * g["D"]}))
    np.testing.assert_allclose(by_grid["median"], by_compute["median"], rtol=1e-12)


@pytest.mark.slow
def test_large_grids_are_processed_in_blocks_with_the_same_answer(demo_runs):
    fit = fake_fit(demo_runs, spread=0.02, draws=50)
    g = bs.grid(N=np.logspace(8, 11, 90), D=np.logspace(10, 13, 50))  # 4500 points: 3 blocks
    out = fit.predict(g)
    single = fit.predict(g.iloc[[4321]])
    assert out["median"].iloc[4321] == pytest.approx(single["median"].item(), rel=1e-12)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"N": 1e9}, "needs input(s) D"),
        ({"N": 0.0, "D": 1e10}, "column 'N': must be > 0"),
        ({"N": "big", "D": 1e10}, "not numbers"),
        ({"N": 1e9, "D": 1e10, "ci_prob": 1.5}, "ci_prob must be a probability"),
        ({}, "give points to predict at"),
    ],
)
def test_bad_prediction_requests_are_explained(demo_runs, kwargs, fragment):
    fit = fake_fit(demo_runs)
    with pytest.raises(bs.BayescaleError) as info:
        fit.predict(**kwargs)
    assert fragment in str(info.value)


def test_draws_where_the_law_breaks_down_are_named_not_silently_dropped(demo_runs):
    from bayescale.errors import ExtrapolationWarning

    fit = fake_fit(demo_runs, spread=0.0)
    fit.law = bs.Law.from_formula(
        "E - A / N**alpha", priors={"E": "LogNormal(0.5, 0.5)", "A": "LogNormal(6, 2)", "alpha": "LogNormal(-1.1, 0.5)"}
    )
    draws = fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]
    # E - A / N**alpha < 0 for small N: every draw breaks down at N = 1e3, none at N = 1e12
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fit.predict(N=[1e3, 1e12])
    assert [w.category for w in caught] == [ExtrapolationWarning]  # one warning in the user's terms, no NumPy noise
    assert "non-positive or undefined loss for some posterior draws at 1 point(s) (N=1e+03: 100% of draws)" in str(
        caught[0].message
    )
    assert np.isnan(out.loc[0, "median"]) and np.isfinite(out.loc[1, "median"]) and draws > 0


def test_new_run_draws_can_be_limited_to_the_points_that_need_them(demo_runs):
    """loss_draws(new_runs=mask): the same draws at the masked points, NaN elsewhere; the law's draws unchanged."""
    from bayescale.forecast.predict import loss_draws

    fit = fake_fit(demo_runs, spread=0.05)
    points = bs.grid(N=[1e9, 3e9, 1e10], D=[2e10, 2e11])
    mask = np.array([False, True, False, False, True, False])
    ((mu_all, y_all),) = loss_draws(fit, points, 3)
    ((mu, y),) = loss_draws(fit, points, 3, new_runs=mask)
    np.testing.assert_array_equal(mu, mu_all)
    np.testing.assert_array_equal(y[:, mask], y_all[:, mask])
    assert np.isnan(y[:, ~mask]).all()
