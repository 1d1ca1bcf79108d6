"""The named-variable PyMC model: same posterior as the sampler's coordinates, prior and posterior predictive."""

from dataclasses import replace

import numpy as np
import pymc as pm
import pytensor
import pytest
from test_pooling import two_families

import bayescale as bs
from bayescale.data.datasets import CHINCHILLA_TRUTH
from bayescale.laws.likelihood import get_likelihood
from bayescale.model.generative import build_generative, free_variable_values
from bayescale.model.spec import ModelSpec
from bayescale.model.whitened import build_whitened

pytestmark = pytest.mark.filterwarnings("ignore::bayescale.errors.SamplerWarning")  # tiny fits on purpose


def _forward_transforms(model):
    """PyMC's own transform of every free variable, compiled once: value -> value variable."""
    out = {}
    for rv in model.free_RVs:
        transform = model.rvs_to_transforms.get(rv)
        x = rv.type()
        out[rv.name] = (
            (lambda v: v)
            if transform is None
            else pytensor.function([x], transform.forward(x, *rv.owner.inputs), on_unused_input="ignore")
        )
    return out


def _value_point(model, spec, u):
    """The generative model's value variables (transformed, as PyMC samples them) at sampler coordinates ``u``."""
    free = free_variable_values(spec, spec.constrain(u))
    forward = model.forward_transforms
    return {
        model.rvs_to_values[rv].name: forward[rv.name](np.asarray(free[rv.name], dtype=float)) for rv in model.free_RVs
    }


def _log_jacobian(model, spec, u, step=1e-6):
    """log |det d(value variables) / du| by central differences: independent of both implementations."""

    def flat(x):
        return np.concatenate([np.ravel(v) for v in _value_point(model, spec, x).values()])

    columns = [(flat(u + e) - flat(u - e)) / (2 * step) for e in np.eye(len(u)) * step]
    return np.linalg.slogdet(np.array(columns).T)[1]


def _specs():
    demo = bs.load_runs(bs.datasets.demo_runs_path())
    law = bs.get_law("chinchilla")
    yield "anchored floor", ModelSpec.from_runs(law, get_likelihood("studentt"), demo)
    yield "kaplan, normal", ModelSpec.from_runs(bs.get_law("kaplan_n"), get_likelihood("normal"), demo)
    yield "raw scale, anchored floor", ModelSpec.from_runs(replace(law, scale="raw"), get_likelihood("normal"), demo)
    families = bs.load_runs(two_families(), keep=["family"])
    pooled = ModelSpec.from_runs(law, get_likelihood("laplace"), families, pool={"E": "family", "alpha": "family"})
    yield "pooled, non-centred", pooled
    partly = replace(pooled, pooled={**pooled.pooled, "alpha": replace(pooled.pooled["alpha"], centred=(True, False))})
    yield "pooled, partly centred", partly
    yield "pooled, all centred", replace(pooled, pooled={n: replace(p, centred=True) for n, p in pooled.pooled.items()})
    adaptive = {n: replace(p, adaptive=((0.2, -0.1), (0.05, 3.0))) for n, p in pooled.pooled.items()}
    yield "pooled, adaptive", replace(pooled, pooled=adaptive)  # one group pinned by its data, one not


@pytest.mark.slow
@pytest.mark.parametrize("label, spec", list(_specs()), ids=[label for label, _ in _specs()])
def test_the_sampled_density_is_the_generative_density_in_the_samplers_coordinates(label, spec):
    """The whitened model's log-density is the generative model's, plus the log-Jacobian of the coordinates.

    The Jacobian is measured by central differences of the map to the generative model's value
    variables, independently of the derivation; the whitening's own Jacobian is a constant.
    """
    model = build_generative(spec)
    model.forward_transforms = _forward_transforms(model)
    logp = model.compile_logp(jacobian=True)
    rng = np.random.default_rng(3)
    base = spec.unconstrain({**CHINCHILLA_TRUTH, "sigma": 0.02, "nu": 5.0, "Nc": 8.8e13, "alphaN": 0.076})
    scale = np.linalg.qr(rng.standard_normal((len(base), len(base))))[0] * 0.3  # any invertible whitening
    sampled = build_whitened(spec, base, scale).compile_logp()
    gaps = []
    for _ in range(4):
        z = 0.1 * rng.standard_normal(len(base))
        u = base + scale @ z
        assert np.isfinite(sampled({"z": z}))
        gaps.append(sampled({"z": z}) - logp(_value_point(model, spec, u)) - _log_jacobian(model, spec, u))
    np.testing.assert_allclose(gaps, gaps[0], atol=1e-5)


def test_generative_model_has_named_variables_data_inputs_and_group_dims():
    families = bs.load_runs(two_families(), keep=["family"])
    spec = ModelSpec.from_runs(bs.get_law("chinchilla"), get_likelihood("studentt"), families, pool={"alpha": "family"})
    model = build_generative(spec)
    assert [rv.name for rv in model.free_RVs] == [
        "E",
        "A",
        "alpha_pop",
        "alpha_sd",
        "alpha_offset",
        "B",
        "beta",
        "sigma",
        "nu",
    ]
    assert {"N", "D", "family_idx"} <= set(model.named_vars) and model["N"] in model.data_vars
    assert model.named_vars_to_dims["alpha"] == ("family",) and model.named_vars_to_dims["log_loss"] == ("obs",)
    assert type(model["A"].owner.op).__name__ == "LogNormalRV"
    prior = pm.sample_prior_predictive(draws=50, model=model, random_seed=1)
    assert prior["prior_predictive"]["log_loss"].shape == (1, 50, len(families.frame))
    assert prior["prior"]["alpha"].shape == (1, 50, 2)


@pytest.fixture(scope="module")
def tiny_fit(demo_runs):
    return bs.fit(demo_runs, "chinchilla", draws=200, tune=200, chains=2, extrapolation="none", progressbar=False)


@pytest.mark.slow
def test_fit_adds_prior_and_posterior_predictive_groups_and_saves_them(tiny_fit, tmp_path):
    n = tiny_fit.n_obs
    tree = tiny_fit.prior_predictive(draws=40)
    assert tree["prior_predictive"]["log_loss"].shape == (1, 40, n)
    assert set(tree["prior"].data_vars) >= {"E", "A", "alpha", "B", "beta", "sigma", "nu"}
    tree = tiny_fit.posterior_predictive()
    replicated = tree["posterior_predictive"]["log_loss"]
    assert replicated.shape == (2, 200, n)
    observed = tree["observed_data"]["log_loss"].to_numpy()
    np.testing.assert_allclose(observed, np.log(tiny_fit.runs["loss"]))
    inside = np.mean(
        (replicated.quantile(0.05, ("chain", "draw")) <= observed)
        & (observed <= replicated.quantile(0.95, ("chain", "draw")))
    )
    assert inside > 0.8  # the demo data are drawn from the law: the replicates cover them
    again = bs.Fit.load(tiny_fit.save(tmp_path / "fit.nc"))
    assert {"prior", "prior_predictive", "posterior_predictive"} <= set(again.idata.children)
    assert len(again.runs) == n  # constant_data is still the runs table


def test_the_stored_log_likelihood_is_pymcs_on_the_generative_model(tiny_fit):
    """LOO's pointwise log-likelihood is PyMC's ``compute_log_likelihood`` on the generative model at the fit's draws."""
    from bayescale.model.generative import pointwise_log_likelihood

    stored = tiny_fit.idata["log_likelihood"]["log_loss"]
    again = pointwise_log_likelihood(tiny_fit.spec, tiny_fit.posterior.isel(draw=slice(0, 20)))
    np.testing.assert_allclose(again.to_numpy(), stored.isel(draw=slice(0, 20)).to_numpy(), rtol=1e-8, atol=1e-8)
    assert stored.dims == ("chain", "draw", "obs") and stored.shape[-1] == tiny_fit.n_obs


def test_set_data_and_posterior_predictive_reproduce_predict(tiny_fit):
    points = {"N": np.array([1e10, 7e10]), "D": np.array([2e11, 1.4e12])}
    model = tiny_fit.model.copy()
    trace = tiny_fit.posterior[[rv.name for rv in model.free_RVs]]
    with model:
        pm.set_data(points, coords={"obs": np.arange(2)})
        drawn = pm.sample_posterior_predictive(
            trace, var_names=["log_loss"], predictions=True, random_seed=5, progressbar=False
        )
    loss = np.exp(drawn["predictions"]["log_loss"])
    ours = tiny_fit.predict(points, ci_prob=0.9)
    for q, column in ((0.05, "pred_lower"), (0.5, "median"), (0.95, "pred_upper")):
        np.testing.assert_allclose(loss.quantile(q, ("chain", "draw")), ours[column], rtol=0.01)


@pytest.mark.slow
def test_a_user_term_is_added_to_build_model_and_sampled_with_the_package_settings():
    """The README's recipe: a per-family shift of the log-loss, estimated next to the law."""
    table = two_families(shift=0.0)
    table.loc[table["family"] == "b", "loss"] *= np.exp(0.05)  # family b reads 5% higher on every run

    def family_shift(model):
        shift = pm.Normal("family_shift", 0.0, 0.1, dims="family")
        pm.Deterministic("b_minus_a", shift[1] - shift[0])
        return shift[model["family_idx"]]

    model = bs.build_model(table, "chinchilla", likelihood="normal", groups=["family"], terms=[family_shift])
    assert "family_shift" in [rv.name for rv in model.free_RVs]
    with pytest.raises(bs.BayescaleError, match="unknown sampler"):
        bs.sample_model(model, sampler="gibbs")
    idata = bs.sample_model(model, draws=300, tune=500, chains=2, progressbar=False)
    difference = idata["posterior"]["b_minus_a"]
    assert float(difference.quantile(0.05)) < 0.05 < float(difference.quantile(0.95))
    assert float(difference.quantile(0.05)) > 0.02
    # the same model through bs.fit: whitened with the law, a Fit with the term's variables reported
    fit = bs.fit(
        table, "chinchilla", likelihood="normal", model=model, draws=300, tune=500, chains=2, progressbar=False
    )
    assert fit.settings["model"] == {"extra": ["family_shift", "b_minus_a"], "mean_terms": ["family_shift"]}
    difference = fit.posterior["b_minus_a"]
    assert list(fit.posterior["family_shift"].dims) == ["chain", "draw", "family"]
    assert {"family_shift[a]", "b_minus_a"} <= set(fit.summary().index)
    with pytest.raises(bs.BayescaleError, match=r"mean log-loss carries term\(s\) of your own model \(family_shift\)"):
        fit.predict(N=1e10, D=2e11, family="a")
    other = bs.build_model(table.iloc[:-1], "chinchilla", likelihood="normal", groups=["family"], terms=[family_shift])
    with pytest.raises(bs.BayescaleError, match="input 'N' differs from these runs"):
        bs.fit(table, "chinchilla", likelihood="normal", model=other)
    assert float(difference.quantile(0.05)) < 0.05 < float(difference.quantile(0.95))
    assert float(difference.quantile(0.05)) > 0.02
    with pytest.raises(bs.DataError, match="corpus are not in the runs table"):
        bs.build_model(table, "chinchilla", groups=["corpus"])


@pytest.mark.slow
def test_simulation_based_calibration_small_version():
    """A small SBC run (benchmarks/sbc.py has the full one): ranks of the truth among posterior draws are uniform.

    Twelve sweeps from the prior predictive of fit.model on the demo design, each fitted by bs.fit as a
    user would; a broken change of coordinates puts the truth at an extreme rank and fails this at once.
    """
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from sbc import holm, rank_task, simulate, uniformity

    design, truths, losses = simulate("chinchilla", 12, 7, {})
    ranks = [
        rank_task("chinchilla", design, truth, loss, 100 + i, 150, {})["ranks"]
        for i, (truth, loss) in enumerate(zip(truths, losses))
    ]
    p_values = {name: uniformity(np.array([r[name] for r in ranks]))["chi2_p_value"] for name in truths[0]}
    assert min(holm(p_values).values()) > 0.01, p_values
