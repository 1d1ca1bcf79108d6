import numpy as np
import pymc as pm
import pytest

import bayescale as bs
from bayescale.errors import FormulaError
from bayescale.laws.priors import FAMILIES, Prior

EXAMPLES = [
    Prior("Normal", mu=0.3, sigma=2.0),
    Prior("StudentT", nu=3.0, mu=1.0, sigma=0.5),
    Prior("LogNormal", mu=-1.0, sigma=0.5),
    Prior("HalfNormal", sigma=0.1),
    Prior("Gamma", alpha=2.0, beta=0.1),
    Prior("Exponential", lam=2.0),
    Prior("Uniform", lower=-1.0, upper=3.0),
    Prior("Beta", alpha=2.0, beta=5.0),
    Prior("Laplace", mu=0.5, b=0.3),
]


def test_every_family_has_an_example():
    assert {p.dist for p in EXAMPLES} == set(FAMILIES)


@pytest.mark.slow
@pytest.mark.parametrize("prior", EXAMPLES, ids=str)
def test_scipy_form_is_the_pymc_distribution_of_that_name(prior):
    """Draws, medians and grids use SciPy's form; it must be the distribution PyMC's model samples."""
    x = prior.sample(np.random.default_rng(0), 5)
    expected = pm.logp(getattr(pm, prior.dist).dist(**prior.params), x).eval()
    np.testing.assert_allclose(prior.logpdf(x), expected, atol=1e-7)  # PyMC rounds log(2 pi) a little differently


@pytest.mark.parametrize("prior", EXAMPLES, ids=str)
def test_unconstrained_map_is_pymcs_default_transform(prior):
    """The sampler's coordinates are the generative model's value variables: PyMC's default transforms."""
    import pytensor.tensor as pt

    with pm.Model() as model:
        rv = getattr(pm, prior.dist)("x", **prior.params)
    x = prior.sample(np.random.default_rng(1), 5)
    transform = model.rvs_to_transforms[rv]
    value = x if transform is None else transform.forward(pt.as_tensor(x), *rv.owner.inputs).eval()
    np.testing.assert_allclose(prior.support.to_unconstrained(x), value, rtol=1e-9)


@pytest.mark.parametrize("prior", EXAMPLES, ids=str)
def test_unconstrained_map_round_trips_with_correct_jacobian(prior):
    support = prior.support
    u = np.linspace(-2, 2, 7)
    x, log_jac = support.from_unconstrained(u, np)
    np.testing.assert_allclose(support.to_unconstrained(x), u, atol=1e-9)
    h = 1e-6
    numeric = np.log(
        np.abs(support.from_unconstrained(u + h, np)[0] - support.from_unconstrained(u - h, np)[0]) / (2 * h)
    )
    np.testing.assert_allclose(log_jac, numeric, atol=1e-6)


def test_prior_text_is_parsed_not_evaluated():
    assert Prior.parse("LogNormal(mu=log(406.4), sigma=2)") == Prior("LogNormal", mu=np.log(406.4), sigma=2.0)
    assert Prior.parse("Normal(0.3, 0.1)") == Prior("Normal", mu=0.3, sigma=0.1)
    assert Prior.parse({"dist": "HalfNormal", "sigma": 1}) == Prior("HalfNormal", sigma=1.0)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("Cauchy(0, 1)", "unknown prior distribution 'Cauchy'"),
        ("Normal(0)", "missing sigma"),
        ("Normal(0, -1)", "needs sigma > 0"),
        ("Normal(mu=__import__('os'), sigma=1)", "unknown function '__import__'"),
        ("Normal(mu=x, sigma=1)", "must be numbers"),
        ("os.system('x')", "looks like"),
        ("Uniform(2, 1)", "lower < upper"),
        ("Normal(0, 1, 2)", "at most 2"),
    ],
)
def test_bad_prior_text_gets_a_clear_error(text, fragment):
    with pytest.raises(FormulaError) as info:
        Prior.parse(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize("priors", [{"sigma": "HalfNormal(sigma=N_max)"}, {"E_sd": "HalfNormal(sigma=N_max)"}])
def test_a_noise_or_spread_prior_in_terms_of_the_data_range_is_refused_by_name(demo_runs, priors):
    table = demo_runs.frame.assign(dataset=lambda t: np.where(t.index % 2, "a", "b"))
    with pytest.raises(bs.BayescaleError, match=f"the prior of '{next(iter(priors))}'.*only a law parameter's prior"):
        bs.build_model(table, "chinchilla", priors=priors, pool={"E": "dataset"})
