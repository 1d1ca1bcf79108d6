"""Model checks: prior predictive, posterior predictive and LOO-PIT, through the generative model."""

import json
import warnings

import numpy as np
import pytest
from conftest import fake_fit

import bayescale as bs
from bayescale.cli.main import main
from bayescale.forecast.checks import check


@pytest.fixture(scope="module")
def sampled():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bs.fit(
            bs.datasets.synthetic_sweep(3, outlier_fraction=0),
            "chinchilla",
            draws=300,
            tune=300,
            chains=2,
            progressbar=False,
            extrapolation="none",
        )


@pytest.mark.slow
def test_a_good_fit_passes_every_check_and_gains_arviz_groups(sampled):
    result = sampled.check(seed=1)
    assert {"prior", "prior_predictive", "posterior_predictive", "observed_data"} <= set(sampled.idata.children)
    assert result["prior_predictive"]["outside"] == 0
    assert 0.8 <= result["posterior_predictive"]["coverage_0.9"] <= 1.0
    assert len(result["loo_pit"]["values"]) == result["n_runs"] and result["loo_pit"]["inside_envelope"]
    band = result["loo_pit"]["ecdf"]  # the simultaneous band is wider than the pointwise one, and holds the ECDF
    assert all(lo <= e <= hi for lo, e, hi in zip(band["lower"], band["ecdf"], band["upper"]))
    assert result["findings"][0].startswith("prior predictive: every run")
    assert result["findings"][2].startswith("LOO-PIT: consistent with calibrated")


def test_a_noise_scale_ten_times_too_small_is_caught(demo_runs):
    """Hand-written posterior with sigma 0.001 on data with 1% noise: bands far too narrow, in and out of sample."""
    narrow = fake_fit(
        demo_runs,
        values={**bs.datasets.CHINCHILLA_TRUTH, "sigma": 0.001, "nu": 30.0},
        likelihood="studentt",
        draws=300,
        spread=0.002,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = check(narrow, seed=0)
    assert result["posterior_predictive"]["coverage_0.9"] < 0.8
    assert not result["loo_pit"]["inside_envelope"] and result["loo_pit"]["share_outside_central_90"] > 0.3
    assert result["loo_pit"]["ecdf_points_outside"] > 0.1
    assert "bands too narrow" in result["findings"][2]
    assert "misses something" in result["findings"][1]


def test_losses_in_the_wrong_units_are_ruled_out_by_the_priors():
    from bayescale.forecast.checks import findings

    result = {
        "n_runs": 10,
        "prior_predictive": {
            "band": 0.99,
            "outside": 10,
            "outside_rows": list(range(1, 11)),
            "loss_range": [0.7, 1300.0],
            "observed_range": [2300.0, 4000.0],
        },
        "posterior_predictive": {"coverage_0.5": 0.5, "coverage_0.9": 0.9},
        "loo_pit": {"envelope_prob": 0.99, "inside_envelope": True, "mean": 0.5, "share_outside_central_90": 0.1},
    }
    assert "check the units of the table" in findings(result)[0] and "rows 1, 2, 3" in findings(result)[0]


@pytest.mark.slow
def test_cli_check_prints_findings_json_and_a_figure(sampled, tmp_path, capsys):
    path = sampled.save(tmp_path / "fit.nc")
    assert main(["check", str(path), "--plot", str(tmp_path / "checks.png")]) == 0
    out = capsys.readouterr().out
    assert "prior predictive:" in out and "LOO-PIT:" in out
    assert (tmp_path / "checks.png").stat().st_size > 10_000
    from bayescale.viz.plots import model_checks

    figure = model_checks(sampled, sampled.check(seed=1))
    low, high = figure.axes[0].get_xlim()  # the prior predictive panel shows the runs, not +-1000 nats
    observed = np.log(sampled.runs["loss"])
    assert low <= observed.min() and high >= observed.max() and high - low < 20 * (observed.max() - observed.min())
    assert main(["check", str(path), "--json", "--prior-draws", "200"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"prior_predictive", "posterior_predictive", "loo_pit", "findings"}
    assert main(["check", str(path), "--plot", str(tmp_path / "missing" / "c.png")]) == 2
    assert "folder" in capsys.readouterr().err


@pytest.mark.slow
def test_scatter_that_grows_with_n_is_reported_with_the_noise_trend_as_the_remedy():
    """Noise sd 0.01 at the centre growing by exp(0.4) per e-fold of N, checked against one noise scale of 0.01."""
    import pandas as pd

    rng = np.random.default_rng(2)
    design = pd.DataFrame({"N": np.exp(rng.uniform(np.log(1e7), np.log(1e10), 150))})
    design["D"] = 20 * design["N"]
    runs = bs.datasets.simulate_runs(
        "chinchilla", bs.datasets.CHINCHILLA_TRUTH, design, noise=0.01, noise_slope=0.4, seed=2
    )
    one_scale = fake_fit(
        runs, values={**bs.datasets.CHINCHILLA_TRUTH, "sigma": 0.01, "nu": 30.0}, draws=300, spread=0.002
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = check(one_scale, seed=0)
    thirds = result["noise_along_size"]
    assert thirds["input"] == "N" and not thirds["noise_trend"]
    assert thirds["coverage_0.5_largest_third"] < 0.35 < 0.65 < thirds["coverage_0.5_smallest_third"], thirds
    finding = next(f for f in result["findings"] if f.startswith("noise along N"))
    assert "grows with N" in finding and "too narrow" in finding and "--noise-trend" in finding


@pytest.mark.slow
def test_perplexities_given_as_the_loss_are_flagged_and_real_losses_are_not(epoch_path):
    """Known answers: Epoch's losses exponentiated are flagged; Epoch, Gadre et al. and the demo as they are, not.

    Before, perplexities went through fit and check unflagged (load_runs warns only when every value is above 10).
    """
    from conftest import shared_file

    from bayescale.forecast.checks import loss_scale

    epoch = bs.datasets.load_epoch_chinchilla(epoch_path).frame
    gadre = bs.datasets.load_gadre(shared_file("gadre-overtrain/DERIVED_flat_losses.csv")).frame
    demo = bs.datasets.synthetic_sweep(0)
    tables = {
        "epoch": epoch,
        "gadre": gadre[["N", "D", "loss"]],
        "demo": demo,
        "demo exponentiated": demo.assign(loss=np.exp(demo["loss"])),  # the prior holds the posterior floor at 2.4
        "epoch exponentiated": epoch.assign(loss=np.exp(epoch["loss"])),
    }
    scales = {}
    for name, table in tables.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = bs.fit(table, "chinchilla", draws=150, tune=200, chains=2, progressbar=False, extrapolation="none")
        scales[name] = loss_scale(fitted)
    flagged = {name for name, scale in scales.items() if scale["looks_like_perplexity"]}
    assert flagged == {"epoch exponentiated", "demo exponentiated"}, scales
    assert 1.4 < scales["epoch"]["floor"] < 2.2 and 1.7 < scales["epoch exponentiated"]["log_floor"] < 2.2
    result = fitted.check(prior_draws=100)  # the last fit: perplexities; the finding says so and what to do
    assert result["loss_scale"]["looks_like_perplexity"]
    (finding,) = [f for f in result["findings"] if f.startswith("loss scale:")]
    assert "looks like perplexity (exp of the loss)" in finding and "fit ln(perplexity)" in finding
    assert loss_scale(fake_fit(bs.datasets.synthetic_sweep(0), law="kaplan_nd", values=KAPLAN)) is None  # no floor


KAPLAN = {"Nc": 8.8e13, "alphaN": 0.076, "Dc": 5.4e13, "alphaD": 0.095}
