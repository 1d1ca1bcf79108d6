"""ScaleBench (Li et al. 2026): the loader of three tasks and their law cards."""

import numpy as np
import pytest
from conftest import shared_file

import bayescale as bs
from bayescale.errors import DataError
from bayescale.forecast.design import candidate_costs

CARDS = {"parallel": "scalebench_parallel", "moe": "scalebench_moe", "sparsity": "scalebench_sparsity"}
SIZES = {"parallel": (36, 12), "moe": (193, 28), "sparsity": (70, 18)}


@pytest.fixture(scope="module")
def folder():
    return shared_file("scalebench/SOURCE.txt").parent


@pytest.mark.parametrize("task", sorted(CARDS))
def test_each_task_loads_as_pool_and_targets_with_its_cost_and_law(folder, task):
    pool, targets = bs.datasets.load_scalebench(folder, task)
    assert (len(pool.frame), len(targets.frame)) == SIZES[task]
    info = bs.datasets.SCALEBENCH_TASKS[task]
    for runs in (pool, targets):
        assert set(info["inputs"]) | {"loss", "group"} == set(runs.frame.columns)
        assert (runs.frame["loss"] > 0).all()
    costs = candidate_costs(pool.frame, info["cost"])
    assert (costs > 0).all()
    law = bs.get_law(CARDS[task])
    assert set(law.inputs) <= set(info["inputs"]) and "2604.22753" in law.source
    medians = {name: p.prior.median() for name, p in law.params.items()}
    env = {**{n: pool.frame[n].to_numpy() for n in law.inputs}, **medians}
    loss = law.formula.numpy(env)
    # the priors' centre gives a loss of the data's size (within a factor of 2), not an absurd one
    assert np.all(np.isfinite(loss)) and np.all((loss > 0.5 * pool.frame["loss"]) & (loss < 2 * pool.frame["loss"]))


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


def test_a_group_is_kept_alone_and_a_bad_one_named(folder):
    pool, targets = bs.datasets.load_scalebench(folder, "parallel", group="pile")
    assert len(pool.frame) == 18 and len(targets.frame) == 6 and set(pool.frame["group"]) == {"pile"}
    with pytest.raises(DataError, match="column 'group' has no 'c4'; groups are pile, stack"):
        bs.datasets.load_scalebench(folder, "parallel", group="c4")
    with pytest.raises(DataError, match="unknown ScaleBench task 'vocab'; choose from parallel, moe, sparsity"):
        bs.datasets.load_scalebench(folder, "vocab")
