"""Learning-rate schedules, the S1/S2 transforms, and what-if forecasts under other schedules."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import fake_fit

import bayescale as bs
from bayescale.curves.learning_curves import (
    compare_schedules,
    fit_curves,
    forecast_curves,
    load_checkpoints,
    peak_rate_variants,
)
from bayescale.data.schedules import ANNEAL_DECAY, Schedule, add_schedule_inputs, areas, schedule_areas
from bayescale.errors import DataError, ExtrapolationWarning


def test_schedule_text_is_parsed_not_evaluated():
    s = Schedule.parse("cosine(peak=1e-3, total=16000, warmup=50, final=0.1)")
    assert (s.peak_lr, s.total_steps, s.warmup_steps, s.decay, s.final_lr_ratio) == (1e-3, 16000, 50, "cosine", 0.1)
    assert Schedule.parse(str(s)) == s
    for bad, message in [
        ("__import__('os').system('x')", "cannot read schedule"),
        ("cosine(peak=1e-3, **{'total': 100})", "cannot read schedule"),
        ("cosine(peak=1e-3)", "needs peak= and total="),
        ("cosine(peak=1e-3, total=100, speed=2)", "not speed"),
        ("triangle(peak=1e-3, total=100)", "decay 'triangle' is not known"),
        ("cosine(peak=-1, total=100)", "peak_lr = -1 is not allowed"),
    ]:
        with pytest.raises(bs.BayescaleError, match=message):
            Schedule.parse(bad)


def test_learning_rates_follow_the_schedule():
    cosine = Schedule(1e-3, 1000, warmup_steps=100, decay="cosine", final_lr_ratio=0.1).learning_rates()
    assert cosine[0] == pytest.approx(1e-5) and cosine[99] == pytest.approx(1e-3)  # linear warm-up
    assert cosine[-1] == pytest.approx(1e-4) and np.all(np.diff(cosine[100:]) <= 0)  # cosine down to 10%
    wsd = Schedule(1e-3, 1000, decay="wsd", decay_fraction=0.2).learning_rates()
    assert np.all(wsd[:800] == 1e-3) and wsd[-1] == pytest.approx(0.0)
    assert np.all(Schedule(1e-3, 50, decay="constant").learning_rates() == 1e-3)


def test_areas_match_the_definitions():
    s1, s2 = areas(np.full(100, 2e-3))
    np.testing.assert_allclose(s1, 2e-3 * np.arange(1, 101))
    assert np.all(s2 == 0)  # no annealing, no annealing area
    lr = np.r_[np.full(10, 1.0), np.full(90, 0.5)]  # one drop of 0.5 at step 11
    s1, s2 = areas(lr)
    momentum = 0.5 * ANNEAL_DECAY ** np.arange(90)  # m_i after the drop
    np.testing.assert_allclose(s2[10:], np.cumsum(momentum))
    assert s1[-1] == pytest.approx(10 + 45)
    _, warm = areas(np.r_[np.linspace(0.1, 1, 10), np.ones(5)], warmup_steps=10)
    assert np.all(warm == 0)  # the rise during warm-up is not annealing


def test_schedule_inputs_from_columns_or_learning_rates():
    table = bs.datasets.synthetic_schedule_curves(0)
    with_areas = add_schedule_inputs(table)
    run = with_areas[with_areas.run == "cosine-4000-0.001"]
    expected = schedule_areas(Schedule(1e-3, 4000, 100, "cosine", 0.1), run["step"])
    np.testing.assert_allclose(run[["S1", "S2"]].to_numpy(), expected[["S1", "S2"]].to_numpy())
    # an lr column at dense checkpoints gives nearly the same areas
    dense = pd.DataFrame(
        {
            "run": "r",
            "step": np.arange(1, 4001, dtype=float),
            "lr": Schedule(1e-3, 4000, 100, "cosine", 0.1).learning_rates(),
        }
    )
    np.testing.assert_allclose(
        add_schedule_inputs(dense)["S1"].to_numpy()[run["step"].astype(int) - 1], expected["S1"], rtol=1e-9
    )


def test_missing_learning_rates_are_named():
    table = bs.datasets.synthetic_schedule_curves(0)
    bare = table.drop(columns=["peak_lr"])
    with pytest.raises(DataError, match="needs each run's learning rates: an 'lr' column"):
        fit_curves(load_checkpoints(bare), "schedule_aware", draws=10, tune=10)
    holes = bare.assign(lr=1e-3)
    holes.loc[5, "lr"] = np.nan
    with pytest.raises(DataError, match="column 'lr': run 'cosine-4000-0.001' needs a learning rate > 0.*rows 6 "):
        add_schedule_inputs(holes)
    late = table.copy()
    late.loc[late.run == "cosine-4000-0.001", "total_steps"] = 3000
    with pytest.raises(DataError, match="run 'cosine-4000-0.001': step 4000 is past its schedule's total_steps 3000"):
        add_schedule_inputs(late)
    mixed = table.copy()
    mixed.loc[0, "peak_lr"] = 5e-3
    with pytest.raises(DataError, match="column 'peak_lr' must be the same on every row of a run"):
        add_schedule_inputs(mixed)


@pytest.fixture(scope="module")
def truth_fit():
    runs = load_checkpoints(add_schedule_inputs(bs.datasets.synthetic_schedule_curves(0)), warmup=0)
    return runs, fake_fit(runs, "schedule_aware", bs.datasets.SCHEDULE_TRUTH)


def test_what_if_schedules_follow_the_law(truth_fit):
    runs, fit = truth_fit
    options = {
        "cosine 8k": "cosine(peak=1e-3, total=8000, warmup=100, final=0.1)",
        "cosine 16k": "cosine(peak=1e-3, total=16000, warmup=100, final=0.1)",
        "constant 8k": "constant(peak=1e-3, total=8000, warmup=100)",
    }
    table = compare_schedules(fit, runs, options, run="cosine-8000-0.001").set_index("schedule")
    t = bs.datasets.SCHEDULE_TRUTH
    for name, text in options.items():
        s = Schedule.parse(text)
        a = schedule_areas(s, [s.total_steps])
        law = t["L0"] + t["A"] * a["S1"][0] ** -t["alpha"] - t["C"] * a["S2"][0]
        assert table.loc[name, "final_median"] == pytest.approx(law, rel=1e-9)
        assert table.loc[name, "final_pred_lower"] < law < table.loc[name, "final_pred_upper"]
    assert table.loc["cosine 16k", "p_best"] == 1.0  # longer and annealed: lowest in every draw
    assert table["p_best"].sum() == pytest.approx(1.0)
    with pytest.warns(ExtrapolationWarning, match="outside the fitted runs' 0.001 .. 0.002"):
        compare_schedules(fit, runs, {"hot": "cosine(peak=1e-2, total=8000)"}, run="cosine-8000-0.001")
    with pytest.raises(bs.BayescaleError, match="no run 'nope'"):
        compare_schedules(fit, runs, options, run="nope")


def test_what_if_another_peak_rate_keeps_the_rest_of_the_runs_schedule(truth_fit):
    runs, fit = truth_fit
    variants = peak_rate_variants(runs, "cosine-8000-0.001", [2e-3, 2.5e-3])
    assert list(variants) == ["as run", "peak 0.002", "peak 0.0025"]
    assert variants["peak 0.002"] == replace(variants["as run"], peak_lr=2e-3)
    with pytest.warns(ExtrapolationWarning, match=r"peak 0\.0025 have a peak learning rate outside"):
        table = compare_schedules(fit, runs, variants, run="cosine-8000-0.001").set_index("schedule")
    t = bs.datasets.SCHEDULE_TRUTH
    for name, schedule in variants.items():
        a = schedule_areas(schedule, [schedule.total_steps])
        law = t["L0"] + t["A"] * a["S1"][0] ** -t["alpha"] - t["C"] * a["S2"][0]
        assert table.loc[name, "final_median"] == pytest.approx(law, rel=1e-9)
    assert table["peak_outside_fitted"].tolist() == [False, False, True]
    with pytest.raises(bs.BayescaleError, match=r"peak learning rate -0.001 must lie in \(0, 1\]"):
        peak_rate_variants(runs, "cosine-8000-0.001", [-1e-3])


def test_forecast_stops_at_the_end_of_a_schedule(truth_fit):
    runs, fit = truth_fit
    out = forecast_curves(fit, runs, upto=0.5).set_index("run")
    assert (out["horizon_step"] == runs.frame.groupby("run")["step"].max()[out.index]).all()
    final = runs.frame.loc[runs.frame.groupby("run")["step"].idxmax()].set_index("run")["loss"]
    np.testing.assert_allclose(out["final_median"], final[out.index], rtol=0.02)
    with pytest.raises(bs.BayescaleError, match="horizon 9000 is past its schedule's last step 8000"):
        forecast_curves(fit, runs, upto=0.5, horizon=9000, run="cosine-8000-0.001")


@pytest.mark.slow
def test_schedule_aware_fit_recovers_the_truth_and_forecasts_the_end():
    runs = load_checkpoints(bs.datasets.synthetic_schedule_curves(1), warmup=0.05)  # recovery, not the warm-up rule
    fit = fit_curves(
        runs, "schedule_aware", upto=0.5, draws=500, tune=500, chains=2, progressbar=False, extrapolation="none"
    )
    assert fit.diagnostics.divergences == 0
    out = forecast_curves(fit, runs, upto=0.5, ci_prob=0.9).set_index("run")
    final = runs.frame.loc[runs.frame.groupby("run")["step"].idxmax()].set_index("run")["loss"][out.index]
    assert ((out["final_pred_lower"] <= final) & (final <= out["final_pred_upper"])).mean() >= 0.75
    assert np.median(np.abs(out["final_median"] / final - 1)) < 0.02


def test_curve_cli_compares_schedules(truth_fit, tmp_path, capsys, monkeypatch):
    import json

    from bayescale.cli.main import main

    runs, fit = truth_fit
    monkeypatch.setattr(bs, "fit_curves", lambda *args, **kwargs: fit)  # plumbing only: the command takes bs's
    path = tmp_path / "checkpoints.csv"
    bs.datasets.synthetic_schedule_curves(0).to_csv(path, index=False)
    args = [
        "curve",
        str(path),
        "--law",
        "schedule_aware",
        "--upto",
        "0.5",
        "--run",
        "cosine-8000-0.001",
        "--schedule",
        "long=cosine(peak=1e-3, total=16000, warmup=100, final=0.1)",
        "--schedule",
        "wsd=wsd(peak=1e-3, total=8000, warmup=100, final=0.1)",
    ]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["schedule"] for s in data["schedules"]] == ["long", "wsd"] and data["schedules"][0]["p_best"] == 1.0
    assert main(args) == 0
    assert "long: cosine(peak=0.001, total=16000, warmup=100, final=0.1)" in capsys.readouterr().out
    assert main(["curve", str(path), "--upto", "0.5", "--schedule", "x=cosine(peak=1e-3, total=10)"]) == 2
    assert "--schedule needs --run" in capsys.readouterr().err
    assert main([*args[:8], "--peak-lr", "2e-3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["schedule"] for s in data["schedules"]] == ["as run", "peak 0.002"]
    assert data["schedules"][1]["spec"].startswith("cosine(peak=0.002, total=8000")


def test_runs_grouped_by_size_get_a_pooled_run_offset(monkeypatch):
    import bayescale.fitting.pipeline as pipeline  # imported here, not only by earlier tests

    seen = {}
    monkeypatch.setattr(
        pipeline,
        "fit",
        lambda runs, law, pool, **options: seen.update(law=law, pool=pool, **options),
    )
    table = bs.datasets.synthetic_schedule_curves(0).assign(model=lambda t: np.where(t.peak_lr > 1e-3, "big", "small"))
    runs = load_checkpoints(table, keep=["model"])
    fit_curves(runs, "schedule_aware", upto=0.5, pool={"L0": "model", "A": "model"})
    assert seen["pool"] == {"L0": "model", "A": "model", "run_offset": "run"}
    assert seen["law"].formula.text == "(L0 + A * S1**(-alpha) - C * S2) + run_offset"
    assert seen["priors"] == {"run_offset_sd": "HalfNormal(sigma=0.05)"} and seen["likelihood"] == "normal"
    fit_curves(runs, "schedule_aware", upto=0.5)  # the card's run effect: floor and scale by run
    assert seen["pool"] == {"L0": "run", "A": "run"} and "run_offset" not in seen["law"].params


def _exact_loss_drop(lr, warmup, t, B, C, beta, gamma):
    """LD(t) of the Multi-Power Law (Luo et al. 2025) as the paper writes it: a sum over every step's drop."""
    drop = np.zeros_like(lr)
    drop[1:] = lr[:-1] - lr[1:]
    drop[: warmup + 1] = 0.0
    total = np.concatenate([[0.0], np.cumsum(lr)])
    k = np.arange(t)
    return B * np.sum(drop[:t] * (1 - (C * lr[k] ** -gamma * (total[t] - total[k]) + 1) ** -beta))


def test_the_multi_power_card_takes_the_papers_sum_over_past_drops():
    from bayescale.data.schedules import MPL_INPUTS, drop_inputs, mpl_formula

    law = bs.get_law("multi_power")
    assert law.formula.text == mpl_formula() and law.inputs == ("S1", *MPL_INPUTS)
    params = {"L0": 0.0, "A": 0.0, "alpha": 0.5, "K": 400.0 * 0.5 * 2.0, "C": 2.0, "beta": 0.5, "gamma": 0.6}
    for text in ("cosine(peak=3e-3, total=16000, warmup=50, final=0.1)", "wsd(peak=1e-3, total=8000, warmup=50)"):
        schedule = Schedule.parse(text)
        rates, steps = schedule.learning_rates(), np.array([100, 4000, 7000, 7999])
        inputs = drop_inputs(rates, schedule.warmup_steps, steps)
        got = -law.formula.numpy({**params, **{n: inputs[n].to_numpy() for n in MPL_INPUTS}, "S1": 1.0})
        exact = [_exact_loss_drop(rates, schedule.warmup_steps, t, 400.0, 2.0, 0.5, 0.6) for t in steps]
        np.testing.assert_allclose(got, exact, rtol=3e-3, atol=1e-5)  # nats
        assert got[-1] > 0.1
    assert got[0] == 0  # WSD: nothing dropped before its decay
    with pytest.raises(DataError, match="run 'r1': its learning rate rises after warm-up"):
        drop_inputs(np.r_[np.full(10, 1e-3), np.full(10, 2e-3)], 0, [15], run="r1")


def test_schedule_inputs_carry_the_multi_power_columns_when_asked():
    from bayescale.data.schedules import MPL_INPUTS

    table = pd.DataFrame(
        {"run": ["a"] * 3, "step": [100, 500, 1000], "loss": [3.0, 2.8, 2.7], "peak_lr": 1e-3, "total_steps": 1000}
    )
    plain = add_schedule_inputs(table)
    assert not set(MPL_INPUTS) & set(plain.columns)
    full = add_schedule_inputs(table, mpl=True)
    np.testing.assert_allclose(full[["S1", "S2"]], plain[["S1", "S2"]])
    assert (full["mpl_drop"].diff().dropna() > 0).all() and (full[list(MPL_INPUTS)] >= 0).all().all()
