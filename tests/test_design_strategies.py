"""The replay's other ways of choosing runs: cheapest, inverse-cost and d-optimal, on known answers."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import fake_fit

import bayescale as bs
from bayescale.cli.design_commands import REPLAY_STRATEGIES
from bayescale.cli.main import main
from bayescale.evaluation.design_replay import STRATEGIES
from bayescale.evaluation.design_strategies import (
    cheapest_batch,
    d_optimal_batch,
    inverse_cost_batch,
    law_jacobian,
)
from bayescale.forecast.design import candidate_costs

COSTS = np.array([5.0, 1.0, 3.0, 2.0, 4.0, 1.0])


@pytest.fixture(scope="module")
def point_fit(demo_runs):
    """Draws tight around the demo's true chinchilla law: the median is the truth."""
    return fake_fit(demo_runs, spread=1e-4)


def grid(n_values=5, d_values=5) -> pd.DataFrame:
    n, d = np.meshgrid(np.geomspace(1e8, 1e10, n_values), np.geomspace(1e10, 1e12, d_values))
    return pd.DataFrame({"N": n.ravel(), "D": d.ravel()})


def test_the_command_offers_every_strategy_of_the_replay():
    assert REPLAY_STRATEGIES == STRATEGIES and STRATEGIES[0] == "bayes"


def test_cheapest_takes_the_cheapest_it_can_pay_for():
    available = np.ones(6, bool)
    assert cheapest_batch(COSTS, available, 100.0, 3) == [1, 5, 3]
    available[5] = False
    assert cheapest_batch(COSTS, available, 100.0, 3) == [1, 3, 2]
    assert cheapest_batch(COSTS, available, 3.5, 4) == [1, 3]  # 1 + 2 spent, 3 would exceed 3.5
    assert cheapest_batch(COSTS, available, 0.5, 4) == []


def test_inverse_cost_stays_within_budget_and_favours_cheap_runs():
    rng = np.random.default_rng(0)
    counts = np.zeros(6)
    for _ in range(3000):
        picked = inverse_cost_batch(rng, COSTS, np.ones(6, bool), 100.0, 1)
        counts[picked] += 1
    expected = (1 / COSTS) / (1 / COSTS).sum()
    assert np.allclose(counts / counts.sum(), expected, atol=0.03)
    for _ in range(50):
        picked = inverse_cost_batch(rng, COSTS, np.ones(6, bool), 6.0, 6)
        assert COSTS[picked].sum() <= 6.0 and len(set(picked)) == len(picked)


def test_the_jacobian_is_the_laws_derivative(point_fit):
    table = grid(3, 3)
    jac = law_jacobian(point_fit, table)
    truth = bs.datasets.CHINCHILLA_TRUTH
    loss = truth["E"] + truth["A"] / table["N"] ** truth["alpha"] + truth["B"] / table["D"] ** truth["beta"]
    names = list(point_fit.law.param_names)
    # d log L / d log E = E / L and d log L / d log A = (A / N**alpha) / L
    assert np.allclose(jac[:, names.index("E")], truth["E"] / loss, rtol=1e-3)
    assert np.allclose(jac[:, names.index("A")], truth["A"] / table["N"] ** truth["alpha"] / loss, rtol=1e-3)


def test_d_optimal_spreads_along_n_and_d(point_fit):
    table = grid()
    costs = np.ones(len(table))
    picked = d_optimal_batch(point_fit, table, costs, [], np.ones(len(table), bool), 100.0, 5)
    # five parameters from five runs: D-optimality spreads them to both ends of N and of D (its known answer
    # for a power law: the design's support lies at the edges of the region), never along one axis only
    assert len(set(picked)) == 5
    for name in ("N", "D"):
        taken = table[name].iloc[picked]
        assert taken.min() == table[name].min() and taken.max() == table[name].max()
        assert taken.nunique() >= 2


def test_d_optimal_pays_for_information_and_stays_within_budget(point_fit):
    table = grid()
    costs = candidate_costs(table, "6*N*D")
    money = 0.05 * costs.sum()
    picked = d_optimal_batch(point_fit, table, costs, [0, 1, 5, 6, 7], np.ones(len(table), bool), money, 10)
    assert picked and costs[picked].sum() <= money * (1 + 1e-9)
    # per unit cost: with equal information it prefers the cheaper run, so it never starts with the dearest
    assert costs[picked[0]] < costs.max()


@pytest.mark.slow
def test_the_replay_runs_every_strategy_within_its_share(tmp_path, capsys):
    runs = pd.read_csv(bs.datasets.demo_runs_path())
    runs[runs["N"] < 3e9].to_csv(tmp_path / "pool.csv", index=False)
    runs[runs["N"] >= 3e9].to_csv(tmp_path / "targets.csv", index=False)
    args = ["design", "--replay", str(tmp_path / "pool.csv"), "--target-runs", str(tmp_path / "targets.csv")]
    sampling = ["--budget-share", "0.02", "--batch", "8", "--draws", "100", "--tune", "150", "--chains", "2"]
    strategies = ["--strategy", "cheapest", "--strategy", "inverse-cost", "--strategy", "d-optimal"]
    figure = tmp_path / "replay.png"
    assert main([*args, *sampling, *strategies, "--plot", str(figure), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["figure"] == str(figure) and figure.stat().st_size > 10_000
    assert [s["strategy"] for s in result["strategies"]] == ["cheapest", "inverse-cost", "d-optimal"]
    costs = candidate_costs(runs[runs["N"] < 3e9].reset_index(drop=True), "6*N*D")
    for strategy in result["strategies"]:
        (budget,) = strategy["budgets"]
        (chosen,) = strategy["chosen"]
        assert 0.01 < budget["spent"] <= 0.02 and len(chosen) == budget["runs"] > result["start_runs"]
        assert np.isclose(costs[chosen].sum() / costs.sum(), budget["spent"])
    cheapest = result["strategies"][0]["chosen"][0]
    assert list(np.sort(costs[cheapest])) == list(np.sort(costs)[: len(cheapest)])  # the cheapest, every one


def _replay_result() -> dict:
    """A replay's result as bs.design_replay returns it, written by hand: 2 starting runs, then 3 chosen."""
    budgets = [
        {"share": 0.01, "spent": 0.009, "runs": 3, "mean_rel_halfwidth": 0.05},
        {"share": 0.1, "spent": 0.09, "runs": 5, "mean_rel_halfwidth": 0.02},
    ]
    return {
        "strategies": [
            {"strategy": "bayes", "budgets": budgets, "chosen": [[0, 1, 7, 3, 5]]},
            {"strategy": "cheapest", "budgets": budgets, "chosen": [[0, 1, 2, 4, 6]]},
        ],
        "all_of_pool": {"mean_rel_halfwidth": 0.015},
        "start_runs": 2,
    }


def test_the_replays_figure_numbers_the_choices_and_draws_each_strategy():
    pool, targets = grid(3, 3), pd.DataFrame({"N": [7e10], "D": [1.4e12]})
    fig = bs.plots.design_replay(_replay_result(), pool, targets)
    plane, bands = fig.axes
    assert [t.get_text() for t in plane.texts] == ["1", "2", "3"]  # bayes's choices after the 2 starting runs
    assert [t.xy for t in plane.texts][0] == (pool["N"].iloc[7], pool["D"].iloc[7])
    assert [line.get_label() for line in bands.get_lines()] == ["bayes", "cheapest", "all of the pool"]
    assert list(bands.get_lines()[0].get_xdata()) == [0.009, 0.09]
    with pytest.raises(bs.BayescaleError, match="'d-optimal' was not replayed; replayed: bayes, cheapest"):
        bs.plots.design_replay(_replay_result(), pool, targets, strategy="d-optimal")


def test_plot_is_only_for_a_replay(tmp_path, capsys):
    runs = str(bs.datasets.demo_runs_path())
    args = ["design", runs, "--grid", "N=1e8:1e9:3,D=2e10", "--target", "N=7e10,D=1.4e12", "--budget", "1e21"]
    assert main([*args, "--plot", str(tmp_path / "f.png")]) == 2
    assert "--plot draws a replay" in capsys.readouterr().err


def test_the_replay_stops_spending_when_bayes_takes_nothing(demo_runs, monkeypatch):
    """bs.design chooses nothing when no affordable run is expected to narrow the band: the share is left unspent."""
    from types import SimpleNamespace

    import bayescale.evaluation.design_replay as replay

    monkeypatch.setattr(replay, "fit_law", lambda runs, law, seed, **options: fake_fit(runs, spread=0.01))
    monkeypatch.setattr(replay, "design", lambda *args, **kwargs: SimpleNamespace(chosen=pd.DataFrame()))
    frame = demo_runs.frame.reset_index(drop=True)
    pool, targets = frame[frame["N"] < 3e9], frame[frame["N"] >= 3e9]
    result = replay.design_replay(pool, targets, shares=[0.05], strategies=["bayes", "cheapest"])
    bayes, cheapest = result["strategies"]
    assert bayes["budgets"][0]["runs"] == result["start_runs"] == len(bayes["chosen"][0])
    assert cheapest["budgets"][0]["runs"] > result["start_runs"]  # the same share buys more runs by another strategy
