"""LOO comparison (on hand-written posteriors) and its errors."""

import warnings

import numpy as np
import pytest
from conftest import fake_fit

import bayescale as bs
from bayescale.data.datasets import CHINCHILLA_TRUTH
from bayescale.evaluation.comparison import compare, loo, verdict


def test_the_law_that_generated_the_data_wins(demo_runs):
    good = fake_fit(demo_runs, values=CHINCHILLA_TRUTH, spread=0.002)
    bad = fake_fit(demo_runs, values={**CHINCHILLA_TRUTH, "E": 1.9, "beta": 0.2}, spread=0.002)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.SamplerWarning)
        table = compare({"truth": good, "wrong": bad})
    assert list(table.index) == ["truth", "wrong"] and list(table["rank"]) == [1, 2]
    assert table.loc["wrong", "elpd_diff"] < -4 * table.loc["wrong", "dse"]
    assert table.loc["truth", "weight"] > 0.9
    assert table.loc["truth", "elpd"] == pytest.approx(float(loo(good).elpd))
    words = verdict(table)
    assert words[0].startswith("wrong vs truth: elpd") and words[0].endswith("clearly worse.")
    assert "leave-future-out" in words[-1]


@pytest.mark.slow
def test_the_verdict_says_when_loo_cannot_separate_two_laws(demo_runs):
    a = fake_fit(demo_runs, values=CHINCHILLA_TRUTH, spread=0.002, seed=1)
    b = fake_fit(demo_runs, values=CHINCHILLA_TRUTH, spread=0.002, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.SamplerWarning)
        table = compare({"a": a, "b": b})
    assert "a small difference: LOO does not separate them" in verdict(table)[0]


@pytest.mark.slow
def test_high_pareto_k_runs_are_named(demo_runs):
    frame = demo_runs.frame.copy()
    frame.loc[5, "loss"] *= 1.6  # a gross outlier under a thin-tailed likelihood
    sharp = fake_fit(frame, values=CHINCHILLA_TRUTH, likelihood="normal", spread=0.02)
    other = fake_fit(frame, values={**CHINCHILLA_TRUTH, "E": 1.7}, likelihood="normal", spread=0.02)
    with pytest.warns(bs.SamplerWarning, match=r"Pareto k > 0\.\d+.*row 6 \(N="):
        table = compare([sharp, other])
    assert 5 in table.attrs["high_k"]["chinchilla"].index
    assert list(table.index) == ["chinchilla", "chinchilla (2)"]


def test_fits_on_different_data_are_refused(demo_runs):
    full = fake_fit(demo_runs)
    fewer = fake_fit(demo_runs.frame.iloc[:-1])
    with pytest.raises(bs.BayescaleError, match="not on the same observations: 63 and 62 runs"):
        compare([full, fewer])
    changed = demo_runs.frame.copy()
    changed.loc[[3, 7], "loss"] += 0.01
    with pytest.raises(bs.BayescaleError, match=r"losses differ in rows 4, 8 \(1 = the first data row\)"):
        compare([full, fake_fit(changed)])
    with pytest.raises(bs.BayescaleError, match="at least two fits"):
        compare([full])


def test_stacked_forecast_spans_the_laws_it_mixes(demo_runs):
    from conftest import fake_fit

    low = fake_fit(demo_runs, values={**bs.datasets.CHINCHILLA_TRUTH, "E": 1.60}, spread=0.002, seed=1)
    high = fake_fit(demo_runs, values={**bs.datasets.CHINCHILLA_TRUTH, "E": 1.80}, spread=0.002, seed=2)
    point = {"N": 7e10, "D": 1.4e12}
    alone = {name: fit.predict(**point).iloc[0] for name, fit in (("low", low), ("high", high))}
    half = bs.predict_stacked({"low": low, "high": high}, weights={"low": 1, "high": 1}, **point).iloc[0]
    assert half["lower"] <= alone["low"]["median"] and alone["high"]["median"] <= half["upper"]
    assert half["upper"] - half["lower"] > 2 * max(a["upper"] - a["lower"] for a in alone.values())
    only_low = bs.predict_stacked({"low": low, "high": high}, weights={"low": 1, "high": 0}, **point).iloc[0]
    assert only_low["median"] == pytest.approx(alone["low"]["median"], rel=2e-3)
    assert only_low["pred_upper"] == pytest.approx(alone["low"]["pred_upper"], rel=5e-3)
    with pytest.raises(bs.BayescaleError, match="weights must name exactly the fits low, high"):
        bs.predict_stacked({"low": low, "high": high}, weights={"low": 1}, **point)


def test_a_stacked_plan_spans_the_laws_optima_and_says_it_carries_the_law_form(demo_runs, tmp_path, capsys):
    import json

    from conftest import fake_fit

    from bayescale.cli.main import main

    small = fake_fit(demo_runs, values={**bs.datasets.CHINCHILLA_TRUTH, "alpha": 0.40}, spread=0.002, seed=1)
    large = fake_fit(demo_runs, values={**bs.datasets.CHINCHILLA_TRUTH, "alpha": 0.30}, spread=0.002, seed=2)
    flops, fits = 1e23, {"small": small, "large": large}
    alone = {name: bs.plan(fit, flops)["N_opt"] for name, fit in fits.items()}
    assert alone["small"]["upper"] < alone["large"]["lower"]  # the two laws put N* apart
    half = bs.plan_stacked(fits, flops, weights={"small": 1, "large": 1})
    assert half["N_opt"]["lower"] <= alone["small"]["median"] and alone["large"]["median"] <= half["N_opt"]["upper"]
    assert half["laws"]["small"]["N_opt"] == alone["small"] and half["weights"] == {"small": 0.5, "large": 0.5}
    assert half["band_includes"]["allocation"] == ["parameters", "law form"]
    only = bs.plan_stacked(fits, flops, weights={"small": 1, "large": 0})
    assert only["N_opt"]["median"] == pytest.approx(alone["small"]["median"], rel=0.02)
    assert half["D_opt"]["median"] * half["N_opt"]["median"] == pytest.approx(flops / 6, rel=0.1)
    # the CLI: compare --plan gives the same mixture, by the LOO weights unless told
    paths = [fit.save(tmp_path / f"{name}.nc") for name, fit in fits.items()]
    assert main(["compare", *map(str, paths), "--plan", str(flops), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["plan"]
    assert printed["laws"]["small"]["N_opt"] == pytest.approx(alone["small"])
    assert main(["compare", *map(str, paths), "--plan", str(flops)]) == 0
    assert "the laws stacked" in capsys.readouterr().out


def test_stacking_weights_come_from_loo_by_default(demo_runs):
    from conftest import fake_fit

    right = fake_fit(demo_runs, spread=0.002, seed=1)
    wrong = fake_fit(demo_runs, values={**bs.datasets.CHINCHILLA_TRUTH, "E": 2.2}, spread=0.002, seed=2)
    stacked = bs.predict_stacked({"right": right, "wrong": wrong}, N=7e10, D=1.4e12)
    assert stacked.attrs["weights"]["right"] > 0.99


@pytest.mark.slow
def test_cli_compare_prints_a_legend_and_a_verdict(demo_runs, tmp_path, capsys):
    import json

    from bayescale.cli.main import main

    good = fake_fit(demo_runs, values=CHINCHILLA_TRUTH, spread=0.002).save(tmp_path / "truth.nc")
    bad = fake_fit(demo_runs, values={**CHINCHILLA_TRUTH, "E": 1.9, "beta": 0.2}, spread=0.002).save(
        tmp_path / "wrong.nc"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.SamplerWarning)
        assert main(["compare", str(good), str(bad)]) == 0
        text = capsys.readouterr().out
        assert "elpd: expected log predictive density" in text and "wrong vs truth" in text and "clearly worse" in text
        assert main(["compare", str(good), str(bad), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"][0].startswith("wrong vs truth")


def test_compare_says_where_loo_and_a_backtest_disagree(demo_runs, tmp_path, capsys):
    """LOO ranks the fits on these runs; a backtest of the same laws may rank them the other way round."""
    import pandas as pd

    from bayescale.cli.main import main
    from bayescale.evaluation.backtesting import BacktestResult

    good = fake_fit(demo_runs, values=CHINCHILLA_TRUTH, spread=0.002).save(tmp_path / "chin.nc")
    kaplan = fake_fit(
        demo_runs, law="kaplan_nd", values={"Nc": 8.8e13, "alphaN": 0.076, "Dc": 5.4e13, "alphaD": 0.095}, spread=0.002
    ).save(tmp_path / "kap.nc")
    runs = pd.DataFrame({"N": [1e11], "D": [2e12], "loss": [1.9]})
    scored = {"chinchilla": (0.2, 0.03, -5.0), "kaplan_nd": (1.0, 0.005, 20.0)}  # the backtest prefers kaplan_nd
    backtest = BacktestResult(
        "N >= 5e10",
        50,
        13,
        {
            law: {
                "coverage": {"0.5": cov, "0.8": cov, "0.9": cov},
                "median_abs_rel_error": err,
                "heldout_lpd": lpd,
                "runs": runs,
            }
            for law, (cov, err, lpd) in scored.items()
        },
    ).save(tmp_path / "bt.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.SamplerWarning)
        assert main(["compare", str(good), str(kaplan), "--backtest", str(backtest)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "They disagree: LOO prefers chin" in text and "the backtest prefers kap" in text
    assert "kap: LOO rank 2; backtest on 'N >= 5e10' (13 runs): rank 1, 90% band holds 1.00" in text


def test_cli_compare_forecasts_with_the_laws_stacked_by_their_loo_weights(demo_runs, tmp_path, capsys):
    """``compare --at``: the stacked forecast is bs.predict_stacked on the same fits with the LOO stacking weights."""
    import json

    import pandas as pd

    from bayescale.cli.main import main

    low = fake_fit(demo_runs, values={**CHINCHILLA_TRUTH, "E": 1.66}, spread=0.004, seed=1).save(tmp_path / "low.nc")
    high = fake_fit(demo_runs, values={**CHINCHILLA_TRUTH, "E": 1.72}, spread=0.004, seed=2).save(tmp_path / "high.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.SamplerWarning)
        assert main(["compare", str(low), str(high), "--at", "N=7e10,D=1.4e12", "--at", "N=1e9,D=2e10", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        fits = {"low": bs.load(low), "high": bs.load(high)}
        weights = bs.compare(fits)["weight"].to_dict()
        points = pd.DataFrame({"N": [7e10, 1e9], "D": [1.4e12, 2e10]})
        expected = bs.predict_stacked(fits, points, weights=weights)
        ranked = list(bs.compare(fits).index)
    forecast = data["forecast"]
    assert forecast["weights"] == pytest.approx(weights) and 0.05 < weights["low"] < 0.95  # both laws carry the mix
    assert forecast["band_includes"] == expected.attrs["band_includes"]
    got = pd.DataFrame(forecast["predictions"])
    for column in ("N", "D", "median", "lower", "upper", "pred_lower", "pred_upper"):
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-12)
    assert [row["fit"] for row in data["fits"]] == ranked
    assert data["fits"][0]["sampler"]["divergences"] == fits[data["fits"][0]["fit"]].diagnostics.divergences


def test_cli_compare_refuses_mixed_inputs(demo_runs, tmp_path, capsys):
    from bayescale.cli.main import main

    one = fake_fit(demo_runs, spread=0.002, seed=1).save(tmp_path / "one.nc")
    two = fake_fit(demo_runs, spread=0.002, seed=2).save(tmp_path / "two.nc")
    assert main(["compare", str(one), str(two), "--law", "chinchilla", "--law", "kaplan_nd"]) == 2
    assert "with --law give one runs table, got 2 files" in capsys.readouterr().err
    assert main(["compare", str(one), str(two), "--where", "N > 1e9"]) == 2
    assert "--columns, --where and --out apply to a runs table with --law" in capsys.readouterr().err
    assert main(["compare", str(one), str(two), "--at", "N=1e9,D=2e10", "--points", "p.csv"]) == 2
    assert "--points FILE.csv, not both" in capsys.readouterr().err
