import json

import numpy as np
import pandas as pd
import pytest
from conftest import fake_fit

import bayescale as bs
from bayescale.cli.main import main
from bayescale.fitting.result import Fit
from bayescale.forecast.plan import chinchilla_closed_form, frontier_exponents, optimal_allocation
from bayescale.forecast.predict import flat_draws


@pytest.fixture(scope="module")
def spread_fit(demo_runs):
    return fake_fit(demo_runs, spread=0.05, draws=300)


@pytest.mark.slow
def test_numeric_optimum_matches_the_closed_form_on_every_draw(spread_fit):
    for flops in (1e21, 5.88e23, 1e26):
        numeric = optimal_allocation(spread_fit, flops)
        n_star, d_star = chinchilla_closed_form(flat_draws(spread_fit), flops)
        np.testing.assert_allclose(numeric["N_opt"], n_star, rtol=1e-3)
        np.testing.assert_allclose(numeric["D_opt"], d_star, rtol=1e-3)
        assert not numeric["at_edge"].any()


@pytest.mark.slow
def test_plan_intervals_and_frontier_exponent(spread_fit):
    result = spread_fit.plan(5.88e23, ci_prob=0.8)
    for key in ("N_opt", "D_opt", "tokens_per_param", "loss_opt"):
        assert result[key]["lower"] < result[key]["median"] < result[key]["upper"]
    truth = bs.datasets.CHINCHILLA_TRUTH
    a = frontier_exponents(spread_fit)["a"]
    exact = truth["beta"] / (truth["alpha"] + truth["beta"])
    assert np.median(a) == pytest.approx(exact, abs=0.02)


@pytest.mark.parametrize(
    "flops, fragment",
    [
        (0.0, "positive, finite"),
        (-1e20, "positive, finite"),
        (float("inf"), "positive, finite"),
        (float("nan"), "positive, finite"),
        (1e5, "too small"),
    ],
)
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
    assert data["flops"] == 5.88e23 and set(data) == {
        "flops",
        "ci_prob",
        "N_opt",
        "D_opt",
        "tokens_per_param",
        "loss_opt",
        "flops_vs_largest_run",
        "run_at_plan",
        "band_includes",
        "allocation_calibration",
        "sensitivity",
    }
    assert data["band_includes"] == {  # a fit without the extrapolation discrepancy says so
        "allocation": ["parameters"],
        "credible": ["parameters"],
        "predictive": ["parameters", "noise"],
    }
    assert main(["plan", str(path), "--flops", "-1"]) == 2
    assert "positive, finite" in capsys.readouterr().err


from bayescale.forecast.plan import Budget, candidates, frontier, marginal_value  # noqa: E402


def test_a_custom_cost_that_is_6ND_gives_the_same_answer(spread_fit):
    default = spread_fit.plan(1e22)
    same = spread_fit.plan(1e22, cost="3*N*D + 3*D*N")
    for key in ("N_opt", "D_opt", "loss_opt"):
        assert same[key]["median"] == pytest.approx(default[key]["median"], rel=1e-3)
    assert same["cost"] == "3*N*D + 3*D*N"


def test_inference_cost_pushes_towards_smaller_models(spread_fit):
    """Serving 1e13 tokens costs 2N per token: the optimum trains a smaller model on more tokens."""
    train_only = spread_fit.plan(1e23)
    with_serving = spread_fit.plan(1e23, cost="6*N*D + 2*N*1e13")
    assert with_serving["N_opt"]["median"] < 0.8 * train_only["N_opt"]["median"]
    assert with_serving["tokens_per_param"]["median"] > train_only["tokens_per_param"]["median"]


@pytest.mark.parametrize(
    "cost, fragment",
    [
        ("6*N*D + 1e30", "never equals the budget"),
        ("6*N/D", "must be positive and grow with D"),
        ("6*N*D*K", "unknown name.*'K'"),
        ("__import__('os')", "not allowed|unknown"),
    ],
)
def test_bad_cost_functions_are_refused(spread_fit, cost, fragment):
    with pytest.raises(bs.BayescaleError, match=fragment):
        spread_fit.plan(1e22, cost=cost)


def test_frontier_table_is_monotone_in_compute(spread_fit):
    table = frontier(spread_fit, [1e20, 1e22, 1e24], ci_prob=0.8)
    assert list(table["flops"]) == [1e20, 1e22, 1e24]
    assert table["N_opt_median"].is_monotonic_increasing and table["loss_opt_median"].is_monotonic_decreasing
    assert (table["N_opt_lower"] < table["N_opt_median"]).all() and (table["N_opt_median"] < table["N_opt_upper"]).all()


def test_candidates_rank_the_compute_optimal_option_first(spread_fit):
    flops = 1e23
    opt = spread_fit.plan(flops)
    n = opt["N_opt"]["median"]
    options = [
        {"N": n, "D": flops / (6 * n)},
        {"N": n / 8, "D": 8 * flops / (6 * n)},
        {"N": 8 * n, "D": flops / (48 * n)},
    ]
    table = candidates(spread_fit, options)
    assert table["p_best"].sum() == pytest.approx(1.0)
    assert table["p_best"].idxmax() == 0 and table["regret_vs_best"].idxmin() == 0
    assert (table["regret_vs_optimum"] >= 0).all()  # nothing beats the per-draw optimum at the same cost
    assert table["regret_vs_optimum"].idxmin() == 0 and (table.loc[1:, "regret_vs_optimum"] > 0.02).all()
    capped = candidates(spread_fit, options, budget=Budget.make(unique_tokens=options[0]["D"]))
    assert list(capped["feasible"]) == [True, False, True] and np.isnan(capped.loc[1, "regret_vs_optimum"])
    assert (capped["regret_vs_optimum"].dropna() >= -1e-9).all()
    with pytest.raises(bs.BayescaleError, match="candidate N must be positive.*rows 1 "):
        candidates(spread_fit, [{"N": -1, "D": 1e10}])


def test_marginal_value_at_an_undertrained_model_favours_data(spread_fit):
    m = marginal_value(spread_fit, 7e10, 1e10)  # 0.14 tokens per parameter: starved of data
    assert m["drop_double_D"]["median"] > m["drop_double_N"]["median"] > 0
    assert m["p_double_N_better"] < 0.05
    assert 0 < m["diminishing_ratio"]["median"] < 1  # each 10x of compute buys less than the previous one
    truth = bs.datasets.CHINCHILLA_TRUTH
    loss = lambda n, d: truth["E"] + truth["A"] / n ** truth["alpha"] + truth["B"] / d ** truth["beta"]  # noqa: E731
    assert m["drop_double_D"]["median"] == pytest.approx(loss(7e10, 1e10) - loss(7e10, 2e10), rel=0.05)


def test_data_limited_plan_without_a_repetition_law_caps_tokens(spread_fit):
    free = spread_fit.plan(1e24)
    cap = free["D_opt"]["median"] / 4
    limited = spread_fit.plan(1e24, unique_tokens=cap)
    assert limited["D_opt"]["upper"] <= cap * 1.001 and limited["p_data_limited"] > 0.8
    assert limited["N_opt"]["median"] > 3 * free["N_opt"]["median"]
    assert limited["loss_opt"]["median"] > free["loss_opt"]["median"]
    assert limited["data_constraint"] == "D <= unique tokens"
    with pytest.raises(bs.BayescaleError, match="unique_tokens must be a positive"):
        spread_fit.plan(1e24, unique_tokens=-5)


def test_data_limited_plan_with_the_data_constrained_law_repeats_data(demo_runs):
    frame = demo_runs.frame.assign(U=demo_runs.frame["D"])
    values = {**bs.datasets.CHINCHILLA_TRUTH, "Rstar": 15.4}
    fit = fake_fit(frame, law="data_constrained", values=values, spread=0.02)
    free = fit.plan(1e24)
    cap = free["D_opt"]["median"] / 4
    limited = fit.plan(1e24, unique_tokens=cap)
    assert limited["data_constraint"] == "law (repetition-aware)"
    assert limited["D_opt"]["median"] > 1.5 * cap  # repeating the data beats stopping at the cap
    capped = fake_fit(demo_runs, spread=0.02).plan(1e24, unique_tokens=cap)
    assert limited["loss_opt"]["median"] < capped["loss_opt"]["median"] + 1e-3


def test_cli_plan_with_candidates_marginal_and_frontier(spread_fit, tmp_path, capsys):
    path = spread_fit.save(tmp_path / "fit.nc")
    code = main(
        [
            "plan",
            str(path),
            "--flops",
            "1e23",
            "--unique-tokens",
            "5e11",
            "--candidate",
            "N=3e10,D=5e11",
            "--candidate",
            "N=1e11,D=1.6e11",
            "--marginal",
            "N=3e10,D=5e11",
            "--frontier",
            "1e21,1e23",
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["candidates"]) == 2 and len(data["frontier"]) == 2 and "drop_double_N" in data["marginal"]
    assert data["unique_tokens"] == 5e11 and 0 <= data["p_data_limited"] <= 1
    assert main(["plan", str(path), "--flops", "1e23", "--marginal", "N=3e10"]) == 2
    assert "give exactly N=...,D=..." in capsys.readouterr().err


def test_plan_and_candidates_give_the_bands_predict_gives(demo_runs):
    """The same point has the same predictive band in plan, candidates and predict; costs and reach are flagged."""
    from bayescale.inference.discrepancy import Discrepancy
    from bayescale.inference.distance import observed_ranges

    fit = fake_fit(demo_runs, spread=0.05, draws=300)
    fit.discrepancy = Discrepancy(
        observed_ranges(fit.runs, fit.law.inputs),
        np.full(fit.diagnostics.n_draws, 0.02),
        __import__("pandas").DataFrame(),
        5.0,
    )
    flops = 1e24
    result = fit.plan(flops)
    run = result["run_at_plan"]
    direct = fit.predict(N=run["N"], D=run["D"]).iloc[0]
    assert run["N"] == pytest.approx(result["N_opt"]["median"])
    for key in ("median", "pred_lower", "pred_upper", "extrapolation"):
        assert run[key] == pytest.approx(direct[key])
    for stat in ("median", "lower", "upper"):  # the loss at the optimum is predict's credible band there
        assert result["loss_opt"][stat] == direct[stat]
    law_only = np.quantile(optimal_allocation(fit, flops)["loss_opt"], [0.05, 0.95])
    assert result["loss_opt"]["upper"] - result["loss_opt"]["lower"] > 2 * (law_only[1] - law_only[0])
    assert result["band_includes"]["credible"] == ["parameters", "extrapolation discrepancy"]
    assert result["band_includes"]["allocation"] == ["parameters", "extrapolation discrepancy"]
    assert result["flops_vs_largest_run"] == pytest.approx(flops / (6 * demo_runs["N"] * demo_runs["D"]).max())
    table = candidates(
        fit, [{"N": run["N"], "D": run["D"]}, {"N": 2 * run["N"], "D": flops / (6 * run["N"])}], flops=flops
    )
    assert list(table["over_budget"]) == [run["N"] * run["D"] * 6 > flops, True]
    assert table.loc[0, "pred_lower"] == pytest.approx(direct["pred_lower"])
    assert table.loc[0, "pred_upper"] == pytest.approx(direct["pred_upper"])
    for stat in ("median", "lower", "upper"):  # the law's band too, discrepancy included, as predict prints it
        assert table.loc[0, f"loss_{stat}"] == pytest.approx(direct[stat])


def test_plan_frontier_marginal_and_predict_print_one_band_at_one_point(demo_runs, tmp_path, capsys):
    """plan's loss at the optimum, the frontier's L* and marginal's loss are predict's band, discrepancy included.

    Before, plan printed the law's band without the discrepancy (2.17 [2.125, 2.204] on Gadre's rpj at
    20x the largest run) where predict printed 2.174 [2.090, 2.239] at the same point.
    """
    from bayescale.inference.discrepancy import Discrepancy
    from bayescale.inference.distance import observed_ranges

    fit = fake_fit(demo_runs, spread=0.05, draws=300)
    kappa = np.full((2, 300), 0.02)  # saved as a calibrated fit saves it: settings and posterior draws
    settings = {
        **fit.settings,
        "extrapolation": Discrepancy(
            observed_ranges(fit.runs, fit.law.inputs), kappa, pd.DataFrame(), 5.0
        ).to_settings(),
    }
    fit.idata["posterior"] = fit.posterior.assign(kappa=(("chain", "draw"), kappa))
    fit = Fit(fit.law, fit.likelihood, fit.runs, fit.idata, settings, fit.diagnostics)
    assert fit.discrepancy is not None
    path = fit.save(tmp_path / "fit.nc")
    flops = 2e22
    assert main(["plan", str(path), "--flops", str(flops), "--frontier", f"1e21,{flops}", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    n, d = plan["N_opt"]["median"], plan["D_opt"]["median"]
    assert main(["predict", str(path), "--at", f"N={n!r},D={d!r}", "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    row = predicted["predictions"][0]
    assert predicted["band_includes"] == {k: v for k, v in plan["band_includes"].items() if k != "allocation"}
    assert "extrapolation discrepancy" in plan["band_includes"]["credible"] and row["extrapolation"] > 1
    frontier_row = plan["frontier"][1]
    for stat in ("median", "lower", "upper"):
        assert plan["loss_opt"][stat] == pytest.approx(row[stat], rel=1e-12)
        assert frontier_row[f"loss_opt_{stat}"] == pytest.approx(row[stat], rel=1e-12)
    assert plan["run_at_plan"]["pred_lower"] == pytest.approx(row["pred_lower"], rel=1e-12)
    margin = marginal_value(fit, n, d)
    assert margin["loss"] == pytest.approx({k: row[k] for k in ("median", "lower", "upper")}, rel=1e-12)
    assert margin["band_includes"] == {"credible": ["parameters", "extrapolation discrepancy"]}
    # the text says what each band includes, and shows the same numbers as predict's text
    assert main(["plan", str(path), "--flops", str(flops)]) == 0
    text = capsys.readouterr().out
    assert (
        "bands: 90% intervals; N*, D*, tokens per parameter: parameters + extrapolation discrepancy; "
        "loss: parameters + extrapolation discrepancy; a run: parameters + extrapolation discrepancy + noise"
    ) in text.replace("\n  ", " ")
    # saved before the allocation's discrepancy existed: its tau comes from the prior, and the text says so
    assert plan["allocation_calibration"]["source"] == "prior only"
    joined = text.replace("\n  ", " ")
    assert "N* (and D* with it) errs by tau" in joined and "from its prior alone" in joined
    assert f"{row['median']:.4g} [{row['lower']:.4g}, {row['upper']:.4g}]" in text
