"""The posterior without sampling: densities, gradients and the mode, bambi-style."""

import warnings

import numpy as np
import pymc as pm
import pytest

import bayescale as bs
from bayescale.inference.laplace import laplace_approximation
from bayescale.laws.likelihood import LIKELIHOODS, get_likelihood
from bayescale.model.spec import ModelSpec


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_likelihood_scipy_density_for_held_out_runs_matches_pymc(name):
    lik = get_likelihood(name)
    y, mu = np.array([0.9, 1.0, 1.3]), np.array([1.0, 1.0, 1.0])
    params = {"sigma": 0.05, "nu": 4.0}
    dist = {
        "normal": pm.Normal.dist(mu, 0.05),
        "laplace": pm.Laplace.dist(mu, 0.05),
        "studentt": pm.StudentT.dist(nu=4.0, mu=mu, sigma=0.05),
    }[name]
    np.testing.assert_allclose(lik.logpdf(y, mu, params), pm.logp(dist, y).eval(), atol=1e-7)


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_likelihood_noise_draws_follow_its_family(name):
    """Predictive noise is drawn from the same family the fit's density uses (KS test at unit scale)."""
    from scipy import stats

    lik = get_likelihood(name)
    draws = lik.standard_noise(np.random.default_rng(3), {"sigma": 1.0, "nu": np.full(4000, 4.0)}, (4000, 1))[:, 0]
    reference = {"normal": stats.norm(), "laplace": stats.laplace(), "studentt": stats.t(4.0)}[name]
    assert stats.kstest(draws, reference.cdf).pvalue > 0.01
    other = stats.norm() if name != "normal" else stats.laplace()
    assert stats.kstest(draws, other.cdf).pvalue < 0.01  # and the test can tell families apart


def test_unknown_likelihood_is_refused():
    with pytest.raises(bs.BayescaleError, match="unknown likelihood 'huber'; choose one of studentt, normal, laplace"):
        get_likelihood("huber")


@pytest.fixture(scope="module", params=[False, True], ids=["one noise scale", "noise trend along N"])
def spec(demo_runs, request):
    trend = {"sigma_slope": "Normal(mu=0, sigma=0.25)"} if request.param else None
    return ModelSpec.from_runs(bs.get_law("chinchilla"), get_likelihood("studentt"), demo_runs, trend)


@pytest.mark.slow
def test_small_whitenings_compile_without_blas_and_large_ones_keep_it(spec):
    """Numba's dot costs 4.5 s of an empty cache's compile; few coordinates use a product and a sum."""
    import pytensor.tensor as pt
    from pytensor.graph.traversal import apply_ancestors

    from bayescale.model.whitened import ELEMENTWISE_WHITENING_UP_TO, _whitened, build_whitened

    k = len(spec.free_names)
    model = build_whitened(spec, np.zeros(k), np.eye(k))
    gradient = model.compile_dlogp(mode="NUMBA")
    ops = {type(node.op).__name__ for node in gradient.f.maker.fgraph.apply_nodes}
    assert not ops & {"Dot", "Gemv", "Dot22", "CGemv"}, ops
    rng = np.random.default_rng(0)
    for size in (3, ELEMENTWISE_WHITENING_UP_TO + 1):
        center, scale, z = rng.standard_normal(size), rng.standard_normal((size, size)), rng.standard_normal(size)
        with pm.Model():
            u = _whitened(center, scale, pt.as_tensor(z))
        uses_dot = any(type(node.op).__name__ == "Dot" for node in apply_ancestors([u]))
        assert uses_dot == (size > ELEMENTWISE_WHITENING_UP_TO)
        np.testing.assert_allclose(u.eval(), center + scale @ z, rtol=1e-12)


@pytest.mark.slow
def test_mode_search_finds_the_truth_of_the_synthetic_sweep(spec):
    laplace = laplace_approximation(spec, np.random.default_rng(0))
    mode = laplace.mode(spec)
    assert laplace.converged
    assert mode["alpha"] == pytest.approx(0.34, abs=0.05) and mode["beta"] == pytest.approx(0.28, abs=0.05)
    assert mode["E"] == pytest.approx(1.69, rel=0.1)
    cov = laplace.scale @ laplace.scale.T
    assert np.all(np.linalg.eigvalsh(cov) > 0)


def _counted_searches(monkeypatch) -> list:
    from bayescale.inference import laplace as laplace_module

    results, minimize = [], laplace_module.optimize.minimize

    def counted(*args, **kwargs):
        results.append(minimize(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(laplace_module.optimize, "minimize", counted)
    return results


@pytest.mark.slow
def test_mode_search_stops_once_two_starts_agree_on_the_best_mode(spec, monkeypatch):
    """Issue "Answers in seconds": later starts rarely beat a mode two starts found; each costs a search."""
    results = _counted_searches(monkeypatch)
    found = laplace_approximation(spec, np.random.default_rng(0), n_random_starts=3)
    assert len(results) == 2, "the prior's median and the first random draw agree: the other two are not tried"
    median = spec.unconstrain({n: p.median() for n, p in spec.priors.items()})
    results.clear()
    agreed = laplace_approximation(spec, np.random.default_rng(0), n_random_starts=8, starts=(median,))
    assert len(results) == 2, "the given start and the prior's median agree: the eight draws are not tried"
    assert agreed.log_density == pytest.approx(found.log_density, abs=0.01)


@pytest.mark.slow
def test_every_start_reaches_the_mode_past_points_where_the_density_is_not_finite(spec, monkeypatch):
    """A random start's first L-BFGS step lands where the anchored floor E is negative (density -inf).

    The search must step back from there: with such points valued at 1e300 the line search stopped at
    the start, and on Epoch's 211 smallest runs every start but one ended there (2026-11-30, commit 8d7fcf8).
    """
    from bayescale.inference import laplace as laplace_module

    monkeypatch.setattr(laplace_module, "_SAME_MODE", -1.0)  # never agree: every start is searched
    results = _counted_searches(monkeypatch)
    rng = np.random.default_rng(0)
    starts = laplace_module._starts(spec, np.random.default_rng(0), 3)
    objective = laplace_module._compiled_objective(spec)
    first_steps = [s - 0.5 * np.sign(objective(s)[1]) for s in starts]
    assert any(not np.isfinite(objective(u)[0]) for u in first_steps), "the test needs a start next to such points"
    best = laplace_approximation(spec, rng, n_random_starts=3)
    assert len(results) == 4
    assert [-r.fun for r in results] == pytest.approx([best.log_density] * 4, abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("terminal", [False, True])
def test_the_progress_bar_never_writes_to_stdout(capsys, monkeypatch, terminal):
    """stdout stays clean for pipes and --json; the bar is drawn on stderr, and only on a terminal."""
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    bs.fit(
        bs.datasets.synthetic_sweep(3), "kaplan_n", draws=60, tune=60, chains=2, progressbar=True, extrapolation="none"
    )
    out, err = capsys.readouterr()
    assert out == ""
    assert ("draws/s" in err) == terminal


@pytest.mark.slow
def test_short_r_hat_or_ess_at_defaults_samples_again_and_says_so(monkeypatch):
    """The fit samples again itself (twice the draws, whitened by the first run's) before warning; extend=False does not."""
    from bayescale import defaults
    from bayescale.errors import SamplerWarning, SamplingExtended

    monkeypatch.setattr(defaults, "DRAWS", 40)  # 4 x 40 draws: ESS short of 400 for sure
    monkeypatch.setattr(defaults, "TUNE", 40)
    sweep = bs.datasets.synthetic_sweep(3)
    options = dict(draws=40, tune=40, chains=4, progressbar=False, extrapolation="none")
    with pytest.warns(
        SamplingExtended,
        match=r"min ESS \d+ at tune=40, draws=40: sampled again whitened by the "
        r"first run's draws \(tune=40, draws=80\)",
    ):
        with pytest.warns(SamplerWarning, match="low effective sample size"):  # 320 draws are still short: reported
            extended = bs.fit(sweep, "kaplan_n", **options)
    assert extended.posterior.sizes["draw"] == 80 and extended.settings["draws"] == 80
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = bs.fit(sweep, "kaplan_n", extend=False, **options)
    assert plain.posterior.sizes["draw"] == 40
    assert not [w for w in caught if w.category is SamplingExtended]
    assert {w.filename for w in caught if w.category is SamplerWarning} == {__file__}  # the user's line


@pytest.mark.slow
def test_noise_that_grows_with_n_is_recovered_and_widens_forecasts_at_large_n(tmp_path):
    """A sweep whose noise sd grows by exp(0.3) per e-fold of N: sigma_slope holds the truth, bands follow it."""
    import pandas as pd

    rng = np.random.default_rng(3)
    design = pd.DataFrame({"N": np.exp(rng.uniform(np.log(1e7), np.log(1e10), 160))})
    design["D"] = design["N"] * np.exp(rng.uniform(np.log(5), np.log(80), 160))
    runs = bs.datasets.simulate_runs(
        "chinchilla", bs.datasets.CHINCHILLA_TRUTH, design, noise=0.01, noise_slope=0.3, seed=5
    )
    quick = dict(draws=300, tune=400, chains=2, extrapolation="none", progressbar=False)
    fit = bs.fit(runs, "chinchilla", likelihood="normal", noise_trend=True, **quick)
    slope = fit.posterior["sigma_slope"].to_numpy().ravel()
    low, high = np.quantile(slope, [0.05, 0.95])
    assert low < 0.3 < high and low > 0.1, (low, high)
    edges = pd.DataFrame({"N": [1e7, 1e10], "D": [2e8, 2e11]})
    band = fit.predict(edges)
    width = np.log(band["pred_upper"] / band["pred_lower"]).to_numpy()
    assert width[1] / width[0] > 3, width  # exp(0.3 * log 1000) = 7.9 times the noise sd, less the law's own spread
    loaded = bs.Fit.load(fit.save(tmp_path / "trend.nc"))  # the trend and its centre come back with the fit
    assert loaded.spec.trend_centre == fit.spec.trend_centre
    np.testing.assert_allclose(loaded.predict(edges)["pred_upper"], band["pred_upper"])
    plain = bs.fit(runs, "chinchilla", likelihood="normal", **quick)  # off by default
    assert "sigma_slope" not in plain.posterior
    plain_width = np.log(plain.predict(edges)["pred_upper"] / plain.predict(edges)["pred_lower"]).to_numpy()
    assert plain_width[1] / plain_width[0] < 1.5 < width[1] / width[0]
    from bayescale.fitting.pipeline import _prepare

    *_, noise_priors, _ = _prepare(
        runs, "chinchilla", None, None, {"sigma_slope": "Normal(mu=0, sigma=0.1)"}, None, "studentt", "total"
    )
    assert noise_priors == {"sigma_slope": "Normal(mu=0, sigma=0.1)"}  # a prior on it asks for the trend too


@pytest.mark.slow
def test_numpyro_samples_the_same_model_as_nutpie(demo_runs):
    """The JAX path (``sampler="numpyro"``, GPU-capable) runs the same whitened model: same posterior, same checks."""
    pytest.importorskip("numpyro")
    quick = dict(draws=400, tune=400, chains=2, extrapolation="none", progressbar=False, seed=3)
    jax_fit = bs.fit(demo_runs, "chinchilla", sampler="numpyro", **quick)
    numba_fit = bs.fit(demo_runs, "chinchilla", **quick)
    assert jax_fit.settings["sampler"] == "numpyro" and jax_fit.diagnostics.divergences == 0
    assert {"posterior", "sample_stats", "log_likelihood"} <= set(jax_fit.idata.children)
    for name in ("E", "alpha", "beta", "sigma"):
        a, b = (f.posterior[name].to_numpy().ravel() for f in (jax_fit, numba_fit))
        assert abs(np.median(a) - np.median(b)) < 0.25 * np.std(b), name  # Monte Carlo error of 800 draws
    band = jax_fit.predict(N=7e10, D=1.4e12)
    assert (band["pred_lower"] < band["median"]).all() and (band["median"] < band["pred_upper"]).all()


def test_rewhiten_maps_the_draws_of_a_poor_whitening_to_round_ones():
    """Draws in poorly whitened coordinates (offset, stretched 30x, correlated): refitted, the same points are round."""
    from bayescale.inference.laplace import LaplaceApproximation, rewhiten

    rng = np.random.default_rng(0)
    first = LaplaceApproximation(np.array([1.0, -2.0, 0.5]), np.diag([0.1, 2.0, 1.0]), 0.0, True)
    mix = np.array([[30.0, 0, 0], [5.0, 1.0, 0], [0, 0, 0.2]])  # the draws' spread in first's coordinates
    z = rng.standard_normal((20000, 3)) @ mix.T + np.array([4.0, 0.0, -1.0])
    u = first.center + z @ first.scale.T  # the same points in the sampler's unconstrained coordinates

    def refitted(effective_draws):
        again = rewhiten(first, z, effective_draws)
        return np.linalg.solve(again.scale, (u - again.center).T).T

    many = refitted(1e9)  # plenty of effective draws: the full covariance, exactly round
    np.testing.assert_allclose(many.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.cov(many, rowvar=False), np.eye(3), atol=1e-6)
    few = refitted(3)  # 3 coordinates, 3 effective draws: the covariance shrunk halfway to its diagonal
    assert np.all((few.std(axis=0) > 0.5) & (few.std(axis=0) < 2.0))  # was 30, 5.1 and 0.2
    assert abs(np.corrcoef(few, rowvar=False)[0, 1]) > 0.1  # correlations only partly removed


@pytest.mark.slow
def test_a_rewhitened_run_that_diverges_gives_way_to_longer_chains(monkeypatch):
    """If the run whitened by the first one's draws diverges, the fit samples longer in the first coordinates and says so."""
    from dataclasses import replace

    from bayescale import defaults
    from bayescale.errors import SamplingExtended
    from bayescale.fitting import pipeline as fitting

    monkeypatch.setattr(defaults, "DRAWS", 40)
    monkeypatch.setattr(defaults, "TUNE", 40)
    calls, diagnose = [], fitting.diagnose

    def diagnose_with_a_diverging_second_run(*args, **kwargs):
        found = diagnose(*args, **kwargs)
        calls.append(found)
        return replace(found, divergences=3) if len(calls) == 2 else found

    monkeypatch.setattr(fitting, "diagnose", diagnose_with_a_diverging_second_run)
    with pytest.warns(
        SamplingExtended,
        match=r"sampled again with longer chains \(whitened by the first run's draws "
        r"it had 3 divergences\) \(tune=80, draws=80\)",
    ):
        fit = bs.fit(
            bs.datasets.synthetic_sweep(3),
            "kaplan_n",
            draws=40,
            tune=40,
            chains=4,
            progressbar=False,
            extrapolation="none",
        )
    assert len(calls) == 3 and fit.posterior.sizes["draw"] == 80 and fit.diagnostics.divergences == 0
