import json

import numpy as np
import pytest

import bayescale as bs
from bayescale.cli import main
from bayescale.plan import chinchilla_closed_form, frontier_exponents, optimal_allocation
from bayescale.predict import flat_draws
from conftest import fake_fit


@pytest.fixture(scope="module")
def spread_fit(demo_runs):
    return fake_fit(demo_runs, spread=0.05, draws=300)


def test_numeric_optimum_matches_the_closed_form_on_every_draw(spread_fit):
    for flops in (1e21, 5.88e23, 1e26):
        numeric = optimal_allocation(spread_fit, flops)
        n_star, d_star = chinchilla_closed_form(flat_draws(spread_fit), flops)
        np.testing.assert_allclose(numeric["N_opt"], n_star, rtol=1e-3)
        np.testing.assert_allclose(numeric["D_opt"], d_star, rtol=1e-3)
        assert not numeric["at_edge"].any()


def test_plan_intervals_and_frontier_exponent(spread_fit):
    result = spread_fit.plan(5.88e23, ci_prob=0.8)
    for key in ("N_opt", "D_opt", "tokens_per_param", "loss_opt"):
        assert result[key]["lower"] < result[key]["median"] < result[key]["upper"]
    truth = bs.datasets.CHINCHILLA_TRUTH
    a = frontier_exponents(spread_fit)["a"]
    exact = truth["beta"] / (truth["alpha"] + truth["beta"])
    assert np.median(a) == pytest.approx(exact, abs=0.02)


@pytest.mark.parametrize("flops, fragment", [(0.0, "positive, finite"), (-1e20, "positive, finite"),
                                              (float("inf"), "positive, finite"), (float("nan"), "positive, finite"),
                                              (1e5, "too small")])
def test_bad_budgets_are_refused(spread_fit, flops, fragment):
    with pytest.raises(bs.BayescaleError, match=fragment):
        spread_fit.plan(flops)


def test_plan_needs_n_and_d(demo_runs):
    fit = fake_fit(demo_runs, law="kaplan_n", values={"Nc": 8.8e13, "alphaN": 0.076})
    with pytest.raises(bs.BayescaleError, match="planning needs a law in N and D; law 'kaplan_n' has inputs N"):
        fit.plan(1e23)


def test_a_law_with_no_optimum_is_explained(demo_runs):
    # with a negligible data term the loss keeps falling as N grows along the budget
    fit = fake_fit(demo_runs, values={**bs.datasets.CHINCHILLA_TRUTH, "B": 1e-12})
    with pytest.raises(bs.BayescaleError, match="no compute-optimal size"):
        fit.plan(1e23)


def test_cli_plan_json(spread_fit, tmp_path, capsys):
    path = spread_fit.save(tmp_path / "fit.nc")
    assert main(["plan", str(path), "--flops", "5.88e23", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["flops"] == 5.88e23 and set(data) == {"flops", "ci_prob", "N_opt", "D_opt", "tokens_per_param", "loss_opt"}
    assert main(["plan", str(path), "--flops", "-1"]) == 2
    assert "positive, finite" in capsys.readouterr().err
