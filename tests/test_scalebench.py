"""ScaleBench (Li et al. 2026): the loader of four tasks and their law cards."""

import json
import warnings

import numpy as np
import pytest
from conftest import fake_fit, shared_file

import bayescale as bs
from bayescale.cli.main import main
from bayescale.errors import DataError
from bayescale.evaluation.design_replay import score, score_forecast
from bayescale.forecast.checks import check
from bayescale.forecast.design import candidate_costs

CARDS = {
    "parallel": "scalebench_parallel",
    "moe": "scalebench_moe",
    "sparsity": "scalebench_sparsity",
    "vocab": "scalebench_vocab",
}
SIZES = {"parallel": (36, 12), "moe": (193, 28), "sparsity": (70, 18), "vocab": (1080, 120)}


@pytest.fixture(scope="module")
def folder():
    return shared_file("scalebench/SOURCE.txt").parent


@pytest.mark.parametrize("task", sorted(CARDS))
def test_each_task_loads_as_pool_and_targets_with_its_cost_and_law(folder, task):
    pool, targets = bs.datasets.load_scalebench(folder, task)
    assert (len(pool.frame), len(targets.frame)) == SIZES[task]
    info = bs.datasets.SCALEBENCH_TASKS[task]
    law = bs.get_law(CARDS[task])
    for runs in (pool, targets):
        assert set(info["inputs"]) | {"loss", "group"} == set(runs.frame.columns)
        # the vocab task's unigram-normalised loss is negative: its card observes it on the raw scale
        assert (runs.frame["loss"] > 0).all() if task != "vocab" else (runs.frame["loss"] < 0).all()
    assert law.scale == info.get("scale", "log")
    costs = candidate_costs(pool.frame, info["cost"])
    assert (costs > 0).all()
    assert set(law.inputs) <= set(info["inputs"]) and "2604.22753" in law.source
    medians = {name: p.prior.median() for name, p in law.params.items()}
    env = {**{n: pool.frame[n].to_numpy() for n in law.inputs}, **medians}
    loss, observed = law.formula.numpy(env), pool.frame["loss"]
    assert np.all(np.isfinite(loss))
    if law.observation.is_log:  # the priors' centre gives a loss of the data's size (within a factor of 2)
        assert np.all((loss > 0.5 * observed) & (loss < 2 * observed))
    else:  # ... within the targets' range widened by their spread
        spread = observed.std()
        assert np.all((loss > observed.min() - spread) & (loss < observed.max() + spread))


#: ScaleBench's sparsity laws (sparsity_scaling_law/laws.py, commit e0a58ff), written out from that file in its own
#: parameters theta, and each one's card with the map from theta to the card's parameters
SPARSITY_LAWS = {
    "scalebench_sparsity_sl1": (
        lambda t, P, N: np.exp(t[0]) * P ** -t[1] * N ** -t[2] * np.exp(t[3] * np.log(P) * np.log(N)) + np.exp(t[4]),
        lambda t: {"A": np.exp(t[0]), "a": t[1], "b": t[2], "c": t[3], "E": np.exp(t[4])},
    ),
    "scalebench_sparsity": (
        lambda t, P, N: np.exp(t[0]) * P ** -t[1] * N ** -t[2] + np.exp(t[3]),
        lambda t: {"A": np.exp(t[0]), "a": t[1], "b": t[2], "E": np.exp(t[3])},
    ),
    "scalebench_sparsity_sl3": (
        lambda t, P, N: (
            np.exp(t[0]) * P ** -t[1] + np.exp(t[2]) * N ** -t[3] * np.exp(t[4] * np.log(P) * np.log(N)) + np.exp(t[5])
        ),
        lambda t: {"A": np.exp(t[0]), "a": t[1], "B": np.exp(t[2]), "b": t[3], "c": t[4], "E": np.exp(t[5])},
    ),
    "scalebench_sparsity_sl4": (
        lambda t, P, N: np.exp(t[0]) * P ** -t[1] + np.exp(t[2]) * N ** -t[3] + np.exp(t[4]),
        lambda t: {"A": np.exp(t[0]), "a": t[1], "B": np.exp(t[2]), "b": t[3], "E": np.exp(t[4])},
    ),
}


@pytest.mark.parametrize("card", sorted(SPARSITY_LAWS))
def test_each_sparsity_card_is_its_scalebench_law_and_its_priors_allow_the_pool(folder, card):
    """Every law of the task is a card in its inputs; at random ScaleBench parameters (inside laws.py's PARAM_BOUNDS)
    it is laws.py's formula; at the priors' medians (no fitted values are published) the loss is finite, positive and
    of the pool's size, and the prior predictive rules out none of the pool's runs."""
    pool, targets = bs.datasets.load_scalebench(folder, "sparsity")
    law = bs.get_law(card)
    assert law.inputs == ("P", "N_active") and set(law.inputs) <= set(
        bs.datasets.SCALEBENCH_TASKS["sparsity"]["inputs"]
    )
    assert "2604.22753" in law.source and "sparsity_scaling_law/laws.py" in law.source and law.anchor == "E"
    reference, to_card = SPARSITY_LAWS[card]
    P, N = pool.frame["P"].to_numpy(), pool.frame["N_active"].to_numpy()
    rng = np.random.default_rng(3)
    for _ in range(5):
        theta = rng.uniform(0.01, 1.0, len(law.params))  # inside every one of laws.py's PARAM_BOUNDS
        values = to_card(theta)
        assert set(values) == set(law.params)
        assert np.allclose(law.formula.numpy({"P": P, "N_active": N, **values}), reference(theta, P, N), rtol=1e-12)
    medians = {name: p.prior.median() for name, p in law.params.items()}
    for frame in (pool.frame, targets.frame):
        loss = law.formula.numpy({"P": frame["P"].to_numpy(), "N_active": frame["N_active"].to_numpy(), **medians})
        assert np.all(np.isfinite(loss)) and np.all(loss > 0)
        assert np.all((loss > 0.8 * frame["loss"]) & (loss < 1.25 * frame["loss"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checked = check(fake_fit(pool, card, values=medians, spread=0.02), prior_draws=300, seed=1)
    assert checked["prior_predictive"]["outside"] == 0, checked["findings"][0]


def test_a_task_is_scored_as_scalebench_scores_it_one_r2_over_every_groups_targets():
    """ScaleBench's runner concatenates the groups' forecasts (runner._evaluate_global): a shift between groups that
    each forecast follows counts for the pooled R2, not for each group's."""
    groups = [np.array([2.7, 2.75, 2.8]), np.array([2.5, 2.55, 2.6])]
    forecasts = [{"actual": g, "median": g[::-1], "lower": g - 0.1, "upper": g + 0.1} for g in groups]
    each = [score_forecast(f)["r2"] for f in forecasts]
    pooled = score_forecast({k: np.concatenate([f[k] for f in forecasts]) for k in forecasts[0]})
    assert each == [-1.0, -1.0] and pooled["r2"] == pytest.approx(1 - 0.04 / 0.07)
    assert pooled["coverage"]["0.9"] == 1.0 and pooled["mean_halfwidth"] == pytest.approx(0.1)


def test_costs_are_the_benchmarks(folder):
    pool, _ = bs.datasets.load_scalebench(folder, "sparsity")
    f = pool.frame
    expected = 6 * f["N_dense"] * f["D1"] + 6 * f["N_active"] * f["D2"]
    assert np.allclose(candidate_costs(f, bs.datasets.SCALEBENCH_TASKS["sparsity"]["cost"]), expected)
    pool, _ = bs.datasets.load_scalebench(folder, "moe")
    cost = bs.datasets.SCALEBENCH_TASKS["moe"]["cost"]
    assert np.allclose(
        candidate_costs(pool.frame, cost), pool.frame["dense_parameter_count"] * pool.frame["num_experts"]
    )
    pool, _ = bs.datasets.load_scalebench(folder, "vocab")  # registry.py's _cost_vocab: P * D, no factor 6
    f = pool.frame
    cost = bs.datasets.SCALEBENCH_TASKS["vocab"]["cost"]
    assert np.allclose(candidate_costs(f, cost), f["non_vocab_parameters"] * f["num_characters"])


def test_a_group_is_kept_alone_and_a_bad_one_named(folder):
    pool, targets = bs.datasets.load_scalebench(folder, "parallel", group="pile")
    assert len(pool.frame) == 18 and len(targets.frame) == 6 and set(pool.frame["group"]) == {"pile"}
    with pytest.raises(DataError, match="column 'group' has no 'c4'; groups are pile, stack"):
        bs.datasets.load_scalebench(folder, "parallel", group="c4")
    with pytest.raises(DataError, match="unknown ScaleBench task 'domain'; choose from parallel, moe, sparsity, vocab"):
        bs.datasets.load_scalebench(folder, "domain")


@pytest.mark.slow
def test_the_vocab_card_fits_the_pool_cleanly_at_default_settings_and_forecasts_the_targets(folder):
    """On the raw scale, 1080 runs (25 s on 2 cores with a warm compile cache, 2026-12-07: R2 0.976, 90% coverage 0.86)."""
    pool, targets = bs.datasets.load_scalebench(folder, "vocab")
    fit = bs.fit(pool, "scalebench_vocab", progressbar=False)
    d = fit.diagnostics
    assert d.divergences == 0 and d.rhat_max <= 1.01 and d.ok, d.problems
    assert fit.discrepancy is None and fit.settings["extrapolation"]["skipped"]
    scores = score(fit, targets.frame, 0.9)  # targets at vocab_size 96256, beyond the pool's 64512
    assert scores["r2"] > 0.95 and 0.75 <= scores["coverage"]["0.9"] <= 1.0, scores


@pytest.mark.slow
def test_design_replay_runs_on_the_vocab_task(folder, tmp_path, capsys):
    """The CLI's replay reads negative targets for a raw card and scores them (tiny sampling: plumbing only).

    A tenth of the pool, and 0.05% of its cost: about 22 runs, 2 choices per strategy (17 s on 2 cores, 2026-12-07).
    """
    pool, targets = bs.datasets.load_scalebench(folder, "vocab")
    pool.frame.iloc[::10].to_csv(tmp_path / "pool.csv", index=False)  # 108 runs: a handful of refits
    targets.frame.iloc[::10].to_csv(tmp_path / "targets.csv", index=False)
    cost = bs.datasets.SCALEBENCH_TASKS["vocab"]["cost"]
    replay = ["--replay", str(tmp_path / "pool.csv"), "--target-runs", str(tmp_path / "targets.csv")]
    sampling = ["--draws", "100", "--tune", "150", "--chains", "2", "--quiet", "--json"]
    args = ["design", *replay, "--law", "scalebench_vocab", "--cost", cost, "--budget-share", "0.0005", *sampling]
    assert main([*args, "--strategy", "bayes", "--strategy", "cheapest", "--batch", "8"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pool_runs"] == 108 and result["target_runs"] == 12
    for strategy in result["strategies"]:
        assert np.isfinite(strategy["budgets"][0]["r2"]) and strategy["budgets"][0]["runs"] >= result["start_runs"]
    assert result["all_of_pool"]["r2"] > 0.9
