"""Laws for the limits of scaling: BNSL breaks, the data-constrained law, priors relative to the data."""

import numpy as np
import pandas as pd
import pytest
from conftest import fake_fit

import bayescale as bs
from bayescale.errors import DataError, FormulaError
from bayescale.forecast.derived import break_table, derived_draws
from bayescale.laws.card import Law
from bayescale.laws.priors import Prior, ScaledPrior

BNSL_X = [160, 192, 256, 320, 384, 448, 480, 512, 544, 576, 608, 640, 672, 736, 800, 864, 928]
BNSL_Y = [
    2.1381,
    2.1181,
    2.0896,
    2.0699,
    2.0540,
    2.0384,
    2.0281,
    2.0050,
    1.9558,
    1.8631,
    1.7089,
    1.5064,
    1.2975,
    0.9656,
    0.7586,
    0.6477,
    0.5570,
]


def test_prior_text_may_refer_to_the_observed_range_and_is_bound_at_fit_time():
    prior = Prior.parse("LogNormal(mu=log(X_max), sigma=2)")
    assert isinstance(prior, ScaledPrior) and prior.columns == {"X"}
    bound = prior.renamed({"X": "C"}).bind({"C_min": 1.0, "C_max": 1e21})
    assert bound == Prior("LogNormal", mu=np.log(1e21), sigma=2.0)
    with pytest.raises(FormulaError, match="found name.*Y_mean"):
        prior.bind({"X_max": 3.0}) and Prior.parse("Normal(mu=Y_mean, sigma=1)")


def test_bnsl_cards_bind_the_break_prior_to_the_input_they_are_fitted_on():
    law = bs.get_law("bnsl_1", {"X": "C"})
    assert law.breaks == {"d1": "C"} and str(law.params["d1"].prior) == "LogNormal(mu=log(C_max), sigma=2.0)"
    bound = law.bind_data({"C": np.array([1e18, 1e21])})
    assert bound.params["d1"].prior.median() == pytest.approx(1e21)
    two = bs.get_law("bnsl_2")
    assert set(two.breaks) == {"d1", "d2"} and "slope_after" in two.derived


def test_bnsl_formula_is_the_papers_equation():
    law = bs.get_law("bnsl_1")
    p = {"a": 0.3, "b": 5.0, "c0": 0.1, "c1": 2.0, "d1": 500.0, "f1": 0.2}
    x = np.array([100.0, 500.0, 5000.0])
    expected = p["a"] + p["b"] * x ** -p["c0"] * (1 + (x / p["d1"]) ** (1 / p["f1"])) ** (-p["c1"] * p["f1"])
    np.testing.assert_allclose(law.formula.numpy({**p, "X": x}), expected)
    # far beyond the break the log-log slope of (loss - a) is -(c0 + c1)
    far = np.array([1e7, 1e8])
    reducible = law.formula.numpy({**p, "X": far}) - p["a"]
    assert np.diff(np.log(reducible))[0] / np.log(10) == pytest.approx(-(p["c0"] + p["c1"]), rel=1e-3)


@pytest.mark.slow
def test_derived_quantities_and_break_probability_from_draws():
    runs = pd.DataFrame({"X": BNSL_X[:14], "loss": BNSL_Y[:14]})
    values = {"a": 0.4, "b": 2.3, "c0": 0.05, "c1": 5.0, "d1": 610.0, "f1": 0.06, "sigma": 0.001, "nu": 10.0}
    fit = fake_fit(runs, "bnsl_1", values, spread=0.1)
    derived = derived_draws(fit)
    np.testing.assert_allclose(derived["slope_after"], -(fit.posterior["c0"] + fit.posterior["c1"]))
    breaks = break_table(fit, 0.9)
    d1 = fit.posterior["d1"].to_numpy().ravel()
    assert breaks.loc["d1", "observed_max"] == 736
    assert breaks.loc["d1", "p_beyond_data"] == pytest.approx(np.mean(d1 > 736))
    assert 0 < breaks.loc["d1", "p_beyond_data"] < 0.2
    table = fit.summary()
    assert {"slope_before", "slope_after"} <= set(table.index)


def test_card_errors_for_derived_quantities_and_breaks():
    base = {
        "name": "t",
        "inputs": ["X"],
        "formula": "a * X**(-b)",
        "params": {"a": {"prior": "LogNormal(0, 1)"}, "b": {"prior": "LogNormal(0, 1)"}},
    }
    with pytest.raises(FormulaError, match="derived quantity 'q'.*unknown name.*'z'"):
        Law.from_dict({**base, "derived": {"q": {"formula": "a + z"}}})
    with pytest.raises(FormulaError, match="break location 'd9' is neither"):
        Law.from_dict({**base, "breaks": {"d9": "X"}})
    with pytest.raises(FormulaError, match="refers to the range of N, which is not an input"):
        Law.from_dict({**base, "params": {**base["params"], "a": {"prior": "LogNormal(mu=log(N_max), sigma=1)"}}})


def test_data_constrained_law_reduces_to_chinchilla_without_repetition():
    dc, chin = bs.get_law("data_constrained"), bs.get_law("chinchilla")
    p = {**bs.datasets.CHINCHILLA_TRUTH, "Rstar": 15.4}
    n, d = np.array([1e9, 1e9]), np.array([2e10, 2e10])
    no_repeat = dc.formula.numpy({**p, "N": n, "D": d, "U": d})
    np.testing.assert_allclose(no_repeat, chin.formula.numpy({**p, "N": n, "D": d}))
    # 4 epochs of the same data are worth less than 4x fresh data, but more than 1x
    repeated = dc.formula.numpy({**p, "N": n[:1], "D": 4 * d[:1], "U": d[:1]})
    fresh = chin.formula.numpy({**p, "N": n[:1], "D": 4 * d[:1]})
    once = chin.formula.numpy({**p, "N": n[:1], "D": d[:1]})
    assert fresh < repeated < once


def test_unique_tokens_cannot_exceed_tokens():
    frame = pd.DataFrame({"N": [1e9, 1e9], "D": [1e10, 1e10], "U": [5e9, 2e10], "loss": [3.0, 3.1]})
    with pytest.raises(DataError, match="'U' .*cannot exceed D.*rows 2 "):
        bs.load_runs(frame)


def test_datablations_loader(tmp_path):
    from conftest import shared_file

    runs = bs.datasets.load_datablations(shared_file("colpret-curves/datablations_contour_losses.csv"))
    assert len(runs) == 229 and (runs["U"] <= runs["D"] * (1 + 1e-9)).all()
    assert runs.frame["epochs"].max() > 100  # heavily repeated runs are there
