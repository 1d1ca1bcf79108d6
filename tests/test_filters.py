"""Row filters (--where, where=, holdout rules): one parser, the user's row numbers kept through filters and splits."""

import html
import json

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.cli.main import main
from bayescale.data.filters import parse_filter, select

TINY = ["--draws", "100", "--tune", "150", "--chains", "2", "--seed", "1"]


@pytest.fixture
def table():
    return pd.DataFrame(
        {
            "N": [1e8, 1e9, 1e10, 1e11],
            "data": ["rpj", "c4", "rpj", "starcoder"],
            "Model Size": [1.0, 2.0, 3.0, 4.0],
        }
    )


@pytest.mark.parametrize(
    "text, kept",
    [
        ("data == 'starcoder'", [3]),
        ("N >= 1e9 and data != 'c4'", [2, 3]),
        ("data in ['rpj', 'c4']", [0, 1, 2]),
        ("data not in ('rpj',)", [1, 3]),
        ("not (N < 1e9 or data == 'c4')", [2, 3]),
        ("N < 1e9 or (data == 'rpj' and N > 1e9)", [0, 2]),
        ("`Model Size` > 2", [2, 3]),
        ("1e9 <= N < 1e11", [1, 2]),
        ("N > -1 and 'c4' == data", [1]),
    ],
)
def test_filters_keep_the_rows_they_say(table, text, kept):
    assert np.flatnonzero(select(table, text)).tolist() == kept


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "N > __import__('os').getpid()",
        "data == os.name",
        "N.real > 1",
        "N * 2 > 1e9",
        "N + 1 > 1e9",
        "data == str(1)",
        "(lambda: 1)() == 1",
        "N",
        "data == rpj",
    ],
)
def test_calls_attributes_arithmetic_and_bare_names_are_refused_without_running(text):
    with pytest.raises(bs.BayescaleError, match="cannot read where .*(not allowed|not a value|alone is not)"):
        parse_filter(text)


def test_errors_name_the_column_the_type_and_show_an_example(table):
    with pytest.raises(
        bs.BayescaleError, match=r"cannot parse where 'N = 1e9' \(compare with ==, not =\).*\"data == 'rpj'\""
    ):
        parse_filter("N = 1e9")
    with pytest.raises(bs.DataError, match="no column 'dat'; the runs have data, N"):
        select(table, "dat == 'rpj'")
    with pytest.raises(
        bs.DataError, match="column 'data' holds text .*compare it with quoted text, as in data == 'rpj'"
    ):
        select(table, "data == 1")
    with pytest.raises(bs.DataError, match="column 'data' holds text; compare it with ==, != or in, not <"):
        select(table, "data < 'm'")
    with pytest.raises(bs.DataError, match="column 'Model Size' holds numbers, not text"):
        select(table, "`Model Size` == '1'")
    with pytest.raises(
        bs.DataError, match=r"column 'x' is compared with a number, but rows 2 \(1 = the first data row\)"
    ):
        select(pd.DataFrame({"x": ["1", "n/a"]}), "x > 0")
    path = bs.datasets.demo_runs_path()
    with pytest.raises(bs.DataError, match="where 'N > 1e15' keeps none of the 63 rows of .*demo_runs.csv"):
        bs.load_runs(path, where="N > 1e15")


def test_holdout_rules_use_the_same_parser(table):
    assert bs.holdout_mask(table, "data == 'rpj' and N > 1e8").tolist() == [False, False, True, False]
    assert bs.holdout_mask(table, "`Model Size` >= 3 or data == 'c4'").tolist() == [False, True, True, True]
    with pytest.raises(bs.BayescaleError, match="cannot read holdout .*a function call is not allowed"):
        bs.holdout_mask(table, "N > __import__('os').getpid()")


def test_where_reads_the_user_s_and_the_canonical_names_and_derived_columns(tmp_path):
    frame = pd.read_csv(bs.datasets.demo_runs_path()).rename(columns={"N": "Model Size"}).drop(columns="C")
    runs = bs.load_runs(frame, {"N": "Model Size"}, where="`Model Size` >= 1e9 and N < 3e9 and C >= 1e20")
    assert len(runs) and (runs["N"] >= 1e9).all() and (runs["N"] < 3e9).all() and (runs["C"] >= 1e20 * 0.999).all()
    assert runs.source == "DataFrame where `Model Size` >= 1e9 and N < 3e9 and C >= 1e20"
    # row numbers are the table's: the kept rows' positions in the whole table
    assert (
        runs.frame.index.tolist()
        == np.flatnonzero(
            (frame["Model Size"] >= 1e9) & (frame["Model Size"] < 3e9) & (6 * frame["Model Size"] * frame["D"] >= 1e20)
        ).tolist()
    )


def test_a_bad_value_after_a_filter_names_the_row_of_the_file_and_a_dropped_bad_row_is_no_error(tmp_path):
    frame = pd.read_csv(bs.datasets.demo_runs_path()).assign(data=lambda t: np.where(t.index < 30, "a", "b"))
    frame["loss"] = frame["loss"].astype(object)
    frame.loc[4, "loss"] = "oops"  # in group a
    frame.loc[40, "loss"] = "bad"  # in group b: file row 41
    path = tmp_path / "runs.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(
        bs.DataError, match=r"column 'loss': rows 41 \(1 = the first data row\) are not numbers \('bad'\)"
    ):
        bs.load_runs(path, where="data == 'b'")
    kept = bs.load_runs(path, where="data == 'b' and N != 628199000")  # row 41's N: the bad row is dropped
    assert kept.frame.index.min() == 30 and 40 not in kept.frame.index
    # the CLI says the same (exit 2, one line)
    assert main(["fit", str(path), "--where", "data == 'b'", "--out", str(tmp_path / "f.nc")]) == 2


def test_duplicate_rows_are_named_by_their_file_row_after_a_filter(tmp_path):
    frame = pd.read_csv(bs.datasets.demo_runs_path())
    frame = pd.concat([frame, frame.iloc[[50]]], ignore_index=True)  # file row 64 repeats file row 51
    with pytest.warns(bs.DataWarning, match=r"rows 64 \(1 = the first data row\) repeat earlier rows"):
        runs = bs.load_runs(frame, where="N >= 1e9")
    assert runs.frame.index[-1] == 63


def test_subsets_and_groups_keep_row_numbers_and_say_how_they_were_picked():
    frame = pd.read_csv(bs.datasets.demo_runs_path()).assign(data=lambda t: np.where(t.index % 2, "odd", "even"))
    runs = bs.load_runs(frame, keep=["data"], where="N >= 1e8")
    groups = runs.split("data")
    assert list(groups) == ["even", "odd"]
    assert groups["odd"].source == "DataFrame where N >= 1e8 and data == 'odd'"
    assert all(i % 2 == 1 for i in groups["odd"].frame.index) and len(groups["odd"]) + len(groups["even"]) == len(runs)
    # a Runs frame passed on (as the fan-outs do, to workers) keeps its row numbers
    assert bs.load_runs(groups["odd"].frame).frame.index.equals(groups["odd"].frame.index)
    assert bs.load_runs(groups["odd"], where="N > 1e9").source.endswith("data == 'odd' and N > 1e9")


def test_a_fit_file_keeps_the_row_numbers_and_the_filter():
    from conftest import fake_fit

    from bayescale.fitting.result import Fit, runs_dataset

    runs = bs.load_runs(bs.datasets.demo_runs_path(), where="N >= 1e9 or D > 1e12")
    fit = fake_fit(runs)
    fit.idata["constant_data"] = runs_dataset(fit.runs)
    back = Fit.from_datatree(fit.to_datatree())
    assert back.runs.frame.index.tolist() == runs.frame.index.tolist() and back.runs.frame.index[0] > 0
    assert back.runs.source.endswith("demo_runs.csv where (N >= 1e9 or D > 1e12)")


@pytest.mark.slow
def test_fit_and_sweep_take_where_on_the_command_line(tmp_path, capsys):
    frame = pd.read_csv(bs.datasets.demo_runs_path()).assign(data=lambda t: np.where(t.index % 2, "rpj", "c4"))
    path = tmp_path / "runs.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "rpj.nc"
    assert main(["fit", str(path), "--where", "data == 'rpj'", *TINY, "--quiet", "--out", str(out)]) == 0
    assert main(["summary", str(out)]) == 0
    assert f"runs from {path} where data == 'rpj'" in capsys.readouterr().out
    fitted = bs.load(out)
    assert fitted.n_obs == 31 and all(i % 2 == 1 for i in fitted.runs.frame.index)
    code = main(
        ["sweep", str(path), "--where", "N >= 5e7", "--by", "data", "--law", "chinchilla", *TINY, "--processes", "1"]
        + ["--out", str(tmp_path / "sweep"), "--json", "--quiet"]
    )
    assert code == 0 and {row["group"] for row in json.loads(capsys.readouterr().out)["comparison"]} == {"c4", "rpj"}
    swept = bs.load(next((tmp_path / "sweep" / "fits").glob("rpj--*.nc")))
    assert swept.runs.source == f"{path} where N >= 5e7 and data == 'rpj'"
    expected = frame.index[(frame["N"] >= 5e7) & (frame["data"] == "rpj")]
    assert swept.runs.frame.index.tolist() == expected.tolist()  # the file's rows, not 0..n-1 of the group
    report = html.unescape((tmp_path / "sweep" / "report.html").read_text())
    assert f"Data: {len(expected)} runs from {path} where N >= 5e7 and data == 'rpj';" in report


@pytest.mark.slow
def test_a_loo_warning_names_the_file_row_of_a_filtered_fit():
    """The issue's case: a LOO warning named "row 86" of a subset that was row 519 of the user's file."""
    from conftest import fake_fit

    from bayescale.data.datasets import CHINCHILLA_TRUTH

    frame = pd.read_csv(bs.datasets.demo_runs_path())
    frame.loc[5, "loss"] *= 1.6  # file row 6: a gross outlier under a thin-tailed likelihood
    runs = bs.load_runs(frame, where="N >= 1e8")
    assert runs.frame.index[0] == 5  # the first run of the subset: "row 1" if rows were counted in the subset
    sharp = fake_fit(runs, values=CHINCHILLA_TRUTH, likelihood="normal", spread=0.02)
    other = fake_fit(runs, values={**CHINCHILLA_TRUTH, "E": 1.7}, likelihood="normal", spread=0.02)
    with pytest.warns(bs.SamplerWarning, match=r"Pareto k > 0\.\d+.*unreliable: row 6 \(N=1\.4e\+08") as caught:
        table = bs.compare([sharp, other])
    assert not any("row 1 (" in str(w.message) for w in caught)
    assert 5 in table.attrs["high_k"]["chinchilla"].index


def test_every_command_that_offers_where_reads_it():
    """--where comes with the shared Input group; a command that took it into **sampling would ignore it silently."""
    import inspect

    from bayescale.cli.main import cli

    offering = [name for name, command in cli.commands.items() if any(p.name == "where" for p in command.params)]
    assert {"fit", "backtest", "sweep", "tune", "downstream", "curve", "design"} <= set(offering)
    for name in offering:
        assert "where" in inspect.signature(cli.commands[name].callback).parameters, name
