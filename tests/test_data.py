import re
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.cli.parsing import parse_column_mapping
from bayescale.data.runs import prepare_points
from bayescale.errors import DataError, UnitsWarning


def table(**overrides):
    base = {
        "Model Size": [1e8, 2e8, 4e8, 8e8, 1.6e9, 3.2e9, 6.4e9, 1.28e10],
        "Training FLOP": [1e19, 2e19, 4e19, 8e19, 1.6e20, 3.2e20, 6.4e20, 1.28e21],
        "loss": [3.1, 3.0, 2.9, 2.8, 2.7, 2.6, 2.5, 2.4],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_column_mapping_and_derived_tokens_are_reported():
    runs = bs.load_runs(table(), {"N": "Model Size", "C": "Training FLOP"})
    np.testing.assert_allclose(runs["D"], runs["C"] / (6 * runs["N"]))
    assert any("D (training tokens) was derived as C / (6 N)" in n for n in runs.notes)
    derived_c = bs.load_runs(pd.DataFrame({"N": [1e8], "D": [2e9], "loss": [3.0]}))
    assert derived_c["C"][0] == pytest.approx(6 * 1e8 * 2e9) and "6 N D" in derived_c.notes[0]


def test_csv_and_parquet_give_the_same_table(tmp_path):
    df = table().rename(columns={"Model Size": "N", "Training FLOP": "C"})
    df.to_csv(tmp_path / "runs.csv", index=False)
    df.to_parquet(tmp_path / "runs.parquet")
    a, b = bs.load_runs(tmp_path / "runs.csv"), bs.load_runs(tmp_path / "runs.parquet")
    pd.testing.assert_frame_equal(a.frame, b.frame)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"columns": {"N": "Params"}}, "column 'Params' (mapped to N) is not in the runs table"),
        ({"columns": {"Q": "Model Size"}}, "unknown column(s) Q"),
    ],
)
def test_mapping_errors_name_the_column(kwargs, fragment):
    with pytest.raises(DataError) as info:
        bs.load_runs(table(), **kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "column, values, fragment",
    [
        (
            "loss",
            [3.1, "abc", 2.9, 2.8, 2.7, 2.6, 2.5, 2.4],
            "column 'loss': rows 2 (1 = the first data row) are not numbers ('abc')",
        ),
        (
            "loss",
            [3.1, 3.0, np.nan, 2.8, 2.7, 2.6, 2.5, np.nan],
            "column 'loss': rows 3, 8 (1 = the first data row) are empty or NaN",
        ),
        (
            "Model Size",
            [1e8, np.inf, 4e8, 8e8, 1.6e9, 3.2e9, 6.4e9, 1.28e10],
            "column 'N': rows 2 (1 = the first data row) are infinite",
        ),
        (
            "loss",
            [3.1, 3.0, 2.9, -2.8, 0.0, 2.6, 2.5, 2.4],
            "column 'loss': must be > 0, but rows 4, 5 (1 = the first data row) are -2.8, 0.0",
        ),
        (
            "Training FLOP",
            [1e19, 2e19, 0, 8e19, 1.6e20, 3.2e20, 6.4e20, 1.28e21],
            "column 'C': must be > 0, but rows 3 (1 = the first data row)",
        ),
    ],
)
def test_bad_values_name_column_and_rows(column, values, fragment):
    with pytest.raises(DataError) as info:
        bs.load_runs(table(**{column: values}), {"N": "Model Size", "C": "Training FLOP"})
    assert fragment in str(info.value)


def test_missing_inputs_and_too_few_rows(tmp_path):
    runs = bs.load_runs(pd.DataFrame({"N": [1e8, 2e8], "loss": [3.0, 2.9]}))
    with pytest.raises(DataError, match="needs column.*D.*lacks.*derived"):
        runs.require(("N", "D"), 7, "chinchilla")
    few = bs.load_runs(table().iloc[:5], {"N": "Model Size", "C": "Training FLOP"})
    with pytest.raises(DataError, match="5 rows but law 'chinchilla'.*7 parameters; at least 8"):
        bs.fit(few, "chinchilla")
    with pytest.raises(DataError, match="no 'loss' column"):
        bs.load_runs(pd.DataFrame({"N": [1e8]}))
    with pytest.raises(DataError, match="does not exist"):
        bs.load_runs(tmp_path / "nope.csv")


def test_units_that_look_like_millions_warn():
    with pytest.warns(UnitsWarning, match="column 'N': every value is below 10000.*largest 350"):
        bs.load_runs(pd.DataFrame({"N": [70, 350], "D": [1e9, 2e9], "loss": [3.0, 2.9]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bs.load_runs(table(), {"N": "Model Size", "C": "Training FLOP"})


def test_cli_style_column_mapping_parses_quotes_and_commas():
    assert parse_column_mapping(["N='Model Size',C=Training FLOP", 'loss="a, b"']) == {
        "N": "Model Size",
        "C": "Training FLOP",
        "loss": "a, b",
    }


def test_prediction_points_are_validated_and_derived():
    pts = prepare_points({"N": [1e9, 2e9], "C": [6e19, 1.2e20]}, ("N", "D"))
    np.testing.assert_allclose(pts["D"], [1e10, 1e10])
    with pytest.raises(DataError, match="needs input.*D"):
        prepare_points({"N": 1e9}, ("N", "D"))
    with pytest.raises(DataError, match="column 'N': must be > 0"):
        prepare_points({"N": -1.0, "D": 1e9}, ("N", "D"))


def test_parameter_counts():
    from bayescale.data.runs import count_parameters

    frame = pd.DataFrame(
        {"N": [1e8, 1e9, 1e10], "N_no_embed": [6e7, 8e8, 9e9], "D": [2e9, 2e10, 2e11], "loss": [3.0, 2.6, 2.3]}
    )
    runs = bs.load_runs(frame)
    assert count_parameters(runs, "total") is runs
    counted = count_parameters(runs, "non-embedding")
    assert counted["N"].tolist() == [6e7, 8e8, 9e9] and counted["N_total"].tolist() == [1e8, 1e9, 1e10]
    assert "N counts non-embedding parameters, from column N_no_embed" in counted.notes
    assert count_parameters(counted, "non_embedding") is counted  # never counted twice
    shapes = bs.load_runs(
        pd.DataFrame(
            {"N": [1e8, 1e9], "n_layers": [12, 24], "d_model": [768, 2048], "D": [2e9, 2e10], "loss": [3.0, 2.6]}
        )
    )
    assert count_parameters(shapes, "non_embedding")["N"].tolist() == [12 * 12 * 768**2, 12 * 24 * 2048**2]
    with pytest.raises(bs.DataError, match="needs the non-embedding parameter count: a column N_no_embed"):
        count_parameters(bs.load_runs(frame.drop(columns="N_no_embed")), "non_embedding")
    with pytest.raises(bs.DataError, match="params must be one of total, non_embedding"):
        count_parameters(runs, "embedding")


@pytest.mark.slow
def test_held_out_runs_are_scored_in_the_fit_s_parameter_count(demo_runs):
    from conftest import fake_fit

    from bayescale.evaluation.backtesting import score

    frame = demo_runs.frame.assign(N_no_embed=lambda f: 0.5 * f["N"])
    train, heldout = frame[frame.C < 1e21], frame[frame.C >= 1e21].reset_index(drop=True)
    fit = fake_fit(bs.load_runs(train).frame.assign(N=lambda f: f["N_no_embed"]), spread=0.0)
    fit.settings["params"] = "non_embedding"
    scored = score(fit, bs.load_runs(heldout), seed=0)
    assert np.allclose(scored["runs"]["N"], heldout["N_no_embed"])


@pytest.mark.parametrize("name", ["val_ppl", "Perplexity", "PPL", "c4 ppl (eval)"])
def test_a_loss_column_named_like_a_perplexity_is_noted(name):
    """Perplexities of 3 to 8 pass the check on the values (all below 10); the column's name still says so."""
    frame = pd.DataFrame({"N": [1e8, 1e9, 1e10], "D": [2e9, 2e10, 2e11], name: [8.1, 5.2, 3.4]})
    with pytest.warns(UnitsWarning, match=rf"the loss column {re.escape(repr(name))} is named like a perplexity"):
        bs.load_runs(frame, {"loss": name})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # names that only contain the letters are not perplexities
        for other in ("loss", "apple_loss", "upplied"):
            bs.load_runs(frame.rename(columns={name: other}), {"loss": other} if other != "loss" else None)


def test_implausible_tables_warn_and_say_how_to_silence_it():
    from bayescale.errors import DataWarning

    frame = pd.DataFrame({"N": [1e8, 1e9, 1e10], "D": [2e9, 2e10, 2e11], "loss": [42.0, 20.1, 14.2]})
    with pytest.warns(UnitsWarning, match=r"every value is above 10 .*perplexities, give loss = ln\(perplexity\)"):
        bs.load_runs(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ln(perplexity) is plausible: no warning
        bs.load_runs(frame.assign(loss=np.log(frame["loss"])))
    doubled = pd.concat([frame.assign(loss=[3.0, 2.6, 2.3])] * 2, ignore_index=True)
    with pytest.warns(
        DataWarning,
        match=r"rows 4, 5, 6 \(1 = the first data row\) repeat earlier rows exactly.*category=bayescale.DataWarning",
    ) as caught:
        bs.load_runs(doubled)
    assert [w.filename for w in caught] == [__file__]  # the user's line, not one inside bayescale


def test_errors_list_a_handful_of_columns_closest_first():
    frame = pd.DataFrame({f"metric_{i}": [1.0] for i in range(98)} | {"Model Size": [1e9], "loss": [2.0]})
    with pytest.raises(DataError) as error:
        bs.load_runs(frame, {"N": "Model Sizes"})
    message = str(error.value)
    assert "it has Model Size, " in message and message.endswith("and 92 more") and len(message) < 400
