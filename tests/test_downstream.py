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


def fake_metric_fit(values=GADRE_LIKE, kappa=0.0, draws=400, table=None, group=None) -> downstream.MetricFit:
    """A MetricFit of metric_exp whose every draw sits at ``values`` (no sampling); with ``group``, zero shifts."""
    law = bs.get_law("metric_exp")
    table = metric_runs() if table is None else table
    shape = (2, draws // 2)
    variables = {name: (("chain", "draw"), np.full(shape, value)) for name, value in {**values, "phi": 1e5}.items()}
    coords = {}
    if group:
        levels = sorted(table[group].astype(str).unique())
        variables["shift"] = (("chain", "draw", group), np.zeros((*shape, len(levels))))
        variables["shift_sd"] = (("chain", "draw"), np.full(shape, 0.01))
        coords[group] = levels
    posterior = xr.Dataset(variables, coords=coords)
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros(shape, bool))})
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    with np.errstate(all="ignore"):  # constant draws: R-hat is 0/0
        diagnostics = diagnose(posterior, stats, list(law.param_names))
    return downstream.MetricFit(
        law, tree, table, "accuracy", group, diagnostics, {"chance": 0.25}, np.full(draws, kappa), 2.6
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
    # noise of a run (sigma 0.05 on log-loss) well above the Monte Carlo error of 400 draws' 5% quantiles
    loss_fit = fake_fit(demo_runs, values={**bs.datasets.CHINCHILLA_TRUTH, "sigma": 0.05}, spread=0.02)
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


# -- the loss from the user's fits: one, one per group, a sweep's ---------------------------------------
POINTS = ["N=3e10,D=6e11", "N=2e9,D=4e10"]


def with_discrepancy(fit, kappa: float = 0.02):
    """``fit`` with a calibrated extrapolation discrepancy (kappa's draws around ``kappa``, no internal splits)."""
    from bayescale.fitting.result import Fit
    from bayescale.inference.distance import observed_ranges

    shape = (fit.posterior.sizes["chain"], fit.posterior.sizes["draw"])
    tree = fit.idata.copy()
    draws = kappa * np.exp(0.3 * np.random.default_rng(1).standard_normal(shape))
    tree["posterior"] = fit.posterior.assign(kappa=(("chain", "draw"), draws))
    extrapolation = {
        "method": "calibrated",
        "ranges": {k: list(v) for k, v in observed_ranges(fit.runs, fit.law.inputs).items()},
        "supported_distance": 4.0,
        "kind": "sweep",
        "calibration": {c: [] for c in ("split", "shares_with", "distance", "error", "scale")},
    }
    return Fit(
        fit.law, fit.likelihood, fit.runs, tree, {**fit.settings, "extrapolation": extrapolation}, fit.diagnostics
    )


def corpus_runs() -> pd.DataFrame:
    """The demo runs as two corpora: b's losses 0.15 higher; accuracy from metric_exp; chance 0.25 (a), 0.2 (b)."""
    runs = pd.read_csv(bs.datasets.demo_runs_path())
    both = pd.concat([runs.assign(dataset="a", chance=0.25), runs.assign(dataset="b", chance=0.2)], ignore_index=True)
    both["loss"] += np.where(both["dataset"] == "b", 0.15, 0.0)
    accuracy = 1 - GADRE_LIKE["E"] + GADRE_LIKE["k"] * np.exp(-GADRE_LIKE["gamma"] * both["loss"])
    return both.assign(accuracy=accuracy + np.random.default_rng(0).normal(0, 0.003, len(both)))


@pytest.fixture
def corpora(tmp_path, monkeypatch):
    """Runs of two corpora, a loss fit per corpus (each with a discrepancy) saved, and the metric fit stood in."""
    runs = corpus_runs()
    path = tmp_path / "runs.csv"
    runs.to_csv(path, index=False)
    fits = {}
    for name, shift in (("a", 0.0), ("b", 0.15)):
        values = {**bs.datasets.CHINCHILLA_TRUTH, "E": bs.datasets.CHINCHILLA_TRUTH["E"] + shift, "sigma": 0.03}
        subset = runs[runs["dataset"] == name][["N", "D", "loss"]]
        fit = with_discrepancy(fake_fit(subset, values=values, spread=0.02, seed=3 if name == "a" else 4))
        fits[name] = fit.save(tmp_path / f"fit_{name}.nc")

    def metric_fit(table, metric, law, *, group=None, **_):
        return fake_metric_fit(table=table, group=group)

    monkeypatch.setattr(bs.downstream, "fit_metric", metric_fit)
    return path, fits


def _json_run(capsys, args) -> dict:
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _predicted(capsys, fit_path, points) -> list[dict]:
    return _json_run(capsys, ["predict", str(fit_path), *[x for p in points for x in ("--at", p)], "--json"])[
        "predictions"
    ]


BAND = ("median", "lower", "upper", "pred_lower", "pred_upper")


def test_downstream_loss_is_predicts_on_the_same_fit_at_the_same_point(corpora, capsys):
    """The contract: --loss-fit FIT.nc forecasts the loss that `predict FIT.nc` prints there, discrepancy and all."""
    runs, fits = corpora
    at = [x for p in POINTS for x in ("--at", f"{p},chance=0.25")]  # the runs hold two chance levels
    result = _json_run(
        capsys, ["downstream", str(runs), "--metric", "accuracy", "--loss-fit", str(fits["a"]), *at, "--json"]
    )
    expected = _predicted(capsys, fits["a"], POINTS)
    for row, want in zip(result["predictions"], expected, strict=True):
        for key in BAND:
            assert row["loss"][key] == pytest.approx(want[key], rel=1e-12, abs=1e-12), key
        assert row["loss"]["extrapolation"] == pytest.approx(want["extrapolation"])
    assert result["predictions"][0]["loss"]["extrapolation"] > 1  # beyond the runs: the discrepancy widens the band
    assert result["predictions"][0]["loss"]["band_includes"] == ["parameters", "extrapolation discrepancy"]
    assert result["predictions"][0]["loss"]["run_band_includes"] == ["parameters", "extrapolation discrepancy", "noise"]
    assert result["predictions"][0]["metric"]["band_includes"] == [
        "loss parameters",
        "loss extrapolation discrepancy",
        "metric parameters",
        "metric extrapolation discrepancy",
    ]
    (source,) = result["loss_fits"]
    assert source["source"] == str(fits["a"]) and source["law"] == "chinchilla" and source["n_runs"] == 63
    # a fit without the discrepancy says so, and predict agrees with it too
    plain = fake_fit(pd.read_csv(runs).query("dataset == 'a'")[["N", "D", "loss"]], spread=0.02).save(
        runs.parent / "plain.nc"
    )
    result = _json_run(
        capsys, ["downstream", str(runs), "--metric", "accuracy", "--loss-fit", str(plain), *at, "--json"]
    )
    assert result["predictions"][0]["loss"]["band_includes"] == ["parameters"]
    assert [r["loss"]["median"] for r in result["predictions"]] == [
        p["median"] for p in _predicted(capsys, plain, POINTS)
    ]


def test_downstream_takes_a_loss_fit_per_group_and_names_each_groups_chance(corpora, capsys):
    runs, fits = corpora
    args = ["downstream", str(runs), "--metric", "accuracy", "--group", "dataset"]
    args += ["--loss-fit", f"a={fits['a']}", "--loss-fit", f"b={fits['b']}"]
    args += ["--at", f"{POINTS[0]},dataset=a", "--at", f"{POINTS[0]},dataset=b"]
    result = _json_run(capsys, [*args, "--sensitivity", "--json"])
    for row in result["predictions"]:
        (want,) = _predicted(capsys, fits[row["dataset"]], POINTS[:1])
        assert [row["loss"][k] for k in BAND] == pytest.approx([want[k] for k in BAND], rel=1e-12)
        assert (row["loss"]["prior_sensitivity"], row["loss"]["prior_driven"]) == (
            pytest.approx(want["prior_sensitivity"], rel=1e-9),
            want["prior_driven"],
        )  # what predict says of the same forecast
        # the accuracy's: the stand-in metric fit's draws are all equal, so only the loss fit's priors move it
        steps = row["accuracy_step_sensitivity"]
        assert steps["metric law"] == 0.0 and steps["loss fit"] > 0
        assert row["accuracy_prior_sensitivity"] == pytest.approx(steps["loss fit"], rel=1e-6)
        assert row["accuracy_prior_driven"] is False and row["accuracy_prior_note"] is None
    a, b = result["predictions"]
    assert b["loss"]["median"] > a["loss"]["median"] + 0.1  # b's own fit, not a's
    assert (a["chance"], b["chance"]) == (0.25, 0.2)
    assert a["chance_source"] == "column 'chance' of the runs of dataset a"
    assert a["observed"]["n_runs"] == 63 and a["observed"]["max"] > a["observed"]["min"]
    assert {s["for"]: s["source"] for s in result["loss_fits"]} == {"a": str(fits["a"]), "b": str(fits["b"])}
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "P(above chance 0.25)" in text and "P(above chance 0.2)" in text
    assert f"loss for dataset a: from {fits['a']} (chinchilla on 63 runs)" in text
    assert "observed accuracy of the 63 runs of dataset b:" in text
    assert "bands include: loss: parameters, extrapolation discrepancy;" in text
    # fits swapped: each was fitted to the other corpus's losses, which the metric law does not map
    swapped = [*args[:6], "--loss-fit", f"a={fits['b']}", "--loss-fit", f"b={fits['a']}", *args[10:]]
    assert main(swapped) == 0
    assert f"warning: the loss fit {fits['b']} was fitted to another loss than the runs' loss column" in (
        capsys.readouterr().err
    )
    # a group without a loss fit, and per-group fits without --group
    assert main([*args[:-4], "--at", f"{POINTS[0]},dataset=c"]) == 2
    assert "no loss fit for dataset 'c': loss fits are given for a, b" in capsys.readouterr().err
    assert (
        main(["downstream", str(runs), "--metric", "accuracy", "--loss-fit", f"a={fits['a']}", "--at", POINTS[0]]) == 2
    )
    assert "loss fits per group need --group COLUMN" in capsys.readouterr().err


def _sweep_folder(folder, fits: dict) -> None:
    """A folder as `bayescale sweep --out` writes it: fits/<group>--<law>.nc and comparison.csv (ranks given)."""
    from bayescale.evaluation.sweep import file_name

    (folder / "fits").mkdir(parents=True)
    rows = []
    for (group, label), (path, rank) in fits.items():
        (folder / "fits" / f"{file_name(group)}--{file_name(label)}.nc").write_bytes(path.read_bytes())
        rows.append({"group": group, "law": label, "rank": rank, "elpd": -rank, "error": ""})
    pd.DataFrame(rows).to_csv(folder / "comparison.csv", index=False)


def test_downstream_takes_a_sweeps_fits_the_best_by_loo_or_the_law_named(corpora, capsys, tmp_path):
    runs, fits = corpora
    sweep = tmp_path / "sweep"
    other = "chinchilla (likelihood=normal)"
    _sweep_folder(
        sweep,
        {
            ("a", "chinchilla"): (fits["b"], 2),
            ("a", other): (fits["a"], 1),
            ("b", "chinchilla"): (fits["b"], 1),
            ("b", other): (fits["a"], 2),
        },
    )
    args = ["downstream", str(runs), "--metric", "accuracy", "--group", "dataset", "--loss-fit", str(sweep)]
    args += ["--at", f"{POINTS[0]},dataset=a", "--at", f"{POINTS[0]},dataset=b"]
    result = _json_run(capsys, [*args, "--json"])
    a, b = ([r["loss"]["median"]] for r in result["predictions"])
    assert a == [p["median"] for p in _predicted(capsys, fits["a"], POINTS[:1])]  # a's best: the fit_a copy
    assert b == [p["median"] for p in _predicted(capsys, fits["b"], POINTS[:1])]
    notes = {s["for"]: (s["source"], s["note"]) for s in result["loss_fits"]}
    assert notes["a"] == (
        str(sweep / "fits" / "a--chinchilla__likelihood_normal.nc"),
        "the sweep's best by LOO on a, of 2 laws",
    )
    result = _json_run(capsys, [*args, "--law", "chinchilla", "--json"])
    assert result["predictions"][0]["loss"]["median"] == _predicted(capsys, fits["b"], POINTS[:1])[0]["median"]
    assert {s["note"] for s in result["loss_fits"]} == {"--law chinchilla"}
    # a sweep of all runs (no --by) serves every group
    _sweep_folder(tmp_path / "all", {("all", "chinchilla"): (fits["a"], 1)})
    result = _json_run(capsys, [*args[:6], "--loss-fit", str(tmp_path / "all"), *args[8:], "--json"])
    assert [r["loss"]["median"] for r in result["predictions"]] == [a[0], a[0]]
    # errors: a folder without fits; a sweep per group without --group
    (tmp_path / "empty").mkdir()
    assert main([*args[:-6], "--loss-fit", str(tmp_path / "empty"), "--at", POINTS[0]]) == 2
    assert "a folder of loss fits is what `bayescale sweep --out DIR` writes" in capsys.readouterr().err
    assert main(["downstream", str(runs), "--metric", "accuracy", "--loss-fit", str(sweep), "--at", POINTS[0]]) == 2
    assert "holds a fit per group (a, b): give --group COLUMN" in capsys.readouterr().err


def test_a_loss_fit_whose_law_needs_other_inputs_is_refused_by_name(corpora, capsys, tmp_path):
    runs, _ = corpora
    table = pd.read_csv(runs).query("dataset == 'a'")[["N", "D", "loss"]].assign(U=lambda t: t["D"] / 2)
    values = {**bs.datasets.CHINCHILLA_TRUTH, "Rstar": 15.0}
    path = fake_fit(table, "data_constrained", values=values).save(tmp_path / "dc.nc")
    assert main(["downstream", str(runs), "--metric", "accuracy", "--loss-fit", str(path), "--at", POINTS[0]]) == 2
    err = capsys.readouterr().err
    assert "the loss fit (data_constrained) needs input(s) U that the points do not give" in err
    assert "add U=... to --at" in err


def test_downstream_fits_its_loss_as_fit_would_and_says_so(corpora, capsys, monkeypatch):
    """Fitted here: bs.fit on the runs file with the pooling stated (E by --group unless --loss-pool)."""
    runs, _ = corpora
    calls = []
    table = pd.read_csv(runs).query("dataset == 'a'")[["N", "D", "loss"]]

    def fit(path, law, **options):
        calls.append((path, law, options))
        return fake_fit(table, spread=0.02, seed=options["seed"])

    monkeypatch.setattr(bs, "fit", fit)
    base = ["downstream", str(runs), "--metric", "accuracy", "--seed", "7", "--json"]
    grouped = [*base, "--group", "dataset", "--at", f"{POINTS[0]},dataset=a"]
    result = _json_run(capsys, grouped)
    assert calls[-1][:2] == (str(runs), "chinchilla") and calls[-1][2]["pool"] == {"E": "dataset"}
    assert calls[-1][2]["seed"] == 7
    (source,) = result["loss_fits"]
    assert source["source"] == "fitted here"
    assert "`bayescale fit " + str(runs) + " --law chinchilla --pool E=dataset`" in source["note"]
    assert "E pooled by --group is downstream's default" in source["note"]
    one = [*base, "--at", f"{POINTS[0]},chance=0.25"]
    _json_run(capsys, [*one, "--loss-pool", "alpha=dataset", "--loss-pool", "E=dataset"])
    assert calls[-1][2]["pool"] == {"alpha": "dataset", "E": "dataset"}
    _json_run(capsys, [*one])
    assert calls[-1][2]["pool"] is None  # no --group: nothing pooled, as fit without --pool
    _json_run(capsys, [*grouped, "--loss-pool", "none"])
    assert calls[-1][2]["pool"] is None
    assert main([*one, "--loss-pool", "E=dataset", "--loss-fit", "x.nc"]) == 2
    assert "--loss-pool shapes a loss fit made here" in capsys.readouterr().err


def test_fan_chart_gives_each_group_its_own_loss_axis(corpora):
    runs, fits = corpora
    table = pd.read_csv(runs)
    table["loss"] += np.where(table["dataset"] == "b", 1.0, 0.0)  # b measured on another validation set
    metric_fit = fake_metric_fit(table=table, group="dataset")
    loss = {name: bs.Fit.load(path) for name, path in fits.items()}
    figure = bs.plots.downstream_fan(loss, metric_fit, ci_prob=0.9)
    loss_axes = [ax for ax in figure.axes if ax.get_xscale() == "linear"]
    assert len(figure.axes) == 3 and len(loss_axes) == 2  # one loss axis per group, one compute axis for all
    assert [ax.get_title().split(":")[0] for ax in loss_axes] == ["a", "b"]
    (a_high, a_low), (b_high, b_low) = (ax.get_xlim() for ax in loss_axes)  # inverted: lower loss to the right
    assert b_low > a_low + 0.9 and b_high > a_high + 0.9  # each axis spans its own group's losses
    import matplotlib.pyplot as plt

    plt.close(figure)


SMALL = ["--draws", "100", "--tune", "150", "--chains", "2", "--seed", "1"]


@pytest.mark.slow
def test_gadre_downstream_on_a_sweeps_fits_forecasts_predicts_loss(tmp_path, capsys):
    """Gadre's three corpora: sweep --by dataset, then downstream --loss-fit on the sweep; loss = predict's (real sampling)."""
    folder = shared_file("gadre-overtrain/DERIVED_flat_losses.csv").parent
    runs = tmp_path / "gadre.csv"
    bs.datasets.load_gadre_downstream(folder).to_csv(runs, index=False)
    sweep = tmp_path / "sweep"
    args = ["sweep", str(runs), "--by", "dataset", "--law", "chinchilla", "--out", str(sweep), "--no-report"]
    assert main([*args, "--processes", "1", "--quiet", *SMALL]) == 0
    capsys.readouterr()
    point = "N=6.9e9,D=1.4e11"
    at = [x for name in ("rpj", "c4_original") for x in ("--at", f"{point},dataset={name}")]
    base = ["downstream", str(runs), "--metric", "accuracy", "--group", "dataset", *at, *SMALL]
    result = _json_run(capsys, [*base, "--loss-fit", str(sweep), "--json"])
    for row in result["predictions"]:
        (want,) = _predicted(capsys, sweep / "fits" / f"{row['dataset']}--chinchilla.nc", [point])
        assert [row["loss"][k] for k in BAND] == pytest.approx([want[k] for k in BAND], rel=1e-12)
        assert row["loss"]["band_includes"] == ["parameters", "extrapolation discrepancy"]
        assert row["chance_source"] == f"column 'chance' of the runs of dataset {row['dataset']}"
        assert 0.15 < row["chance"] < 0.3 and row["observed"]["n_runs"] >= 30
    assert {s["note"] for s in result["loss_fits"]} == {"the sweep's only law"}
    assert main([*base, "--loss-fit", str(sweep)]) == 0
    text = capsys.readouterr().out
    assert f"P(above chance {result['predictions'][0]['chance']:.3g})" in text
    assert "loss for dataset rpj: from " in text and "observed accuracy of the " in text


@pytest.mark.slow
def test_downstream_loss_fitted_here_is_fits_with_the_same_pooling(tmp_path, capsys):
    """No --loss-fit: the loss fit is `bayescale fit --pool E=dataset`'s, its forecast predict's (real sampling)."""
    folder = shared_file("gadre-overtrain/DERIVED_flat_losses.csv").parent
    runs = tmp_path / "gadre.csv"
    bs.datasets.load_gadre_downstream(folder).to_csv(runs, index=False)
    assert main(["fit", str(runs), "--pool", "E=dataset", "--out", str(tmp_path / "f.nc"), "--quiet", *SMALL]) == 0
    capsys.readouterr()
    points = tmp_path / "points.csv"
    pd.DataFrame({"N": [6.9e9], "D": [1.4e11], "dataset": ["rpj"]}).to_csv(points, index=False)
    (want,) = _json_run(capsys, ["predict", str(tmp_path / "f.nc"), "--points", str(points), "--json"])["predictions"]
    result = _json_run(
        capsys,
        ["downstream", str(runs), "--metric", "accuracy", "--group", "dataset", "--at", "N=6.9e9,D=1.4e11,dataset=rpj"]
        + [*SMALL, "--json"],
    )
    (row,) = result["predictions"]
    assert [row["loss"][k] for k in BAND] == pytest.approx([want[k] for k in BAND], rel=1e-9)
    (source,) = result["loss_fits"]
    assert source["pooled"] == {"E": "dataset"} and source["n_runs"] == 104 and source["source"] == "fitted here"


@pytest.mark.slow
def test_a_metric_law_fitted_on_few_narrow_losses_carries_the_accuracy_and_a_determined_one_does_not(demo_runs):
    """The loss fit's draws are all equal, so only the metric law's priors can move the accuracy. Fitted on 30
    models over losses 2.0-5.0 (noise sd 0.003) it is determined at both points (losses 2.97 and 1.94); on 6 models
    between 3.4 and 3.8 (sd 0.01) the forecast at 1.94, far below them, rests on its priors (prior against likelihood
    sensitivity 0.06-0.11 against 0.06-0.09 for seeds 1-3; the wide fit's 0.015-0.024 against 0.13-0.17), and the
    note says so and why."""
    loss_fit = fake_fit(demo_runs, spread=0.0, draws=500)
    points = pd.DataFrame({"N": [3e8, 7e10], "D": [6e9, 1.4e12]})

    def runs(low, high, n, sd):
        loss = np.linspace(low, high, n)
        accuracy = 1 - GADRE_LIKE["E"] + GADRE_LIKE["k"] * np.exp(-GADRE_LIKE["gamma"] * loss)
        noise = np.random.default_rng(0).normal(0, sd, n)
        return pd.DataFrame({"loss": loss, "accuracy": accuracy + noise, "chance": 0.25})

    settings = dict(draws=500, tune=500, chains=2, seed=1)
    wide = downstream.fit_metric(runs(2.0, 5.0, 30, 0.003), "accuracy", "metric_exp", **settings)
    found = downstream.accuracy_sensitivity(loss_fit, wide, points)
    assert not found["prior_driven"].any() and found["note"].isna().all(), found
    assert (found["prior_sensitivity"] < 0.25 * found["likelihood_sensitivity"]).all()
    narrow = downstream.fit_metric(runs(3.4, 3.8, 6, 0.01), "accuracy", "metric_exp", **settings)
    far = downstream.accuracy_sensitivity(loss_fit, narrow, points).iloc[1]
    assert far["prior_driven"], far
    assert far["step_sensitivity"]["metric law"] > 100 * far["step_sensitivity"]["loss fit"]
    assert far["driven_by"] and all(name.startswith("the metric law's ") for name in far["driven_by"])
    assert far["note"].startswith("the accuracy forecast at N=7e+10, D=1.4e+12 is prior-driven")
    assert "Models at lower loss (the metric law saw losses down to 3.4, the forecast is at 1.94)" in far["note"]
    assert "bayescale design" not in far["note"]  # it chooses loss runs, not the metric law's models
