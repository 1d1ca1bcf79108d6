"""Shared fixtures: the real data folder (skip when absent, fail under CI) and fits without sampling."""

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import bayescale as bs
from bayescale.fitting.result import Fit
from bayescale.inference.diagnostics import diagnose
from bayescale.laws.likelihood import get_likelihood
from bayescale.model.generative import observed_name, pointwise_log_likelihood
from bayescale.model.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BAYESCALE_SHARED_DATA", ROOT.parent / "shared" / "data"))

#: the files that take longest (most first, from ``--durations=0``): ``make test`` hands whole files to two
#: workers in collection order, so starting these first lets both workers finish together
SLOW_FILES_FIRST = (
    "test_notebooks.py",
    "test_real_data.py",
    "test_tuning.py",
    "test_backtest.py",
    "test_cli.py",
    "test_sweep.py",
    "test_report.py",
    "test_pooling.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept


def shared_file(relative: str) -> Path:
    """A file of ../shared/data: skip the test when absent, fail when CI=true."""
    path = SHARED_DATA / relative
    if not path.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real data {path} is missing under CI")
        pytest.skip(f"real data {path} is absent")
    return path


@pytest.fixture(scope="session")
def epoch_path() -> Path:
    return shared_file("epoch-chinchilla/svg_extracted_data.csv")


@pytest.fixture(scope="session")
def epoch_split(epoch_path):
    """Epoch's 240 points split at N = 2.9e9, and the default fit on the smaller runs (real sampling)."""
    frame = bs.datasets.load_epoch_chinchilla(epoch_path).frame
    small = frame[frame["N"] < 2.9e9].reset_index(drop=True)
    large = frame[frame["N"] >= 2.9e9].reset_index(drop=True)
    return small, large, bs.fit(small, "chinchilla", progressbar=False)


@pytest.fixture(scope="session")
def dask_client():
    """A real 2-worker Dask cluster on 127.0.0.1 for the whole session, stopped at its end."""
    distributed = pytest.importorskip("distributed")
    tests = str(Path(__file__).resolve().parent)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.run(lambda path: __import__("sys").path.insert(0, path), tests)  # the tests' task modules
        yield client


@pytest.fixture(scope="session")
def demo_runs():
    return bs.load_runs(bs.datasets.demo_runs_path())


def fake_fit(
    runs, law="chinchilla", values=None, likelihood="studentt", draws=200, chains=2, spread=0.0, seed=0, pool=None
) -> Fit:
    """A Fit whose 'posterior' is hand-written draws around ``values`` (no sampling at all).

    ``pool`` (parameter -> group column) pools parameters: a pooled one's value may be a dict, group -> value;
    its ``<param>_pop`` defaults to the groups' mean and ``<param>_sd`` to 0.1.
    """
    law = bs.get_law(law)
    lik = get_likelihood(likelihood)
    runs = bs.load_runs(runs, extra_inputs=law.inputs, scale=law.scale, keep=sorted(set((pool or {}).values())))
    law = law.bind_data({n: runs[n] for n in law.inputs})
    spec = ModelSpec.from_runs(law, lik, runs, pool=pool)
    values = dict(values or bs.datasets.CHINCHILLA_TRUTH)
    values.setdefault("sigma", 0.01)
    values.setdefault("nu", 5.0)
    for name, pooled in spec.pooled.items():
        given = values[name] if isinstance(values[name], dict) else dict.fromkeys(pooled.levels, values[name])
        values[name] = np.array([given[level] for level in pooled.levels])
        values.setdefault(pooled.pop_name, float(np.mean(values[name])))
        values.setdefault(pooled.sd_name, 0.1)
    rng = np.random.default_rng(seed)

    def draws_of(name):
        if name not in spec.pooled:
            return ("chain", "draw"), values[name] * np.exp(spread * rng.standard_normal((chains, draws)))
        level = values[name] * np.exp(spread * rng.standard_normal((chains, draws, len(values[name]))))
        return ("chain", "draw", spec.pooled[name].column), level

    posterior = xr.Dataset({n: draws_of(n) for n in spec.names})
    for pooled in spec.pooled.values():
        posterior = posterior.assign_coords({pooled.column: list(pooled.levels)})
    posterior = posterior.assign_coords(chain=np.arange(chains), draw=np.arange(draws))
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((chains, draws), bool))}, coords=posterior.coords)
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    tree["log_likelihood"] = xr.Dataset({observed_name(spec): pointwise_log_likelihood(spec, posterior)})
    tree["constant_data"] = xr.Dataset({c: ("obs", runs.frame[c].to_numpy()) for c in runs.columns})
    settings = {
        "draws": draws,
        "tune": 0,
        "chains": chains,
        "cores": 1,
        "seed": seed,
        "sampler": "none",
        "target_accept": 0.9,
        **({"pool": dict(pool)} if pool else {}),
    }
    with np.errstate(all="ignore"):
        diag = diagnose(posterior, stats, list(spec.names))
    return Fit(law, lik, runs, tree, settings, diag)
