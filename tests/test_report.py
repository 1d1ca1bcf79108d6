"""Plots, the HTML/Markdown report, and the report checked in headless Chromium."""

import base64
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, fake_fit

import bayescale as bs
from bayescale.cli.main import main
from bayescale.evaluation.backtesting import BacktestResult, score
from bayescale.viz import plots
from bayescale.viz.latex import formula_latex
from bayescale.viz.report import build_report, human

ARTIFACTS = ROOT / "test-artifacts"


def test_laws_are_written_as_mathematics():
    assert formula_latex("E + A / N**alpha + B / D**beta") == r"E + \frac{A}{N^{\alpha}} + \frac{B}{D^{\beta}}"
    assert formula_latex("E + +A / N**alpha") == r"E + \frac{A}{N^{\alpha}}"  # a unary plus is no minus
    assert formula_latex("((Nc / N)**(alphaN / alphaD) + Dc / D)**alphaD").startswith(
        r"\left(\left(\frac{N_{c}}{N}\right)^{\frac{\alpha_{N}}{\alpha_{D}}}"
    )
    assert formula_latex("(1 + (X / d1)**(1 / f1))**(-c1 * f1)").endswith(r"^{-c_{1}\,f_{1}}")
    assert human(7e10) == "70B" and human(1.4e12) == "1.4T"


@pytest.mark.slow
def test_every_plot_returns_a_figure(demo_runs):
    import matplotlib.figure

    fit = fake_fit(demo_runs, spread=0.02)
    held = pd.DataFrame({"N": [2e10], "D": [4e11], "loss": [2.05]})
    figures = [
        plots.forecast_fan(fit, heldout=held),
        plots.prior_posterior(fit),
        plots.correlated_pairs(fit, 0.0),
        plots.frontier_bands(fit, [1e21, 1e23]),
        plots.loo_comparison(
            pd.DataFrame(
                {"elpd": [10.0, 4.0], "se": [2.0, 2.5], "elpd_diff": [0.0, 6.0], "dse": [0.0, 1.5]},
                index=["chinchilla", "kaplan_nd"],
            )
        ),
        plots.loo_pit(fit),
    ]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figures)
    assert "prior" in fit.idata.children and "posterior_predictive" in fit.idata.children  # ArviZ's groups, drawn
    fan = figures[0].axes[0]
    assert fan.get_xscale() == "log" and "held-out runs (1/1" in " ".join(t.get_text() for t in fan.get_legend().texts)


@pytest.mark.slow
def test_learning_curve_plot_marks_what_the_fit_saw():
    from bayescale.curves.learning_curves import load_checkpoints
    from bayescale.data.schedules import add_schedule_inputs

    runs = load_checkpoints(add_schedule_inputs(bs.datasets.synthetic_schedule_curves(0)), warmup=0)
    fit = fake_fit(runs, "schedule_aware", bs.datasets.SCHEDULE_TRUTH, spread=0.01)
    fig = plots.learning_curves(fit, runs, upto=0.5, show=["cosine-4000-0.001", "wsd-8000-0.002"])
    first, second = fig.axes[:2]
    assert first.get_title() == "cosine-4000-0.001" and len(fig.axes) == 2
    seen, unseen = (c.get_offsets() for c in first.collections[2:4])
    assert len(seen) == 8 and len(unseen) == 8 and seen[:, 0].max() <= 2000 < unseen[:, 0].min()
    median = first.lines[0].get_ydata()
    assert median[-1] == pytest.approx(unseen[-1, 1], rel=0.02)  # the band reaches the run's true end
    assert second.get_xlim()[1] >= 8000  # a WSD run is followed to the end of its schedule
    text = build_report({"curves": fit}, fmt="markdown")
    assert "Checkpoints of each run and the fitted curve" in text and "L = L_{0}" in text


@pytest.fixture(scope="module")
def report_inputs(demo_runs):
    frame = demo_runs.frame
    train, held = frame[frame.C < 1e21].reset_index(drop=True), frame[frame.C >= 1e21].reset_index(drop=True)
    fit = fake_fit(train, spread=0.01)
    scored = score(fit, bs.load_runs(held), seed=0)
    return fit, BacktestResult("C >= 1e21", len(train), len(held), {"chinchilla": scored})


@pytest.mark.slow
def test_html_report_is_self_contained_and_says_it_in_words(report_inputs):
    fit, backtest = report_inputs
    text = build_report({"demo": fit}, backtest=backtest, points=[{"N": 7e10, "D": 1.4e12}])
    assert "<img" in text and "src='http" not in text and 'src="http' not in text  # images inline
    images = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(images) >= 6 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert re.search(
        r"At N = 70B and D = 1.4T the forecast loss is \d\.\d{3}; 90% of new runs would land between "
        r"\d\.\d{3} and \d\.\d{3}",
        text,
    )
    assert "Backtest: forecasting 9 held-out runs" in text and "90% lower" in text
    assert "Model checks" in text and "LOO-PIT" in text and "prior predictive:" in text  # bayescale check's plots


@pytest.mark.slow
def test_markdown_report(report_inputs, tmp_path, capsys):
    fit, backtest = report_inputs
    text = build_report({"demo": fit}, fmt="markdown")
    assert "$$\nL = E + \\frac{A}{N^{\\alpha}}" in text and "| alpha " in text and "![" in text
    with pytest.raises(bs.BayescaleError, match="format must be 'html' or 'markdown'"):
        build_report({"demo": fit}, fmt="pdf")


def _browser_check(html_path: Path, screenshot: Path) -> dict:
    """Open the report in headless Chromium: console errors, image sizes, a screenshot of the fan chart."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is missing under CI (make setup installs it)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 1200})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html_path.resolve().as_uri())
        page.wait_for_load_state("load")
        sizes = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        screenshot.parent.mkdir(exist_ok=True)
        page.locator("figure").first.screenshot(path=str(screenshot))
        browser.close()
    return {"errors": errors, "sizes": sizes}


@pytest.mark.slow
def test_report_cli_passes_the_browser_check(report_inputs, tmp_path, capsys):
    fit, backtest = report_inputs
    fit_path, bt_path = fit.save(tmp_path / "demo.nc"), backtest.save(tmp_path / "bt.json")
    out = tmp_path / "report.html"
    assert (
        main(["report", str(fit_path), "--backtest", str(bt_path), "--at", "N=7e10,D=1.4e12", "--out", str(out)]) == 0
    )
    assert "report: fan chart" in capsys.readouterr().err  # progress
    result = _browser_check(out, ARTIFACTS / "report_demo.png")
    assert result["errors"] == []
    assert len(result["sizes"]) >= 6 and all(ok and w > 0 and h > 0 for ok, w, h in result["sizes"])
    assert (ARTIFACTS / "report_demo.png").stat().st_size > 10_000


@pytest.mark.slow
def test_epoch_report_shows_held_out_runs_in_a_real_browser(epoch_split, tmp_path):
    """Fit Epoch on N < 2.9e9, score the 32 larger runs, report, open in Chromium, keep a screenshot."""
    train, held, fit = epoch_split
    backtest = BacktestResult("N >= 2.9e9", len(train), len(held), {"chinchilla": score(fit, bs.load_runs(held), 0)})
    assert backtest.results["chinchilla"]["coverage"]["0.9"] >= 0.8
    out = tmp_path / "epoch.html"
    assert (
        main(
            [
                "report",
                str(fit.save(tmp_path / "epoch.nc")),
                "--backtest",
                str(backtest.save(tmp_path / "bt.json")),
                "--at",
                "N=7e10,D=1.4e12",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = _browser_check(out, ARTIFACTS / "report_epoch.png")
    assert result["errors"] == [] and all(ok and w > 0 and h > 0 for ok, w, h in result["sizes"])


@pytest.mark.slow
def test_a_report_on_several_fits_compares_them_or_says_why_not(demo_runs):
    import warnings

    truth = bs.datasets.CHINCHILLA_TRUTH
    good, bad = fake_fit(demo_runs, spread=0.002), fake_fit(demo_runs, values={**truth, "E": 1.9}, spread=0.002)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.SamplerWarning)
        text = build_report({"truth": good, "wrong": bad}, points=[{"N": 7e10, "D": 1.4e12}], fmt="markdown")
    assert (
        "## Law comparison (PSIS-LOO)" in text
        and "| truth" in text
        and "elpd difference from the best fit, with standard errors" in text
    )
    fewer = fake_fit(demo_runs.frame.iloc[:-1], spread=0.002)
    text = build_report({"all": good, "fewer": fewer}, points=[{"N": 7e10, "D": 1.4e12}], fmt="markdown")
    assert "Not compared: fits 'all' and 'fewer' are not on the same observations" in text


@pytest.mark.slow
def test_the_fan_chart_scores_held_out_runs_as_the_backtest_did(demo_runs):
    """Held-out runs carry the backtest's forecasts (a fit without them), not this fit's: chart and table agree."""
    from bayescale.viz.report import backtest_runs

    frame = demo_runs.frame
    train, held = frame[frame.C < 1e21].reset_index(drop=True), frame[frame.C >= 1e21].reset_index(drop=True)
    wrong = fake_fit(train, values={**bs.datasets.CHINCHILLA_TRUTH, "E": 2.3}, spread=0.01)  # misses every held-out run
    scored = score(wrong, bs.load_runs(held), seed=0)
    assert not scored["runs"]["inside_90"].any()
    backtest = BacktestResult(
        "C >= 1e21", len(train), len(held), {"chinchilla": scored, "kaplan_nd": {"error": "did not fit"}}
    )
    full = fake_fit(frame, spread=0.01)  # the reported fit saw the held-out runs and would cover them
    runs = backtest_runs(backtest, full)
    assert runs is scored["runs"]
    fan = plots.forecast_fan(full, heldout=runs, points=pd.DataFrame({"N": [3e11], "D": [6e12]})).axes[0]
    legend = " ".join(t.get_text() for t in fan.get_legend().texts)
    assert f"held-out runs, backtest forecasts (0/{len(held)} inside 90%)" in legend
    assert "asked points" in legend and fan.get_xlim()[1] > 3e11
    other_law = fake_fit(frame, law="kaplan_nd", values={"Nc": 8.8e13, "alphaN": 0.076, "Dc": 5.4e13, "alphaD": 0.095})
    assert backtest_runs(backtest, other_law) is None  # its backtest entry failed: no held-out markers


@pytest.mark.slow
def test_a_report_warns_only_about_the_points_asked_for_and_says_what_its_bands_include(demo_runs):
    """Its own points (10x, 100x the largest run) and frontier grid go into the document as notes, not to stderr."""
    import warnings

    from bayescale.inference.discrepancy import Discrepancy
    from bayescale.inference.distance import observed_ranges

    fit = fake_fit(demo_runs, spread=0.01)
    fit.discrepancy = Discrepancy(
        observed_ranges(fit.runs, fit.law.inputs), np.full(fit.diagnostics.n_draws, 0.02), pd.DataFrame(), 0.5
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", bs.ExtrapolationWarning)
        text = build_report({"demo": fit}, fmt="markdown")
    assert "Note: the forecast at N=" in text and "rests on the prior for the extrapolation discrepancy" in text
    assert (
        "credible (the law) includes parameters + extrapolation discrepancy; predictive (a new run) includes "
        "parameters + extrapolation discrepancy + noise"
    ) in text
    with pytest.warns(bs.ExtrapolationWarning, match=r"the forecast at N=1e\+13, D=2e\+14, C=1.2e\+28 lies"):
        asked = build_report({"demo": fit}, fmt="markdown", points=[{"N": 1e13, "D": 2e14}])
    assert "Note: the forecast at" not in asked
