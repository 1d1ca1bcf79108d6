"""Which run next (`bs.design`): known answers on a real fit, the batch, costs, the bad inputs and the command."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import fake_fit, shared_file
from test_pooling import two_families

import bayescale as bs
from bayescale.cli.main import main
from bayescale.errors import BayescaleError, DataError, FormulaError
from bayescale.forecast.design import posterior_after, weighted_variance
from bayescale.laws.likelihood import LIKELIHOODS
from bayescale.viz.design_plots import report_parts

TARGET = {"N": 7e10, "D": 1.4e12}
#: near the target, beyond the runs' compute: a refit with it removes about 21% of the target's variance
#: (benchmarks/design_check.py, demo)
NEAR = {"N": 1e10, "D": 2e11}
#: a duplicate of a run in the middle of the demo's IsoFLOP grid: the data already pin the law there
INSIDE = {"N": 2.8571e8, "D": 5.83333e10}


@pytest.fixture(scope="module")
def demo_fit():
    """A real (short) fit of the demo sweep, without the extrapolation discrepancy: about 6 s."""
    return bs.fit(
        bs.datasets.demo_runs_path(),
        "chinchilla",
        draws=600,
        tune=500,
        chains=2,
        extrapolation="none",
        progressbar=False,
    )


@pytest.fixture(scope="module")
def quick_fit(demo_runs):
    return fake_fit(demo_runs, spread=0.03)


def test_a_run_near_the_target_beats_a_cheaper_one_the_data_already_pin(demo_fit):
    pool = pd.DataFrame([{**INSIDE, "price": 1.0}, {**NEAR, "price": 2.0}])
    result = bs.design(demo_fit, pool, [TARGET], budget=2.0, cost="price", batch=1)
    (first,) = result.chosen.to_dict("records")
    assert first["row"] == 2 and first["N"] == NEAR["N"]
    alone = bs.design(demo_fit, pool.iloc[[0]], [TARGET], budget=2.0, cost="price", batch=1).chosen.iloc[0]
    assert alone["share"] < 0.05 < 0.1 < first["share"]  # the inside run tells little, the near one much
    assert first["value"] > 2 * alone["value"]
    targets = result.targets.iloc[0]
    assert targets["sd_expected"] < targets["sd_now"]
    assert targets["upper_expected"] - targets["lower_expected"] < targets["upper_now"] - targets["lower_now"]


def test_a_duplicate_of_a_chosen_run_gains_less_in_the_same_batch(demo_fit):
    pool = pd.DataFrame([NEAR, NEAR])
    both = bs.design(demo_fit, pool, [TARGET], budget=1e30, batch=2, outcomes=128).chosen
    assert sorted(both["row"]) == [1, 2]
    second = int(both["row"].iloc[1])
    alone = bs.design(demo_fit, pool.iloc[[second - 1]], [TARGET], budget=1e30, batch=1, outcomes=128).chosen
    # what its twin already told is not counted twice (a Gaussian with the first run's 21% says 0.65x)
    assert both["gain"].iloc[1] < 0.8 * alone["gain"].iloc[0]
    assert both["gain"].iloc[1] < both["gain"].iloc[0]


def test_value_drops_as_cost_rises_and_the_budget_stops_the_batch(demo_fit):
    pool = pd.DataFrame([NEAR, {"N": 5e9, "D": 2e11}, {"N": 1e9, "D": 1e11}])
    values = [
        bs.design(demo_fit, pool.iloc[[0]], [TARGET], budget=1e30, cost=f"{k}*6*N*D", batch=1).chosen.iloc[0]
        for k in (1, 3)
    ]
    assert values[0]["gain"] == pytest.approx(values[1]["gain"])
    assert values[1]["value"] == pytest.approx(values[0]["value"] / 3)
    costs = 6 * pool["N"] * pool["D"]
    budget = float(costs.sort_values().iloc[:2].sum())
    chosen = bs.design(demo_fit, pool, [TARGET], budget=budget, batch=3).chosen
    assert len(chosen) <= 2 and chosen["cost"].sum() <= budget
    assert chosen["spent"].iloc[-1] == pytest.approx(chosen["cost"].sum())


def test_reweighting_the_posterior_by_an_observed_run(demo_fit):
    near = posterior_after(demo_fit, pd.DataFrame([{**NEAR, "loss": 2.13}]), [TARGET]).iloc[0]
    assert near["var_after"] < 0.9 * near["var_now"] and near["ess"] > 100
    with pytest.raises(DataError, match="'loss' column"):
        posterior_after(demo_fit, pd.DataFrame([NEAR]), [TARGET])


def test_weighted_variance_is_the_sample_variance_under_equal_weights():
    values = np.random.default_rng(0).normal(size=(50, 2))
    var, ess = weighted_variance(np.zeros((1, 50)), values)
    np.testing.assert_allclose(var[0], values.var(axis=0, ddof=1))
    assert ess[0] == pytest.approx(50)


def test_weighted_variance_of_stacked_weights_is_each_rows():
    rng = np.random.default_rng(1)
    log_w, values = rng.normal(size=(3, 4, 50)), rng.normal(size=(50, 2))
    var, ess = weighted_variance(log_w, values)
    assert var.shape == (3, 4, 2) and ess.shape == (3, 4)
    for i in range(3):
        row_var, row_ess = weighted_variance(log_w[i], values)
        np.testing.assert_allclose(var[i], row_var)
        np.testing.assert_allclose(ess[i], row_ess)
    w = np.exp(log_w[1, 2]) / np.exp(log_w[1, 2]).sum()
    mean = w @ values
    expected = (w @ (values - mean) ** 2) / (1 - np.sum(w * w))
    np.testing.assert_allclose(var[1, 2], expected)


# -- targets beyond points: a budget's optimum, a best learning rate --------------------------------
def _share(fit, candidate: dict, target: dict) -> float:
    """The share of the target's measure one candidate alone is expected to remove (0 when it removes none)."""
    chosen = bs.design(fit, [candidate], [target], budget=1.0, cost="1", batch=1).chosen
    return float(chosen["share"].iloc[0]) if len(chosen) else 0.0


def test_a_budget_target_wants_the_isoflop_slope_a_point_target_the_optimum_itself(demo_fit):
    at22, at23 = bs.plan(demo_fit, 1e22), bs.plan(demo_fit, 1e23)
    n22, d22 = at22["N_opt"]["median"], at22["D_opt"]["median"]
    frontier, slope, tiny = {"N": n22, "D": d22}, {"N": n22 / 8, "D": d22 * 8}, {"N": 1e7, "D": 2e8}
    budget, optimum = {"C": 1e23}, {"N": at23["N_opt"]["median"], "D": at23["D_opt"]["median"]}
    result = bs.design(demo_fit, [frontier, slope, tiny], [budget], budget=1.0, cost="1", batch=1)
    assert result.chosen["row"].tolist() == [2]  # off the optimum along the IsoFLOP curve: where N* shows
    # a run at the 1e22 optimum tells the loss there, hardly where the optimum lies: the kind decides
    assert _share(demo_fit, frontier, budget) < 0.03 < 0.1 < _share(demo_fit, frontier, optimum)
    assert _share(demo_fit, tiny, budget) < 0.03 < 0.08 < result.chosen["share"].iloc[0]
    n_opt, d_opt = result.targets.to_dict("records")
    assert (n_opt["kind"], n_opt["quantity"], d_opt["quantity"]) == ("optimum", "N_opt", "D_opt")
    for row, key in ((n_opt, "N_opt"), (d_opt, "D_opt")):  # in N* and D* units, as plan gives them
        assert row["median"] == pytest.approx(at23[key]["median"], rel=1e-6)
        assert [row["lower_now"], row["upper_now"]] == pytest.approx([at23[key]["lower"], at23[key]["upper"]], rel=2e-3)
        assert (
            row["sd_expected"]
            < row["sd_now"]
            == pytest.approx(np.log(at23[key]["upper"] / at23[key]["lower"]) / 3.29, rel=0.2)
        )
    assert "log N* and log D*" in result.measure and "log-loss" not in result.measure


@pytest.fixture(scope="module")
def lr_fit():
    """chinchilla_lr with hand-written draws around the tuning sweep's truth (no sampling)."""
    truth = {k: bs.datasets.TUNING_TRUTH[k] for k in bs.get_law("chinchilla_lr").param_names}
    return fake_fit(bs.datasets.synthetic_tuning_sweep(), "chinchilla_lr", values=truth, spread=0.03)


def test_a_best_lr_target_wants_a_run_on_the_basins_slope_a_loss_target_one_at_its_bottom(lr_fit):
    point = {"N": 1e9, "D": 2e10}
    tuned = bs.tune(lr_fit, point)
    best = float(tuned["lr_opt_median"].iloc[0])
    bottom, slope = {**point, "lr": best}, {**point, "lr": 4 * best}
    target = {**point, "lr": "best"}
    assert _share(lr_fit, bottom, target) < 0.01 < 0.05 < _share(lr_fit, slope, target)
    assert bs.design(lr_fit, [bottom, slope], [target], budget=1.0, cost="1", batch=1).chosen["row"].tolist() == [2]
    assert bs.design(lr_fit, [bottom, slope], [bottom], budget=1.0, cost="1", batch=1).chosen["row"].tolist() == [1]
    (row,) = bs.design(lr_fit, [slope], [target], budget=1.0, cost="1", batch=1).targets.to_dict("records")
    assert (row["kind"], row["quantity"], row["N"]) == ("best", "lr_opt", 1e9) and "lr" not in row
    assert row["median"] == pytest.approx(best, rel=1e-6)  # lr*, per draw as tune computes it
    assert [row["lower_now"], row["upper_now"]] == pytest.approx(
        [tuned["lr_opt_lower"].iloc[0], tuned["lr_opt_upper"].iloc[0]], rel=2e-3
    )
    assert row["upper_expected"] / row["lower_expected"] < row["upper_now"] / row["lower_now"]


def test_targets_of_other_kinds_refuse_a_law_that_cannot_answer_them(quick_fit, demo_runs):
    with pytest.raises(
        BayescaleError,
        match=r"^target N=1e\+09, D=2e\+10, lr=best: lr=best asks for the best value .*law "
        r"'chinchilla' has no tunable input 'lr' \(it has none; fit a law with one, such as chinchilla_lr\)$",
    ):
        bs.design(quick_fit, POOL, [{"N": 1e9, "D": 2e10, "lr": "best"}], 1e22)
    kaplan = fake_fit(demo_runs, "kaplan_n", values={"Nc": 8.8e13, "alphaN": 0.076})
    with pytest.raises(
        BayescaleError,
        match=r"^target C=1e\+23 \(the compute-optimal N\*, D\* at that budget\): planning needs a law in N and D; "
        r"law 'kaplan_n' has inputs N$",
    ):
        bs.design(kaplan, [{"N": 1e8}], [{"C": 1e23}], 1e22, cost="N")
    with pytest.raises(DataError, match=r"^target C=1e\+40 .*C must be a number of FLOPs from 1e\+10 to 1e\+29"):
        bs.design(quick_fit, POOL, [{"C": 1e40}], 1e22)
    with pytest.raises(DataError, match=r"give the budget alone, C=\.\.\., or a point with every input"):
        bs.design(quick_fit, POOL, [{"C": 1e23, "lr": 3e-4}], 1e22)


HEAVY = "6*N*D + 2*N*1e12"  # training plus inference on 1e12 tokens: favours a smaller model


@pytest.mark.filterwarnings("ignore::bayescale.errors.SamplerWarning")  # few effective draws: not the point here
def test_a_budget_targets_optimum_is_taken_under_the_designs_cost(quick_fit):
    grid = bs.grid(N=[1e8, 1e9, 1e10], D=[2e10])
    flops = bs.design(quick_fit, grid, [{"C": 1e23}], 1e24).targets
    result = bs.design(quick_fit, grid, [{"C": 1e23}], 1e24, cost=HEAVY)
    heavy = result.targets
    n, d = bs.plots.design_choice(result.to_dict()).axes[0].lines[0].get_data()  # the budget's iso-cost line
    reached = np.isfinite(d)  # beyond N = 5e10 inference alone costs more than the budget
    assert reached.sum() > 30 and np.all(n[~reached] > 5e10)
    np.testing.assert_allclose((6 * n * d + 2 * n * 1e12)[reached], 1e23, rtol=1e-9)
    planned = bs.plan(quick_fit, 1e23, cost=HEAVY)
    for key, row in zip(("N_opt", "D_opt"), heavy.to_dict("records")):  # plan's optimum under that cost
        # (the median of 400 draws' logs against plan's of the values: the middle two averaged differently)
        assert row["median"] == pytest.approx(planned[key]["median"], rel=1e-5) and row["cost_formula"] == HEAVY
    assert heavy["median"].iloc[0] < 0.8 * flops["median"].iloc[0]  # N*: 9.3e9 against 1.42e10 under 6ND
    assert flops["cost_formula"].tolist() == ["6*N*D"] * 2
    # a cost in other columns, or a constant, is no cost in N and D: 6ND, and the target says so
    for cost, pool in (("price", grid.assign(price=2.0)), ("1", grid)):
        other = bs.design(quick_fit, pool, [{"C": 1e23}], 4.0, cost=cost, batch=1).targets
        assert other["cost_formula"].tolist() == ["6*N*D"] * 2
        np.testing.assert_allclose(other["median"], flops["median"], rtol=1e-9)
    with pytest.raises(  # the runs' own cost under the formula bounds the budget: 6ND allows from 1e10
        DataError,
        match=r"C must be a number of FLOPs from 2\.\d+e\+11 to .* beyond the runs' cost under 6\*N\*D \+ 2\*N",
    ):
        bs.design(quick_fit, grid, [{"C": 5e10}], 1e24, cost=HEAVY)


@pytest.fixture(scope="module")
def pooled_fit():
    """chinchilla with E pooled by family (group b's 0.25 above a's), hand-written draws (no sampling)."""
    truth = bs.datasets.CHINCHILLA_TRUTH
    e = {"a": truth["E"], "b": truth["E"] + 0.25}
    return fake_fit(two_families(), pool={"E": "family"}, values={**truth, "E": e}, spread=0.03)


GROUP_NEEDED = (
    r"'E' is pooled by 'family': give a 'family' for every target \(seen groups: a, b; any other name is a new group\)$"
)


def test_a_pooled_fits_target_names_its_group_as_predict_asks_of_a_point(pooled_fit):
    pool = [{"N": 1e9, "D": 2e10, "family": "b"}, {"N": 3e9, "D": 6e10, "family": "a"}]
    targets = [{**TARGET, "family": group} for group in ("a", "b", "new")]
    result = bs.design(pooled_fit, pool, targets, 1e30, batch=1).targets
    assert result["family"].tolist() == ["a", "b", "new"]
    forecast = bs.predict(pooled_fit, pd.DataFrame(targets[:2]))  # a seen group: predict's band, to the digit
    for column in ("median", "lower", "upper"):
        np.testing.assert_allclose(result[f"{column}_now" if column != "median" else column][:2], forecast[column])
    assert result["median"][1] > result["median"][0] + 0.2  # b's E is 0.25 above a's
    width = result["upper_now"] - result["lower_now"]
    assert width[2] > 2 * max(width[0], width[1])  # a new group: drawn from the population
    # no group: refused, as predict refuses a point without one (it took group a's draws unsaid before)
    for given in ([TARGET], [targets[0], TARGET], pd.DataFrame([targets[0], TARGET])):
        with pytest.raises(DataError, match=r"^target N=7e\+10, D=1\.4e\+12: " + GROUP_NEEDED):
            bs.design(pooled_fit, pool, given, 1e30)
    with pytest.raises(BayescaleError, match=r"give a 'family' for every point \(seen groups: a, b;"):
        bs.predict(pooled_fit, pd.DataFrame([targets[0], TARGET]))
    with pytest.raises(DataError, match=r"^candidates: column 'family' \(the pooled fit's group\): rows 2 \("):
        bs.design(pooled_fit, pd.DataFrame([pool[0], {"N": 3e9, "D": 6e10}]), targets, 1e30)
    with pytest.raises(
        BayescaleError, match=r"^target C=1e\+23, family=a \(.*\): planning a pooled fit is not supported yet"
    ):
        bs.design(pooled_fit, pool, [{"C": 1e23, "family": "a"}], 1e30)


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_the_numpy_log_density_is_scipys(name):
    rng = np.random.default_rng(1)
    y, mu = rng.normal(size=(4, 6)), rng.normal(size=(1, 6))
    noise = {"sigma": np.abs(rng.normal(size=(4, 1))) + 0.1, "nu": np.abs(rng.normal(size=(4, 1))) + 1}
    likelihood = LIKELIHOODS[name]
    np.testing.assert_allclose(likelihood.logpdf_numpy(y, mu, noise), likelihood.logpdf(y, mu, noise), atol=1e-12)


# -- bad input ------------------------------------------------------------------------------------
POOL = [{"N": 1e8, "D": 2e9}, {"N": 1e9, "D": 2e10}]


def test_a_candidate_table_without_a_needed_column(quick_fit):
    with pytest.raises(DataError, match=r"candidate table needs column\(s\) D .*it has N, tokens.*C with N"):
        bs.design(quick_fit, pd.DataFrame({"N": [1e8], "tokens": [2e9]}), [TARGET], 1e22)


def test_a_budget_below_the_cheapest_candidate(quick_fit):
    with pytest.raises(BayescaleError, match=r"budget 1e\+15 is smaller than the cheapest candidate's cost 1\.2e\+18 "):
        bs.design(quick_fit, POOL, [TARGET], 1e15)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            {"N": -1.0, "D": 1e12},
            r"target N=-1, D=1e\+12: N must be a positive number; .* N from 1\.02e\+03 to 1\.46e\+14",
        ),
        (
            {"N": 1e20, "D": 1e12},
            r"target N=1e\+20, D=1e\+12: it lies too far from the runs along N; a target may lie "
            r"at most 1e\+04x beyond the runs' range \(1\.02e\+07 to 1\.46e\+10\): N from 1\.02e\+03 to 1\.46e\+14",
        ),
        ({"N": 1e10}, r"target: predicting needs input\(s\) D"),
    ],
)
def test_a_target_outside_any_sensible_range(quick_fit, target, message):
    with pytest.raises(DataError, match=message):
        bs.design(quick_fit, POOL, [target], 1e22)


def test_a_cost_formula_that_is_not_positive_names_the_rows(quick_fit):
    with pytest.raises(
        FormulaError,
        match=r"must be positive and finite at every candidate; it is not at rows 1 \(1 = the first data row\): "
        r"N=1e\+08, D=2e\+09 gives -8e\+17$",
    ):
        bs.design(quick_fit, POOL, [TARGET], 1e22, cost="6*N*D - 2e18")
    with pytest.raises(FormulaError, match=r"unknown name\(s\) 'price'.*allowed names are C, D, N"):
        bs.design(quick_fit, POOL, [TARGET], 1e22, cost="price")
    with pytest.raises(BayescaleError, match="batch must be a whole number of at least 1, got 0"):
        bs.design(quick_fit, POOL, [TARGET], 1e22, batch=0)


# -- the command ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_quick_fit(quick_fit, tmp_path_factory):
    return quick_fit.save(tmp_path_factory.mktemp("design") / "fit.nc")


def test_the_command_prints_the_documented_json(saved_quick_fit, tmp_path, capsys):
    pd.DataFrame([{**row, "name": f"r{i}"} for i, row in enumerate([*POOL, NEAR])]).to_csv(
        tmp_path / "pool.csv", index=False
    )
    args = ["design", str(saved_quick_fit), "--candidates", str(tmp_path / "pool.csv"), "--target", "N=7e10,D=1.4e12"]
    assert main([*args, "--target", "N=1e10,D=2e11", "--budget", "1e23", "--batch", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["chosen"]) == 2
    for run in result["chosen"]:
        assert {"N", "D", "name", "cost", "value", "gain", "rank", "row"} <= set(run)
        assert run["cost"] == pytest.approx(6 * run["N"] * run["D"])
    assert [t["N"] for t in result["target"]] == [7e10, 1e10]
    for target in result["target"]:
        low, high = target["band_now"]
        assert low < target["median"] < high and len(target["band_expected"]) == 2
    assert result["cost_formula"] == "6*N*D" and "variance" in result["measure"]
    assert main([*args, "--budget", "1e15"]) == 2
    assert "smaller than the cheapest candidate" in capsys.readouterr().err
    assert main([*args, "--budget", "1e23", "--cost", "N - 5e8"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: cost formula 'N - 5e8' must be positive") and "\n" not in error


def test_the_command_takes_a_grid_and_refuses_a_bad_one(saved_quick_fit, capsys):
    args = ["design", str(saved_quick_fit), "--target", "N=7e10,D=1.4e12", "--budget", "1e21", "--json"]
    assert main([*args, "--grid", "N=1e8:1e9:3,D=2e10"]) == 0
    assert json.loads(capsys.readouterr().out)["n_candidates"] == 3
    assert main([*args, "--grid", "N=1e8:1e9"]) == 2
    assert "give one positive value or low:high:count" in capsys.readouterr().err
    assert main([*args]) == 2
    assert "--candidates POOL.csv or --grid" in capsys.readouterr().err


def test_the_command_takes_a_budget_target_and_says_what_it_measured(saved_quick_fit, capsys):
    args = ["design", str(saved_quick_fit), "--grid", "N=1e8:1e10:3,D=2e10", "--budget", "1e22"]
    assert main([*args, "--target", "C=1e23", "--target", "N=7e10,D=1.4e12", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    kinds = [(t["target"], t["kind"], t["quantity"]) for t in result["target"]]
    assert kinds == [(1, "optimum", "N_opt"), (1, "optimum", "D_opt"), (2, "loss", "loss")]
    n_opt = result["target"][0]
    assert n_opt["C"] == 1e23 and "N" not in n_opt and "extrapolation_now" not in n_opt
    assert n_opt["band_now"][0] < n_opt["median"] < n_opt["band_now"][1] and 1e9 < n_opt["median"] < 1e12
    assert "log N* and log D*" in result["measure"] and "log-loss" in result["measure"]
    assert main([*args, "--target", "C=1e23"]) == 0
    text = capsys.readouterr().out
    assert "target C=1e+23 (its compute-optimal N* under cost 6*N*D): N* " in text and "sd of log D* " in text
    assert main([*args, "--target", "C=1e23", "--cost", HEAVY, "--budget", "1e24", "--json"]) == 0
    heavy = json.loads(capsys.readouterr().out)["target"][0]
    assert heavy["cost_formula"] == HEAVY and heavy["median"] < 0.8 * n_opt["median"]
    assert main([*args, "--target", "C=1e23", "--cost", HEAVY, "--budget", "1e24"]) == 0
    assert f"target C=1e+23 (its compute-optimal N* under cost {HEAVY}): N* " in capsys.readouterr().out
    assert main([*args, "--target", "C=1e23", "--cost", "1", "--budget", "4"]) == 0
    assert "N* under cost 6*N*D, the design's cost not being one in N and D" in capsys.readouterr().out
    assert main([*args, "--target", "N=1e9,D=2e10,lr=fast"]) == 2
    error = capsys.readouterr().err.strip()
    assert (
        error
        == "error: --target 'N=1e9,D=2e10,lr=fast': lr='fast' is not a number (or best, for a tunable input such as lr)"
    )
    assert main([*args, "--target", "N=1e9,D=2e10,lr=best"]) == 2
    assert "law 'chinchilla' has no tunable input 'lr'" in capsys.readouterr().err


def test_the_command_takes_a_pooled_fits_group(pooled_fit, tmp_path, capsys):
    saved = pooled_fit.save(tmp_path / "pooled.nc")
    pd.DataFrame({"N": [1e9, 3e9], "D": [2e10, 6e10], "family": ["b", "a"]}).to_csv(tmp_path / "pool.csv", index=False)
    args = ["design", str(saved), "--candidates", str(tmp_path / "pool.csv"), "--budget", "1e30", "--batch", "1"]
    assert main([*args, "--target", "N=7e10,D=1.4e12,family=b", "--target", "N=7e10,D=1.4e12,family=a", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    api = bs.design(pooled_fit, pd.read_csv(tmp_path / "pool.csv"), [{**TARGET, "family": "b"}], 1e30, batch=1)
    assert result["groups"] == ["family"] and [t["family"] for t in result["target"]] == ["b", "a"]
    assert result["target"][0]["median"] == pytest.approx(api.targets["median"].iloc[0], rel=1e-9)
    assert main([*args, "--target", "N=7e10,D=1.4e12,family=b"]) == 0
    text = capsys.readouterr().out
    assert "target N=7e+10, D=1.4e+12, family=b: loss " in text and f"{'family':>10}" in text
    for target, error in (
        ("N=7e10,D=1.4e12", "error: target N=7e+10, D=1.4e+12: 'E' is pooled by 'family': give a 'family' for"),
        ("N=7e10,D=1.4e12,famly=b", "error: --target 'N=7e10,D=1.4e12,famly=b': famly='b' is not a number (or best,"),
    ):
        assert main([*args, "--target", target]) == 2
        message = capsys.readouterr().err.strip()
        assert message.startswith(error) and "\n" not in message
    assert message.endswith("; the fit's group column is family")


@pytest.mark.slow
def test_the_report_embeds_a_saved_design(saved_quick_fit, tmp_path, capsys):
    args = ["design", str(saved_quick_fit), "--grid", "N=1e8:1e10:3,D=2e10", "--budget", "1e22", "--batch", "2"]
    assert main([*args, "--target", "C=1e23", "--target", "N=7e10,D=1.4e12", "--json"]) == 0
    saved = tmp_path / "design.json"
    saved.write_text(capsys.readouterr().out)
    result = json.loads(saved.read_text())
    out = tmp_path / "report.html"
    assert (
        main(["report", str(saved_quick_fit), "--design", str(saved), "--out", str(out), "--at", "N=7e10,D=1.4e12"])
        == 0
    )
    page = out.read_text()
    section = page[page.index("<h2>Which runs next (design)</h2>") :]
    assert section.count("<figure><img") == 1 and "the runs chosen, by rank, and each target" in section
    assert "log N* and log D*" in section and "C=1e+23: N*" in section and "C=1e+23: D*" in section
    numbers = [run[key] for run in result["chosen"] for key in ("N", "cost", "gain", "value", "share")]
    numbers += [t[key] for t in result["target"] for key in ("median", "sd_now", "sd_expected")]
    numbers += [v for t in result["target"] for v in (*t["band_now"], *t["band_expected"])]
    for value in numbers:  # the report's tables show 4 significant digits
        assert f"<td>{value:.4g}</td>" in section, value
    capsys.readouterr()
    (tmp_path / "other.json").write_text(json.dumps({"saved": "x"}))
    for path, message in (
        (tmp_path / "missing.json", "does not exist"),
        (tmp_path / "other.json", "is not what 'bayescale design --json' or 'design --replay --json' writes"),
    ):
        assert main(["report", str(saved_quick_fit), "--design", str(path), "--out", str(out)]) == 2
        assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def demo_split(tmp_path_factory):
    """The demo sweep's runs below N = 3e9 (54, the pool) and above (9, the targets), as files."""
    folder = tmp_path_factory.mktemp("replay")
    runs = pd.read_csv(bs.datasets.demo_runs_path())
    runs[runs["N"] < 3e9].to_csv(folder / "pool.csv", index=False)
    runs[runs["N"] >= 3e9].to_csv(folder / "targets.csv", index=False)
    return folder / "pool.csv", folder / "targets.csv"


REPLAY = ["--budget-share", "0.02", "--batch", "8", "--draws", "100", "--tune", "150", "--chains", "2"]


@pytest.mark.slow
def test_the_replay_spends_each_share_and_scores_the_targets(demo_split, capsys):
    pool, targets = demo_split
    two = ["--strategy", "bayes", "--strategy", "random"]
    assert main(["design", "--replay", str(pool), "--target-runs", str(targets), *REPLAY, *two, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [s["strategy"] for s in result["strategies"]] == ["bayes", "random"]
    for strategy in result["strategies"]:
        (budget,) = strategy["budgets"]
        assert budget["share"] == 0.02 and 0.01 < budget["spent"] <= 0.02
        assert budget["runs"] > result["start_runs"] == 8
        assert {"r2", "median_abs_rel_error", "mean_halfwidth"} <= set(budget) and set(budget["coverage"]) == {"0.9"}
        assert -1 <= budget["r2"] <= 1
    assert result["all_of_pool"]["runs"] == result["pool_runs"] == 54 and result["target_runs"] == 9
    # each repeat keeps its targets' forecast, which scores as the record does (groups are scored together so)
    from bayescale.evaluation.design_replay import score_forecast

    (record,) = result["strategies"][0]["repeats"][0]
    assert len(record["forecast"]["median"]) == 9
    assert score_forecast({k: np.asarray(v) for k, v in record["forecast"].items()})["r2"] == record["r2"]
    # a saved replay draws again and becomes a report section: its table's numbers and the figure
    parts = report_parts(result)
    assert [kind for kind, _ in parts] == ["para", "table", "figure"]
    table = parts[1][1]
    assert table["strategy"].tolist() == ["bayes", "random", "all of the pool"]
    assert table["R2"].tolist()[:2] == [s["budgets"][0]["r2"] for s in result["strategies"]]
    assert table["mean half-width"].iloc[-1] == result["all_of_pool"]["mean_halfwidth"]
    figure, caption = parts[2][1]
    plane = figure.axes[0]
    assert len(plane.collections[0].get_offsets()) == 54 and "money spent" in caption  # the pool, from the JSON alone


@pytest.mark.slow
def test_the_replay_keeps_a_cards_own_inputs_and_the_costs_columns(tmp_path, capsys):
    """ScaleBench's sparsity task from CSV files: inputs P and N_active, cost in N_dense, D1 and D2."""
    pool, targets = bs.datasets.load_scalebench(shared_file("scalebench/SOURCE.txt").parent, "sparsity")
    pool.frame.to_csv(tmp_path / "pool.csv", index=False)
    targets.frame.to_csv(tmp_path / "targets.csv", index=False)
    args = ["design", "--replay", str(tmp_path / "pool.csv"), "--target-runs", str(tmp_path / "targets.csv")]
    args += ["--law", "scalebench_sparsity", "--where", "group == 'D1=2.31_D2=2.31'", "--budget-share", "0.35"]
    args += ["--cost", bs.datasets.SCALEBENCH_TASKS["sparsity"]["cost"], "--strategy", "bayes", "--batch", "4"]
    args += ["--draws", "100", "--tune", "150", "--chains", "2", "--seed", "1", "--plot", str(tmp_path / "r.png")]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["inputs"] == ["P", "N_active"] and (result["pool_runs"], result["target_runs"]) == (27, 7)
    assert len(result["points"]["pool"]["P"]) == 27 and result["start_runs"] == 7  # 6 parameters with the noise
    (budget,) = result["strategies"][0]["budgets"]
    assert budget["runs"] > 7 and 0.2 < budget["spent"] <= 0.35 and -1 <= budget["r2"] <= 1
    assert (tmp_path / "r.png").stat().st_size > 10_000


def test_the_replay_refuses_what_it_does_not_use(demo_split, saved_quick_fit, capsys):
    pool, targets = demo_split
    assert main(["design", str(saved_quick_fit), "--replay", str(pool), "--target-runs", str(targets)]) == 2
    assert "give no RUNS" in capsys.readouterr().err
    assert main(["design", "--replay", str(pool), "--target-runs", str(targets), "--budget", "1e20"]) == 2
    assert "drop --budget" in capsys.readouterr().err
    assert main(["design", "--replay", str(pool)]) == 2
    assert "needs the target runs" in capsys.readouterr().err
    assert main(["design", "--replay", str(pool), "--target-runs", str(targets), "--budget-share", "0"]) == 2
    assert "budget shares must lie in (0, 1]" in capsys.readouterr().err
