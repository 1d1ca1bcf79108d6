import numpy as np
import pytest

import bayescale as bs
from bayescale.errors import BayescaleError, FormulaError
from bayescale.laws.card import Law, models_dir


def test_catalog_has_the_published_laws_with_sources():
    laws = bs.catalog()
    assert {"chinchilla", "kaplan_n", "kaplan_d", "kaplan_c", "kaplan_nd", "saturating"} <= set(laws)
    chin = laws["chinchilla"]
    assert chin.inputs == ("N", "D") and list(chin.params) == ["E", "A", "alpha", "B", "beta"]
    refs = {n: p.reference for n, p in chin.params.items()}
    assert refs == {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
    # default priors are centred on the published values
    for param in chin.params.values():
        assert np.isclose(param.prior.median(), param.reference)
    assert laws["kaplan_c"].params["Cc"].reference == pytest.approx(3.1e8 * 8.64e19)
    assert laws["kaplan_nd"].params["Dc"].reference == 1.8e13
    for law in laws.values():
        assert law.source and law.title


def test_kaplan_nd_formula_matches_the_paper():
    law = bs.get_law("kaplan_nd")
    p = {"Nc": 6.4e13, "alphaN": 0.076, "Dc": 1.8e13, "alphaD": 0.103}
    n, d = 1e9, 1e10
    expected = ((p["Nc"] / n) ** (p["alphaN"] / p["alphaD"]) + p["Dc"] / d) ** p["alphaD"]
    assert law.formula.numpy({**p, "N": n, "D": d}) == pytest.approx(expected)


def test_law_from_formula_and_from_card_file(tmp_path):
    law = Law.from_formula(
        "E + A * N**(-alpha)",
        priors={"E": "LogNormal(0.5, 0.5)", "A": "LogNormal(6, 2)", "alpha": "LogNormal(-1, 0.5)"},
    )
    assert law.inputs == ("N",)
    card = tmp_path / "mine.toml"
    card.write_text((models_dir() / "saturating.toml").read_text().replace('name = "saturating"', 'name = "mine"'))
    assert bs.get_law(str(card)).name == "mine"
    with pytest.raises(FormulaError, match="no prior given for parameter.*alpha"):
        Law.from_formula("E + A * N**(-alpha)", priors={"E": "Normal(0, 1)", "A": "Normal(0, 1)"})


def test_priors_can_be_overridden_and_inputs_bound():
    law = bs.get_law("saturating", inputs={"X": "D"}).with_priors({"alpha": "LogNormal(mu=log(0.28), sigma=0.2)"})
    assert law.inputs == ("D",) and "D" in law.formula.names
    assert law.params["alpha"].prior.params["sigma"] == 0.2
    with pytest.raises(BayescaleError, match="no parameter.*gamma.*E, A, alpha"):
        law.with_priors({"gamma": "Normal(0, 1)"})
    with pytest.raises(BayescaleError, match="has no input.*Z"):
        bs.get_law("saturating", inputs={"Z": "D"})
    with pytest.raises(BayescaleError, match="unknown law 'chinchila'.*chinchilla"):
        bs.get_law("chinchila")


def test_law_round_trips_through_its_dict():
    law = bs.get_law("chinchilla")
    again = Law.from_dict(law.to_dict())
    assert again.formula.text == law.formula.text and again.params == law.params


def test_an_anchor_must_be_an_additive_parameter():
    base = {
        "name": "t",
        "inputs": ["N"],
        "formula": "E + A * N**(-alpha)",
        "params": {p: {"prior": "LogNormal(0, 1)"} for p in ("E", "A", "alpha")},
    }
    assert Law.from_dict({**base, "anchor": "E"}).anchor == "E"
    with pytest.raises(FormulaError, match="anchor 'A' must enter the formula additively"):
        Law.from_dict({**base, "anchor": "A"})
    with pytest.raises(FormulaError, match="anchor 'F' is not a parameter"):
        Law.from_dict({**base, "anchor": "F"})


def test_anchored_floor_round_trips_through_the_loss_at_the_centre(demo_runs):
    from bayescale.laws.likelihood import get_likelihood
    from bayescale.model.spec import ModelSpec

    spec = ModelSpec.from_runs(bs.get_law("chinchilla"), get_likelihood("normal"), demo_runs)
    assert spec.anchor == "E" and spec.free_names[0] == "log_loss_at_centre (sets E)"
    values = {**bs.datasets.CHINCHILLA_TRUTH, "sigma": 0.01}
    u = spec.unconstrain(values)
    centre = spec.law.formula.numpy({**spec.reference, **values})
    assert u[0] == pytest.approx(np.log(centre))
    back = spec.constrain(u)
    assert {k: pytest.approx(v) for k, v in back.items()} == values
    below_the_rest = u.copy()
    below_the_rest[0] = np.log(centre - values["E"] - 0.01)  # the loss at the centre below the other terms: E < 0
    from bayescale.inference.laplace import _compiled_objective

    assert _compiled_objective(spec)(below_the_rest)[0] == np.inf  # the sampler's density there is zero


def test_a_formula_may_be_centred_at_the_data_and_is_bound_to_numbers_when_fitted():
    law = Law.from_formula(
        "E + A * (X / X_mid)**(-alpha)", {"E": "HalfNormal(2)", "A": "HalfNormal(2)", "alpha": "HalfNormal(1)"}
    )
    assert law.inputs == ("X",)  # X_mid is no parameter and needs no prior
    bound = law.with_inputs({"X": "D"})
    assert bound.formula.names == {"E", "A", "alpha", "D", "D_mid"}
    fixed = bound.bind_data({"D": np.array([1e9, 4e9, 1.6e10])})
    assert "D_mid" not in fixed.formula.names and "D / 4000000000.0" in fixed.formula.text
    values = {"E": 1.0, "A": 2.0, "alpha": 0.5, "D": 1.6e10}
    assert fixed.formula.numpy(values) == pytest.approx(1.0 + 2.0 * 4.0**-0.5)
    assert Law.from_dict(fixed.to_dict()).formula.text == fixed.formula.text  # a fit stores the numbers
    with pytest.raises(BayescaleError, match=r"centres its formula at D_mid.*every value > 0; found 0"):
        bound.bind_data({"D": np.array([0.0, 1e9])})
    with pytest.raises(FormulaError, match=r"no prior given for parameter\(s\) N_mid"):  # X's centre, not N's
        Law.from_formula(
            "E + A * (X / N_mid)**(-alpha)", {"E": "HalfNormal(2)", "A": "HalfNormal(2)", "alpha": "HalfNormal(1)"}
        )


def test_the_farseer_card_is_the_papers_law_in_centred_coordinates():
    """Li et al. 2025: L = exp(s N^q + S) + exp(B N^b + Q) D^(-exp(A N^a + E)); floor and exponent exactly the paper's."""
    runs = {"N": np.geomspace(5e7, 2e10, 9), "D": np.geomspace(1e9, 4e11, 9)}
    law = bs.get_law("farseer").bind_data(runs)
    n_mid, d_mid = float(f"{np.sqrt(5e7 * 2e10):.4g}"), float(f"{np.sqrt(1e9 * 4e11):.4g}")
    rng = np.random.default_rng(3)
    for _ in range(5):
        typical = [1.0, -0.1, -0.15, -0.7, 0.0, 0.05, -1.2, 0.0, 0.05]
        centred = {n: float(v) for n, v in zip(law.params, rng.normal(0, 0.15, 9) + typical)}
        paper = {n: float(d.formula.numpy(centred)) for n, d in law.derived.items()}
        n, d = rng.uniform(1e8, 3e10), rng.uniform(1e9, 1e12)
        coefficient = np.exp(centred["Q0"] + centred["B0"] * ((n / n_mid) ** centred["b"] - 1) / centred["b"])
        expected = np.exp(paper["s"] * n ** centred["q"] + paper["S"]) + coefficient * (d / d_mid) ** -np.exp(
            paper["A"] * n ** centred["a"] + paper["E"]
        )
        assert law.formula.numpy({**centred, "N": n, "D": d}) == pytest.approx(expected, rel=1e-9)
        assert paper["beta_mid"] == pytest.approx(np.exp(paper["A"] * n_mid ** centred["a"] + paper["E"]))
