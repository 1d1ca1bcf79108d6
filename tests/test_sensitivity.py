"""What the data determine: power-scaling sensitivity, contraction and identifiability, with known answers.

A sweep over three decades of N and three tokens-per-parameter ratios determines every law parameter; the
same design squeezed into 0.6 decades of N does not separate the floor E from A / N**alpha, so its forecast at
Chinchilla's scale rests on the priors. The warnings must fire in the second case and only there.
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import fake_fit

import bayescale as bs
from bayescale.cli.main import main
from bayescale.forecast import sensitivity as sens
from bayescale.laws.formula import Formula

CHINCHILLA = {"N": [7e10], "D": [1.4e12]}


def design(low: float, high: float, sizes: int = 8, ratios=(5, 20, 80)) -> pd.DataFrame:
    return pd.DataFrame([{"N": n, "D": n * r} for n in np.logspace(low, high, sizes) for r in ratios])


def sweep_fit(low: float, high: float, **options):
    runs = bs.datasets.simulate_runs("chinchilla", bs.datasets.CHINCHILLA_TRUTH, design(low, high), noise=0.01)
    settings = dict(draws=300, tune=300, chains=2, likelihood="normal", extrapolation="none", progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bs.fit(runs, "chinchilla", **{**settings, **options})


@pytest.fixture(scope="module")
def wide():
    return sweep_fit(7.5, 10.5)


@pytest.fixture(scope="module")
def narrow():
    return sweep_fit(7.7, 8.3)


def test_a_formula_splits_into_its_additive_terms():
    assert [t.text for t in Formula("E + A / N**alpha + B / D**beta").terms()] == ["E", "A / N**alpha", "B / D**beta"]
    assert [t.text for t in Formula("E + A * N - B * (D + 1)").terms()] == ["E", "A * N", "-(B * (D + 1))"]
    assert [t.text for t in Formula("exp(a) * N").terms()] == ["exp(a) * N"]


def test_the_rule_and_priorsenses_diagnoses():
    assert sens.diagnosis(0.08, 0.12) == "prior-data conflict"
    assert sens.diagnosis(0.08, 0.03) == "strong prior / weak likelihood"
    assert sens.diagnosis(0.01, 0.12) == "ok"
    assert sens.prior_driven(0.084, 0.123) and sens.prior_driven(0.03, 0.05)  # at least half the likelihood's
    assert not sens.prior_driven(0.083, 0.229) and not sens.prior_driven(0.005, 0.0)  # less; below the floor


@pytest.mark.parametrize("ratio", [1.0, 1 / 3, 1 / 9])
def test_without_conflict_the_ratio_of_the_sensitivities_is_the_ratio_of_precisions(ratio):
    """The rule's ground: a Gaussian prior and likelihood with the same centre, power-scaled by arviz_stats."""
    from arviz_stats import psense

    draws = np.random.default_rng(0).standard_normal((4, 2000)) / np.sqrt(1 + 1 / ratio)
    tree = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({"u": (("chain", "draw"), draws)}),
            "log_prior": xr.Dataset({"u": (("chain", "draw"), -0.5 * draws**2)}),
            "log_likelihood": xr.Dataset({"y": (("chain", "draw"), -0.5 / ratio * draws**2)}),
        }
    )
    prior, likelihood = (float(psense(tree, group=g)["u"]) for g in ("prior", "likelihood"))
    assert prior / likelihood == pytest.approx(ratio, rel=0.05)


def test_a_fake_fit_gets_a_row_per_parameter_and_keeps_its_log_prior(demo_runs):
    fit = fake_fit(demo_runs, spread=0.02, draws=300)
    fit.idata["log_prior"] = xr.Dataset({"E": fit.posterior["E"] * 0})  # someone else's: computed anew
    table = sens.sensitivity(fit, prior_draws=200, seed=1)
    assert list(table.index) == list(fit.spec.names)
    assert {"prior", "likelihood", "diagnosis", "prior_driven", "contraction"} <= set(table.columns)
    assert (table["contraction"] > 0.9).all()  # 2% spread against priors tens of percent wide
    assert fit.idata["log_prior"].attrs["bayescale"] == sens.LOG_PRIOR_KIND
    assert set(fit.idata["log_prior"].data_vars) == set(fit.spec.names)
    # the unconstrained density: PyMC's log prior of E plus log E (the log map's Jacobian)
    e = fit.posterior["E"].to_numpy()
    lognormal = -np.log(e) - 0.5 * ((np.log(e) - np.log(1.69)) / 0.5) ** 2 - np.log(0.5 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(fit.idata["log_prior"]["E"].to_numpy(), lognormal + np.log(e), rtol=1e-6)


def test_fit_and_its_summary_compute_none_of_it(demo_runs, monkeypatch):
    from bayescale.cli import fit_commands

    fit = fake_fit(demo_runs, spread=0.02)
    monkeypatch.setattr(bs, "sensitivity", lambda *a, **k: pytest.fail("fit must not compute the sensitivity"))
    result = fit_commands.summary_result(fit, 0.9)  # what `bayescale fit` prints
    assert "log_prior" not in fit.idata.children and "prior_sensitivity" not in result["params"]["alpha"]


@pytest.mark.slow
def test_a_wide_sweep_determines_every_law_parameter_and_its_forecast(wide):
    table = sens.sensitivity(wide, prior_draws=200)
    law = list(wide.law.param_names)
    assert not table.loc[law, "prior_driven"].any(), table
    assert (table.loc[law, "contraction"] > 0.9).all()
    forecast = sens.forecast_sensitivity(wide, CHINCHILLA)
    assert not forecast["prior_driven"].any() and forecast["note"].isna().all()
    assert forecast.loc[0, "prior_sensitivity"] < 0.5 * forecast.loc[0, "likelihood_sensitivity"]
    assert sens.identifiability(wide)["findings"] == []


@pytest.mark.slow
def test_a_narrow_sweep_names_the_sum_it_determines_and_the_priors_that_carry_the_forecast(narrow):
    table = sens.sensitivity(narrow, prior_draws=200)
    assert table.loc[["E", "A", "alpha"], "prior_driven"].any(), table
    forecast = sens.forecast_sensitivity(narrow, CHINCHILLA)
    assert forecast.loc[0, "prior_driven"]
    assert set(forecast.loc[0, "driven_by"]) & {"E", "A", "alpha"}
    note = forecast.loc[0, "note"]
    assert note.startswith("the forecast at N=7e+10, D=1.4e+12 is prior-driven")
    assert "at larger N (the runs reach N = 2e+08, the forecast is at 7e+10)" in note
    found = sens.identifiability(narrow)
    assert found["narrow"] == ["N"]
    (finding,) = found["findings"]
    assert "0.6 decades of N" in finding and "The runs determine E + A / N**alpha at N around 1e+08" in finding
    (combination,) = found["combinations"]
    assert combination["relative_sd"] * sens.UNDETERMINED_FACTOR <= max(combination["parts"].values())


@pytest.mark.slow
def test_predict_check_and_summary_carry_it_as_text_and_json(narrow, tmp_path, capsys):
    path = narrow.save(tmp_path / "narrow.nc")
    assert main(["predict", str(path), "--at", "N=7e10,D=1.4e12", "--at", "N=1e8,D=2e9", "--json"]) == 0
    far, inside = json.loads(capsys.readouterr().out)["predictions"]
    assert far["prior_driven"] is True and far["prior_sensitivity"] > 0 and far["prior_note"]
    assert inside["prior_driven"] is False and inside["prior_note"] is None
    assert main(["predict", str(path), "--at", "N=7e10,D=1.4e12"]) == 0
    assert "warning: the forecast at N=7e+10, D=1.4e+12 is prior-driven" in capsys.readouterr().out
    assert main(["predict", str(path), "--at", "N=7e10,D=1.4e12", "--no-sensitivity", "--json"]) == 0
    assert "prior_sensitivity" not in json.loads(capsys.readouterr().out)["predictions"][0]
    assert main(["check", str(path), "--prior-draws", "200", "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert set(checked["sensitivity"]) == set(checked["contraction"]) == set(narrow.spec.names)
    assert set(checked["sensitivity"]["alpha"]) == {"prior", "likelihood", "diagnosis"}
    assert any(f.startswith("identifiability: the runs span 0.6 decades of N") for f in checked["findings"])
    assert main(["summary", str(path), "--json"]) == 0
    params = json.loads(capsys.readouterr().out)["params"]
    assert {"prior_sensitivity", "contraction", "prior_driven"} <= set(params["alpha"])


@pytest.mark.slow
def test_a_pooled_fit_reports_the_population_value_the_spread_and_each_group():
    runs = pd.concat(
        [
            bs.datasets.simulate_runs(
                "chinchilla", {**bs.datasets.CHINCHILLA_TRUTH, "E": e}, design(7.5, 9.5, 5), noise=0.01, seed=i
            ).assign(corpus=name)
            for i, (name, e) in enumerate({"a": 1.6, "b": 1.8, "c": 2.0}.items())
        ],
        ignore_index=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bs.fit(
            runs,
            "chinchilla",
            pool={"E": "corpus"},
            draws=300,
            tune=300,
            chains=2,
            extrapolation="none",
            progressbar=False,
        )
    table = sens.sensitivity(fit, prior_draws=200)
    assert {"E[a]", "E[b]", "E[c]", "E_pop", "E_sd"} <= set(table.index)
    assert set(sens.log_densities(fit)[0].data_vars) == set(fit.spec.names) - {"E"}  # E_offset is not scaled
    assert table.loc["E_sd", "contraction"] < table.loc["E[a]", "contraction"]  # three groups say little of a spread


@pytest.mark.slow
def test_epoch_determines_alpha_beta_and_chinchillas_forecast_and_its_smallest_runs_do_not(epoch_path):
    """Epoch's 240 runs (default fit): alpha, beta and the forecast at N=7e10, D=1.4e12 come from the runs. Its
    37 runs with N <= 2e8 (half a decade of N): the floor and the data term are prior-driven, and so is that forecast.
    """
    frame = bs.datasets.load_epoch_chinchilla(epoch_path).frame
    for runs, carried in ((frame, False), (frame[frame["N"] <= 2e8].reset_index(drop=True), True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = bs.fit(runs, "chinchilla", progressbar=False)
        table = sens.sensitivity(fit)
        forecast = sens.forecast_sensitivity(fit, CHINCHILLA).iloc[0]
        assert forecast["prior_driven"] == carried, forecast
        if not carried:
            assert not table.loc[["alpha", "beta"], "prior_driven"].any(), table
            assert (table.loc[list(fit.law.param_names), "prior"] < 0.05).all()
            assert sens.identifiability(fit)["findings"] == []
        else:
            assert table.loc["E", "prior_driven"] and table.loc["B", "prior_driven"], table
            assert "alpha" in forecast["driven_by"] and "at larger N (the runs reach N = 1.96e+08" in forecast["note"]
            assert "E + A / N**alpha at N around 1.3e+08" in sens.identifiability(fit)["findings"][0]


# -- forecasts drawn from several posteriors: a stack's mixture --------------------------------------
def _gaussian(name: str, ratio: float, n: int, start: int, seed: int):
    """Draws of a Gaussian posterior whose prior holds ``ratio`` of the likelihood's precision, as a Source."""
    from bayescale.forecast.joint_sensitivity import Source

    u = np.random.default_rng(seed).standard_normal(n) / np.sqrt(1 + 1 / ratio)
    rows = np.arange(start, start + n)
    return u, Source(
        name, f"{name}'s", {"u": -0.5 * u**2}, -0.5 / ratio * u**2, np.arange(n), lambda *_: "more runs", rows
    )


@pytest.mark.parametrize("loose_share", [0.0, 0.5, 1.0])
def test_a_mixture_is_prior_driven_through_the_component_whose_prior_carries_it(loose_share):
    """A stack of a prior-driven posterior (the prior holds half of what is known) and a determined one (1/31)."""
    from bayescale.forecast.joint_sensitivity import joint_sensitivity

    n, parts = 8000, []
    loose = int(n * loose_share)
    for k, (name, ratio, size, start) in enumerate((("loose", 1.0, loose, 0), ("tight", 1 / 30, n - loose, loose))):
        if size:
            parts.append((*_gaussian(name, ratio, size, start, seed=k), np.full(size, k)))
    values, sources, blocks = (list(x) for x in zip(*parts))
    (row,) = joint_sensitivity(np.concatenate(values)[:, None], sources, ["it"], np.concatenate(blocks)).to_dict(
        "records"
    )
    if loose_share in (0.0, 1.0):  # one component: the ratio of precisions, as for one fit
        assert row["prior_sensitivity"] / row["likelihood_sensitivity"] == pytest.approx(
            loose_share or 1 / 30, rel=0.15
        )
    assert row["prior_driven"] == (loose_share > 0)
    if loose_share == 0.5:
        spread = row["source_sensitivity"]
        assert spread["loose"] > 10 * spread["tight"] and row["driven_by"] == ["loose's u"]
        assert row["note"].startswith("it is prior-driven") and "mostly through the prior on loose's u" in row["note"]


def test_a_stack_given_all_the_weight_of_one_fit_has_that_fits_sensitivity(demo_runs):
    from bayescale.forecast.joint_sensitivity import stacked_sensitivity

    one, other = fake_fit(demo_runs, spread=0.05, draws=500, seed=1), fake_fit(demo_runs, spread=0.01, seed=2)
    points = pd.DataFrame({"N": [7e10, 1e9], "D": [1.4e12, 2e10]})
    alone = sens.forecast_sensitivity(one, points)
    stacked = stacked_sensitivity({"one": one, "other": other}, points, {"one": 1.0, "other": 0.0})
    for key in ("prior_sensitivity", "likelihood_sensitivity"):
        np.testing.assert_allclose(stacked[key], alone[key], rtol=0.01)
    assert [set(s) for s in stacked["source_sensitivity"]] == [{"one"}, {"one"}]


def test_predict_with_several_fits_gives_the_stacks_sensitivity(demo_runs, tmp_path, capsys):
    from bayescale.forecast.joint_sensitivity import stacked_sensitivity

    paths = [
        fake_fit(demo_runs, spread=0.02, seed=seed).save(tmp_path / f"{name}.nc")
        for seed, name in ((1, "first"), (2, "second"))
    ]
    assert main(["predict", *map(str, paths), "--at", "N=7e10,D=1.4e12", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    (row,) = result["predictions"]
    fits = {path.stem: bs.Fit.load(path) for path in paths}
    want = stacked_sensitivity(fits, pd.DataFrame(CHINCHILLA), result["weights"]).iloc[0]
    assert row["prior_sensitivity"] == pytest.approx(want["prior_sensitivity"], rel=1e-9)
    assert row["prior_driven"] is bool(want["prior_driven"]) and "prior_note" in row
    assert main(["predict", *map(str, paths), "--at", "N=7e10,D=1.4e12", "--no-sensitivity", "--json"]) == 0
    assert "prior_sensitivity" not in json.loads(capsys.readouterr().out)["predictions"][0]


@pytest.mark.slow
def test_a_stack_of_a_determined_and_a_prior_driven_fit_names_the_second(wide, narrow):
    """At Chinchilla's scale the narrow sweep's forecast rests on its priors, the wide one's does not (above)."""
    from bayescale.forecast.joint_sensitivity import stacked_sensitivity

    both = stacked_sensitivity({"wide": wide, "narrow": narrow}, CHINCHILLA, {"wide": 0.5, "narrow": 0.5}).iloc[0]
    assert both["prior_driven"], both
    assert both["source_sensitivity"]["narrow"] > 3 * both["source_sensitivity"]["wide"]
    assert all(name.startswith("narrow's ") for name in both["driven_by"])
    assert both["note"].startswith("the stacked forecast at N=7e+10, D=1.4e+12 is prior-driven")
    assert "at larger N (the runs reach N = 2e+08, the forecast is at 7e+10)" in both["note"]
    alone = stacked_sensitivity({"wide": wide, "narrow": narrow}, CHINCHILLA, {"wide": 1.0, "narrow": 0.0}).iloc[0]
    assert not alone["prior_driven"] and alone["note"] is None
