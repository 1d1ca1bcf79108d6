"""Downstream accuracy from the loss: metric laws, clear errors, chained forecasts, Gadre's protocol."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import fake_fit, shared_file

import bayescale as bs
from bayescale import downstream
from bayescale.cli.main import main
from bayescale.errors import BayescaleError, DataError
from bayescale.inference.diagnostics import diagnose

GADRE_LIKE = {"E": 0.76, "k": 1.4, "gamma": 0.95}


def metric_runs(n_models: int = 30, seed: int = 0) -> pd.DataFrame:
    """Models whose accuracy follows metric_exp at GADRE_LIKE, with a little noise."""
    rng = np.random.default_rng(seed)
    loss = np.linspace(2.6, 5.0, n_models)
    accuracy = 1 - GADRE_LIKE["E"] + GADRE_LIKE["k"] * np.exp(-GADRE_LIKE["gamma"] * loss)
    return pd.DataFrame({"loss": loss, "accuracy": accuracy + rng.normal(0, 0.003, n_models), "chance": 0.25})


def fake_metric_fit(values=GADRE_LIKE, kappa=0.0, draws=400) -> downstream.MetricFit:
    """A MetricFit of metric_exp whose every draw sits at ``values`` (no sampling)."""
    law = bs.get_law("metric_exp")
    posterior = xr.Dataset(
        {name: (("chain", "draw"), np.full((2, draws // 2), value)) for name, value in {**values, "phi": 1e5}.items()}
    )
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, draws // 2), bool))})
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    with np.errstate(all="ignore"):  # constant draws: R-hat is 0/0
        diagnostics = diagnose(posterior, stats, list(law.param_names))
    return downstream.MetricFit(
        law, tree, metric_runs(), "accuracy", None, diagnostics, {"chance": 0.25}, np.full(draws, kappa), 2.6
    )


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda t: t.assign(accuracy=t["accuracy"] * 100), "percentages? bayescale takes accuracies as fractions"),
        (lambda t: t.assign(accuracy=t["accuracy"].where(t.index != 4, 1.7)), "must lie in [0, 1], but rows 5"),
        (lambda t: t.drop(columns="accuracy"), "no metric column 'accuracy'"),
        (lambda t: t.assign(chance=25.0), "column 'chance': the random baseline must be a fraction"),
        (lambda t: t.assign(accuracy=0.25 + 0.001 * (t.index % 2)), "only 0 of 30 models score clearly above chance"),
        (
            lambda t: t.assign(n=100).assign(n=lambda f: f["n"].where(f.index != 2, 0.5)),
            "column 'n' (the number of questions behind each accuracy) must hold whole numbers >= 1, but rows 3",
        ),
    ],
)
def test_metric_data_errors_name_the_column_and_what_is_allowed(change, fragment):
    with pytest.raises(DataError) as caught:
        downstream.fit_metric(change(metric_runs()), "accuracy", "metric_exp")
    assert fragment in str(caught.value)


def test_laws_of_one_kind_are_refused_where_the_other_is_needed(demo_runs):
    with pytest.raises(BayescaleError, match="maps the loss to a downstream metric"):
        bs.fit(demo_runs, "metric_exp")
    with pytest.raises(BayescaleError, match="is a scaling law of the loss"):
        downstream.fit_metric(metric_runs(), "accuracy", "chinchilla")
    with pytest.raises(DataError, match="needs each row's chance level"):
        downstream.fit_metric(metric_runs().drop(columns="chance"), "accuracy", "metric_sigmoid")


def test_chained_forecast_pushes_each_loss_draw_through_the_metric_law(demo_runs):
    loss_fit = fake_fit(demo_runs, spread=0.02)
    points = pd.DataFrame({"N": [1e8, 1e10], "D": [2e9, 2e11]})
    table = downstream.chained(loss_fit, fake_metric_fit(), points, ci_prob=0.9)
    metric_at = lambda loss: 1 - GADRE_LIKE["E"] + GADRE_LIKE["k"] * np.exp(-GADRE_LIKE["gamma"] * loss)  # noqa: E731
    # a decreasing map of the loss: quantiles of accuracy are the map of the loss quantiles, swapped
    np.testing.assert_allclose(table["median"], metric_at(table["loss_median"]), rtol=2e-3)
    np.testing.assert_allclose(table["upper"], metric_at(table["loss_lower"]), rtol=2e-3)
    assert (table["pred_lower"] < table["lower"]).all() and (table["pred_upper"] > table["upper"]).all()
    assert (table["p_above_chance"] == 1.0).all()
    wider = downstream.chained(loss_fit, fake_metric_fit(kappa=2.0), points, ci_prob=0.9)
    beyond = table["metric_extrapolation"] > 0  # below the lowest loss the metric law saw (2.6)
    assert beyond.tolist() == [False, True]
    assert (wider["upper"] - wider["lower"])[beyond].iloc[0] > 2 * (table["upper"] - table["lower"])[beyond].iloc[0]
    np.testing.assert_allclose(wider["upper"][~beyond], table["upper"][~beyond])


def test_downstream_cli_needs_points_or_a_holdout(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    metric_runs().assign(N=1e9, D=2e10).to_csv(path, index=False)
    assert main(["downstream", str(path), "--metric", "accuracy"]) == 2
    assert "--at N=...,D=..." in capsys.readouterr().err
    assert main(["downstream", str(path), "--metric", "acc"]) == 2
    assert "no metric column 'acc'" in capsys.readouterr().err


@pytest.mark.slow
def test_gadre_protocol_average_accuracy_of_the_held_out_models(tmp_path, capsys):
    """Both steps fitted below 1e9 parameters; the 9 models of 1.44B and 6.89B forecast (real sampling)."""
    folder = shared_file("gadre-overtrain/DERIVED_flat_losses.csv").parent
    path = tmp_path / "gadre.csv"
    bs.datasets.load_gadre_downstream(folder).to_csv(path, index=False)
    figure, report = tmp_path / "fan.png", tmp_path / "downstream.html"
    assert (
        main(
            [
                "downstream",
                str(path),
                "--metric",
                "accuracy",
                "--group",
                "dataset",
                "--holdout",
                "N >= 1e9",
                "--plot",
                str(figure),
                "--report",
                str(report),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert figure.stat().st_size > 20_000  # the two-step fan chart
    text = report.read_text()
    assert "Step 2: Downstream error decaying exponentially" in text and text.count("data:image/png") >= 3
    assert result["n_heldout"] == 9 and result["n_train"] == 95
    assert {"N", "D", "metric", "median", "pred_lower", "pred_upper"} <= set(result["runs"][0])
    assert sum(r["inside_90"] for r in result["runs"]) >= 8
    assert result["median_abs_error"] <= 0.02


@pytest.mark.slow
@pytest.mark.parametrize("grouped", [False, True])
def test_metric_mode_is_the_mode_of_the_model_that_is_sampled(grouped):
    """The internal splits' mode maximises build_metric_model's own log density (with its Jacobian), per coordinate."""
    law = bs.get_law("metric_exp")
    runs = metric_runs(24)
    data = {
        "loss": runs["loss"].to_numpy(),
        "chance": runs["chance"].to_numpy(),
        "accuracy": runs["accuracy"].to_numpy(),
        "n": None,
        "codes": np.arange(24) % 2,
    }
    levels, group = (["a", "b"], "corpus") if grouped else (None, None)
    mode = downstream.metric_mode(law, data, levels, group)
    model = downstream.build_metric_model(law, data, levels, group)
    logp = model.compile_logp(jacobian=True)
    point = {
        model.rvs_to_values[rv].name: (
            model.rvs_to_transforms[rv].forward(mode[rv.name]).eval()
            if model.rvs_to_transforms.get(rv) is not None
            else mode[rv.name]
        )
        for rv in model.free_RVs
    }
    best = logp(point)
    for name, value in point.items():
        for step in (-1e-3, 1e-3):
            moved = {**point, name: np.asarray(value) + step}
            assert logp(moved) <= best + 1e-5, (name, step)  # the optimiser stops within ~1e-7 nats
    assert abs(mode["gamma"] - GADRE_LIKE["gamma"]) < 0.1
