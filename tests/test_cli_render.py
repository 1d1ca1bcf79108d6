"""Every command prints one result two ways: whatever number or word its text shows, its JSON carries.

Each command runs once; its result goes through both renderings (the text a function of the result
alone, the JSON of the same result), and every number of the text must be in the JSON at the
precision the text shows it, every name in it a JSON key or value.
"""

import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import fake_fit
from test_pooling import two_families

import bayescale as bs
from bayescale.cli import (
    application_commands,
    comparison_commands,
    design_commands,
    evaluation_commands,
    fit_commands,
    render,
)
from bayescale.cli.main import main

SAMPLING = ["--draws", "100", "--tune", "150", "--chains", "2", "--seed", "1"]
#: numbers that belong to the text's own sentences, not to the result
FIXED = re.compile(
    r"1,000 steps|\b(2x too|20x any|100x the|10x compute|next 10x|first 10x|within 2x|2x N|2x D)|5-95%|"
    r"Raftery 2007|within 2 points|2 binomial|90% band|\(90%|IS90|"
    r"[A-Za-z_]+\d+[A-Za-z_]*|\d+(\.\d+)?%:|cov\d+|\(\d+-\d+%"
)
NUMBER = re.compile(r"(?<![\w.])[-+]?(\d+\.\d*|\d+)(e[-+]?\d+)?(%|x)?(?![\w])")


@pytest.fixture
def renderings(monkeypatch):
    """The (text, JSON) of every result a command emits."""
    seen = []

    def both(result, as_json, text):
        ready = render.jsonable(result)
        seen.append(("\n".join(text(ready)), json.loads(json.dumps(ready))))
        render.emit(result, as_json, text)

    for module in (fit_commands, comparison_commands, evaluation_commands, application_commands, design_commands):
        monkeypatch.setattr(module, "emit", both)
    return seen


def _unit(token: str) -> float:
    """Half the last printed digit of a number token: the rounding the text allows."""
    mantissa = re.split("e", token.rstrip("%"), flags=re.I)[0]
    exponent = int(re.split("e", token, flags=re.I)[1]) if re.search("e", token, re.I) else 0
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    scale = 0.01 if token.endswith("%") else 1.0
    return 0.5 * 10.0 ** (exponent - decimals) * scale * 1.0001


def _json_values(data, numbers: list, words: set) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            words.add(str(key))
            _json_values(value, numbers, words)
    elif isinstance(data, list):
        for value in data:
            _json_values(value, numbers, words)
    elif isinstance(data, bool):
        return
    elif isinstance(data, (int, float)):
        numbers.append(float(data))
    elif isinstance(data, str):
        words.add(data)
        for match in NUMBER.finditer(data):
            numbers.append(float(match.group(0).rstrip("%")) / (100 if match.group(0).endswith("%") else 1))


def _missing_numbers(text: str, data) -> list[str]:
    numbers, words = [], set()
    _json_values(data, numbers, words)
    values = np.array(numbers) if numbers else np.array([np.nan])
    strings = " ".join(words)
    missing = []
    for line in text.splitlines():
        clean = FIXED.sub(" ", line)
        for match in NUMBER.finditer(clean):
            token = match.group(0).removesuffix("x")
            value = float(token.rstrip("%")) / (100 if token.endswith("%") else 1)
            if token in strings or np.any(np.abs(values - value) <= _unit(token)):
                continue
            if value == int(value) and 0 <= value <= 3:  # small counts (0 divergences) may be implicit lengths
                if any(isinstance(v, list) and len(v) == value for v in _lists(data)):
                    continue
            missing.append(f"{token} in {line.strip()!r}")
    return missing


def _lists(data):
    if isinstance(data, list):
        yield data
        for value in data:
            yield from _lists(value)
    elif isinstance(data, dict):
        for value in data.values():
            yield from _lists(value)


def _check(renderings, minimum: int = 1):
    assert len(renderings) >= minimum
    for text, data in renderings:
        assert text.strip(), "the text rendering is empty"
        missing = _missing_numbers(text, data)
        assert not missing, "the text shows numbers its JSON lacks:\n" + "\n".join(missing)


def test_the_number_check_catches_a_text_that_shows_more_than_its_json():
    assert _missing_numbers("alpha 0.3412 [0.30, 0.38]", {"alpha": {"median": 0.3412, "lower": 0.30}}) == [
        "0.38 in 'alpha 0.3412 [0.30, 0.38]'"
    ]
    assert _missing_numbers("C = 1e+23 FLOPs, 53% of draws", {"flops": 1e23, "p": 0.531}) == []


@pytest.fixture(scope="module")
def saved_fit(tmp_path_factory):
    path = tmp_path_factory.mktemp("render") / "fit.nc"
    assert main(["fit", str(bs.datasets.demo_runs_path()), *SAMPLING, "--out", str(path), "--quiet"]) == 0
    return path


@pytest.fixture(scope="module")
def second_fit(tmp_path_factory):
    path = tmp_path_factory.mktemp("render") / "kaplan.nc"
    assert (
        main(["fit", str(bs.datasets.demo_runs_path()), "--law", "kaplan_nd", *SAMPLING, "--out", str(path), "--quiet"])
        == 0
    )
    return path


@pytest.mark.slow
def test_laws_fit_summary_and_predict(renderings, saved_fit, second_fit, tmp_path, capsys):
    assert main(["laws"]) == 0
    assert main(["fit", str(bs.datasets.demo_runs_path()), *SAMPLING, "--out", str(tmp_path / "f.nc"), "--quiet"]) == 0
    assert main(["summary", str(saved_fit)]) == 0
    assert main(["predict", str(saved_fit), "--at", "N=7e10,D=1.4e12", "--at", "N=1e9,D=2e10"]) == 0
    assert main(["predict", str(saved_fit), str(second_fit), "--at", "N=7e10,D=1.4e12"]) == 0
    _check(renderings, 5)


@pytest.mark.slow
def test_plan_check_compare_and_report(renderings, saved_fit, second_fit, tmp_path):
    assert (
        main(
            [
                "plan",
                str(saved_fit),
                "--flops",
                "1e22",
                "--candidate",
                "N=2e10,D=4e11",
                "--marginal",
                "N=1e10,D=2e11",
                "--frontier",
                "1e21,1e22",
            ]
        )
        == 0
    )
    assert main(["check", str(saved_fit), "--prior-draws", "100"]) == 0
    assert main(["compare", str(saved_fit), str(second_fit)]) == 0
    assert main(["compare", str(saved_fit), str(second_fit), "--at", "N=7e10,D=1.4e12", "--at", "N=1e9,D=2e10"]) == 0
    assert main(["compare", str(saved_fit), str(second_fit), "--plan", "1e22"]) == 0
    assert main(["report", str(saved_fit), "--out", str(tmp_path / "r.md"), "--format", "markdown"]) == 0
    _check(renderings, 6)


@pytest.mark.slow
def test_backtest_sweep_and_demo(renderings, tmp_path):
    runs = bs.datasets.demo_runs_path()
    assert (
        main(
            [
                "backtest",
                str(runs),
                "--law",
                "chinchilla",
                "--holdout",
                "N >= 2e9",
                *SAMPLING,
                "--processes",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    table = pd.read_csv(runs).assign(dataset=lambda t: np.where(t.index % 2, "a", "b"))
    table.to_csv(tmp_path / "two.csv", index=False)
    assert (
        main(
            [
                "sweep",
                str(tmp_path / "two.csv"),
                "--by",
                "dataset",
                "--law",
                "chinchilla",
                *SAMPLING,
                "--processes",
                "1",
                "--no-report",
                "--out",
                str(tmp_path / "sweep"),
                "--quiet",
            ]
        )
        == 0
    )
    assert main(["demo", "--draws", "100", "--tune", "150", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    _check(renderings, 3)


@pytest.mark.slow
def test_tune_downstream_and_curve(renderings, tmp_path):
    tuning = tmp_path / "lr.csv"
    bs.datasets.synthetic_tuning_sweep(seed=0).to_csv(tuning, index=False)
    assert main(["tune", str(tuning), "--at", "N=3e9,D=6e10", "--lr", "3e-4", *SAMPLING]) == 0
    runs = pd.read_csv(bs.datasets.demo_runs_path())
    accuracy = 0.25 + 0.7 * np.exp(-2.0 * (runs["loss"] - 1.8))
    runs.assign(accuracy=np.clip(accuracy, 0.26, 0.95), chance=0.25).to_csv(tmp_path / "acc.csv", index=False)
    assert (
        main(["downstream", str(tmp_path / "acc.csv"), "--metric", "accuracy", "--at", "N=7e10,D=1.4e12", *SAMPLING])
        == 0
    )
    curves = tmp_path / "curves.csv"
    bs.datasets.synthetic_curves(seed=0, points=40).to_csv(curves, index=False)
    assert main(["curve", str(curves), "--upto", "0.5", *SAMPLING, "--quiet"]) == 0
    _check(renderings, 3)


@pytest.mark.slow
def test_tune_backtest(renderings, tmp_path):
    """``tune --holdout``: per cell, lr*'s band (with the decision discrepancy) and what carries it."""
    tuning = tmp_path / "lr.csv"
    bs.datasets.synthetic_tuning_sweep(seed=0).to_csv(tuning, index=False)
    assert (
        main(["tune", str(tuning), "--law", "chinchilla_lr_asym", "--holdout", "N >= 5e8", *SAMPLING, "--quiet"]) == 0
    )
    _check(renderings, 1)
    text, data = renderings[0]
    assert data["best_calibration"]["source"] == "internal splits" and "errs by tau" in text


def test_downstream_with_loss_fits_per_group(renderings, tmp_path, monkeypatch):
    """Per-group loss fits (with a discrepancy), chance per group, observed ranges, both steps' prior sensitivity:
    the text's numbers are in the JSON."""
    from conftest import fake_fit
    from test_downstream import corpus_runs, fake_metric_fit, with_discrepancy

    runs = corpus_runs()
    runs.to_csv(tmp_path / "runs.csv", index=False)
    args = ["downstream", str(tmp_path / "runs.csv"), "--metric", "accuracy", "--group", "dataset", "--sensitivity"]
    for name in ("a", "b"):
        fit = with_discrepancy(fake_fit(runs[runs["dataset"] == name][["N", "D", "loss"]], spread=0.02))
        args += ["--loss-fit", f"{name}={fit.save(tmp_path / f'{name}.nc')}", "--at", f"N=3e10,D=6e11,dataset={name}"]
    monkeypatch.setattr(
        bs.downstream,
        "fit_metric",
        lambda table, metric, law, *, group=None, **_: fake_metric_fit(table=table, group=group),
    )
    assert main(args) == 0
    _check(renderings, 1)
    text, data = renderings[-1]
    assert "prior sensitivity of accuracy: " in text and "each step's priors alone: loss fit " in text
    assert set(data["predictions"][0]["accuracy_step_sensitivity"]) == {"loss fit", "metric law"}


@pytest.mark.slow
def test_backtest_by_group_with_where_names_every_group(renderings, tmp_path):
    frames = [bs.datasets.synthetic_sweep(seed=seed).assign(dataset=name) for seed, name in ((0, "web"), (1, "books"))]
    tiny = bs.datasets.synthetic_sweep(seed=2).assign(dataset="tiny").query("N < 1e8")  # no run >= 1e9
    path = tmp_path / "three.csv"
    pd.concat([*frames, tiny], ignore_index=True).to_csv(path, index=False)
    code = main(
        ["backtest", str(path), "--by", "dataset", "--where", "dataset != 'web'", "--law", "chinchilla"]
        + ["--holdout", "N >= 1e9", *SAMPLING, "--processes", "1", "--quiet"]
    )
    assert code == 1  # a group with nothing to forecast is named; the other groups' backtests finish
    _check(renderings, 1)
    text, data = renderings[-1]
    assert data["by"] == "dataset" and [g["group"] for g in data["groups"]] == ["books", "tiny"]
    books, small = data["groups"]
    assert (
        books["holdout"] == "N >= 1e9" and books["laws"][0]["rank"] == 1 and books["n_train"] + books["n_heldout"] == 63
    )
    assert all(64 <= run["row"] <= 126 for run in books["laws"][0]["runs"])  # books are file rows 64-126
    assert small["error"] == "holdout 'N >= 1e9' selects none of the 15 runs: nothing to forecast"
    assert "dataset = books:" in text and "dataset = tiny:\n  no backtest: holdout 'N >= 1e9' selects none" in text


@pytest.mark.slow
def test_design(renderings, saved_fit, tmp_path):
    pd.DataFrame({"N": [1e8, 1e9, 1e10], "D": [2e9, 2e10, 2e11]}).to_csv(tmp_path / "pool.csv", index=False)
    target = ["--target", "N=7e10,D=1.4e12", "--target", "N=1e10,D=2e11"]
    pool = ["--candidates", str(tmp_path / "pool.csv")]
    assert main(["design", str(saved_fit), *pool, *target, "--target", "C=1e23", "--budget", "1e23"]) == 0
    heavy = ["--cost", "6*N*D + 2*N*1e12", "--budget", "1e24"]  # the budget target under the user's cost
    assert main(["design", str(saved_fit), *pool, "--target", "C=1e23", *heavy]) == 0
    truth = bs.datasets.CHINCHILLA_TRUTH
    pooled = fake_fit(two_families(), pool={"E": "family"}, values={**truth, "E": {"a": 1.7, "b": 1.95}}, spread=0.03)
    pooled.save(tmp_path / "pooled.nc")
    pd.DataFrame({"N": [1e9, 3e9], "D": [2e10, 6e10], "family": ["b", "a"]}).to_csv(
        tmp_path / "groups.csv", index=False
    )
    groups = ["--candidates", str(tmp_path / "groups.csv"), "--target", "N=7e10,D=1.4e12,family=b"]
    assert main(["design", str(tmp_path / "pooled.nc"), *groups, "--budget", "1e30"]) == 0
    runs = str(bs.datasets.demo_runs_path())
    assert (
        main(["design", runs, "--grid", "N=1e8:1e10:3,D=2e10", *target, "--budget", "1e22", *SAMPLING, "--quiet"]) == 0
    )
    table = pd.read_csv(runs)
    table[table["N"] < 3e9].to_csv(tmp_path / "runs_pool.csv", index=False)
    table[table["N"] >= 3e9].to_csv(tmp_path / "targets.csv", index=False)
    replay = ["--replay", str(tmp_path / "runs_pool.csv"), "--target-runs", str(tmp_path / "targets.csv")]
    replay += ["--strategy", "bayes", "--strategy", "d-optimal", "--plot", str(tmp_path / "replay.png")]
    assert main(["design", *replay, "--budget-share", "0.02", "--batch", "8", *SAMPLING, "--quiet"]) == 0
    _check(renderings, 5)


@pytest.mark.slow
def test_a_raw_scale_fit_its_summary_forecast_and_design(renderings, tmp_path):
    from test_raw_scale import CARD, negative_runs

    (tmp_path / "raw.toml").write_text(CARD)
    negative_runs(40).to_csv(tmp_path / "runs.csv", index=False)
    pd.DataFrame({"N": [1e8, 1e9, 1e10], "D": [2e9, 2e10, 2e11]}).to_csv(tmp_path / "pool.csv", index=False)
    fit = str(tmp_path / "raw.nc")
    law = ["--law", str(tmp_path / "raw.toml")]
    assert main(["fit", str(tmp_path / "runs.csv"), *law, *SAMPLING, "--out", fit, "--quiet"]) == 0
    assert main(["summary", fit]) == 0
    assert main(["predict", fit, "--at", "N=1e11,D=1e12"]) == 0
    target = ["--target", "N=1e11,D=1e12", "--budget", "1e21"]
    assert main(["design", fit, "--candidates", str(tmp_path / "pool.csv"), *target]) == 0
    _check(renderings, 4)
    assert 'likelihood on the raw target scale (the card\'s scale = "raw")' in renderings[0][0]
    assert "no extrapolation discrepancy" in renderings[1][0] and "sd of the law's loss" in renderings[3][0]


def test_compare_fits_the_laws_and_forecasts_them_stacked(renderings, tmp_path):
    runs = str(bs.datasets.demo_runs_path())
    args = ["compare", runs, "--law", "chinchilla", "--law", "kaplan_nd", "--at", "N=7e10,D=1.4e12", *SAMPLING]
    assert main([*args, "--processes", "1", "--quiet", "--out", str(tmp_path / "fits")]) == 0
    _check(renderings, 1)
    text, data = renderings[0]
    assert "stacked (" in text and "bands: 90% intervals" in text and "sampler: " in text
    assert {row["fit"] for row in data["fits"]} == {"chinchilla", "kaplan_nd"}
    assert sorted(p.name for p in (tmp_path / "fits").iterdir()) == ["chinchilla.nc", "kaplan_nd.nc"]
