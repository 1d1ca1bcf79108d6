"""A multi-corpus sweep from start to finish, as a new user runs it: Gadre et al.'s three corpora.

One scripted run of the CLI on real data (``sweep --by``, ``backtest --by``, ``--where``, a fit with
every Chinchilla parameter pooled by corpus, ``downstream --loss-fit`` on the sweep's fits, ``plan`` and
``predict``), asserting that the commands agree on the loss at the same point and that every band says
what it includes. Sampling is small: the point is that the commands fit together.
"""

import json

import pandas as pd
import pytest
from conftest import shared_file

import bayescale as bs
from bayescale.cli.main import main

SAMPLING = ["--draws", "300", "--tune", "300", "--chains", "2", "--seed", "3", "--quiet"]
CORPORA = {"c4_original", "rpj", "rw_original"}
POINT = "N=1.4e10,D=2.8e11"  # 2x the largest model, 20 tokens per parameter
DISCREPANCY = "extrapolation discrepancy"


@pytest.mark.slow
def test_a_multi_corpus_sweep_from_start_to_finish(tmp_path, capsys):
    folder = shared_file("gadre-overtrain/DERIVED_flat_losses.csv").parent
    runs = tmp_path / "gadre.csv"
    bs.datasets.load_gadre_downstream(folder).to_csv(runs, index=False)

    def run(*args):
        assert main([*map(str, args), "--json"]) == 0, args
        return json.loads(capsys.readouterr().out)

    # a sweep per corpus, then a backtest per corpus
    sweep = tmp_path / "sweep"
    result = run("sweep", runs, "--by", "dataset", "--law", "chinchilla", "--out", sweep, "--processes", "2", *SAMPLING)
    assert {row["group"] for row in result["comparison"]} == CORPORA
    backtest = run("backtest", runs, "--by", "dataset", "--law", "chinchilla", "--holdout", "N >= 1e9", *SAMPLING)
    assert backtest["by"] == "dataset" and {g["group"] for g in backtest["groups"]} == CORPORA
    assert all("error" not in g and g["n_heldout"] == 3 for g in backtest["groups"])  # 1.4B and 6.9B models

    # one corpus by --where, and every parameter pooled by corpus
    rpj, pooled = tmp_path / "rpj.nc", tmp_path / "pooled.nc"
    fitted = run("fit", runs, "--where", "dataset == 'rpj'", "--out", rpj, *SAMPLING)
    assert fitted["n_obs"] == 35 and fitted["source"].endswith("gadre.csv where dataset == 'rpj'")
    pools = [arg for name in ("E", "A", "alpha", "B", "beta") for arg in ("--pool", f"{name}=dataset")]
    run("fit", runs, *pools, "--out", pooled, *SAMPLING)

    # the loss at one point: predict on each fit, downstream on the sweep's fits, plan at its own optimum
    sweep_rpj = sweep / "fits" / "rpj--chinchilla.nc"
    by_sweep = run("predict", sweep_rpj, "--at", POINT)
    by_where = run("predict", rpj, "--at", POINT)
    by_pooled = run("predict", pooled, "--at", f"{POINT},dataset=rpj")
    chained = run(
        "downstream", runs, "--metric", "accuracy", "--group", "dataset", "--loss-fit", sweep,
        "--at", f"{POINT},dataset=rpj", "--sensitivity", *SAMPLING,
    )  # fmt: skip
    loss = chained["predictions"][0]["loss"]
    median = by_sweep["predictions"][0]["median"]
    assert loss["median"] == pytest.approx(median, rel=1e-12)  # the very forecast predict gives
    assert loss["prior_sensitivity"] == pytest.approx(by_sweep["predictions"][0]["prior_sensitivity"], rel=1e-9)
    assert not loss["prior_driven"] and not by_pooled["predictions"][0]["prior_driven"]
    assert by_where["predictions"][0]["median"] == pytest.approx(median, rel=0.01)  # the same model, other draws
    assert by_pooled["predictions"][0]["median"] == pytest.approx(median, rel=0.03)  # pooled: shrunk a little
    assert chained["predictions"][0]["chance"] == 0.25  # "P(above chance 0.25)"

    plan = run("plan", rpj, "--flops", 2.4e21)
    optimum = pd.DataFrame({"N": [plan["N_opt"]["median"]], "D": [plan["D_opt"]["median"]]})
    optimum.to_csv(tmp_path / "optimum.csv", index=False)
    at_optimum = run("predict", rpj, "--points", tmp_path / "optimum.csv")["predictions"][0]
    assert plan["loss_opt"]["median"] == pytest.approx(at_optimum["median"], rel=1e-9)
    assert [plan["loss_opt"]["lower"], plan["loss_opt"]["upper"]] == pytest.approx(
        [at_optimum["lower"], at_optimum["upper"]], rel=1e-9
    )

    # every band says what it includes, and every loss band includes the extrapolation discrepancy
    for result in (by_sweep, by_where, by_pooled):
        assert result["band_includes"]["credible"] == ["parameters", DISCREPANCY]
        assert result["band_includes"]["predictive"] == ["parameters", DISCREPANCY, "noise"]
    assert plan["band_includes"]["credible"] == ["parameters", DISCREPANCY]
    assert plan["band_includes"]["allocation"] == ["parameters", DISCREPANCY]  # N*, D*: their own discrepancy
    assert plan["allocation_calibration"]["source"] in ("internal splits", "prior only")
    described = chained["loss_fits"][0]
    assert described["band_includes"] == ["parameters", DISCREPANCY]
    assert described["metric_band_includes"][:2] == ["loss parameters", f"loss {DISCREPANCY}"]
