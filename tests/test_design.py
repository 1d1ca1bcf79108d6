"""Which run next (`bs.design`): known answers on a real fit, the batch, costs, the bad inputs and the command."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import fake_fit

import bayescale as bs
from bayescale.cli.main import main
from bayescale.errors import BayescaleError, DataError, FormulaError
from bayescale.forecast.design import posterior_after, weighted_variance
from bayescale.laws.likelihood import LIKELIHOODS

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
