"""The decision discrepancy: tau (the best value's error per e-fold) learned from internal cells, and tune's widened band."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import fake_fit

from bayescale.data.datasets import CHINCHILLA_TRUTH, synthetic_sweep, synthetic_tuning_sweep
from bayescale.data.runs import Runs
from bayescale.forecast import tuning
from bayescale.forecast.plan import chinchilla_closed_form, plan
from bayescale.inference.decision_discrepancy import (
    BUDGET_TOLERANCE,
    COLUMNS,
    TAU_PRIOR,
    allocation_cells,
    budget_cells,
    draw_omega,
    draw_tau,
    isoflop_optimum,
    observed_optimum,
    tau_log_likelihood,
)
from bayescale.inference.discrepancy import Discrepancy, kappa_log_likelihood
from bayescale.inference.distance import observed_ranges
from bayescale.laws.card import get_law

#: as test_tuning's: an asymmetric basin whose bottom moves with N and D
ASYM = {**CHINCHILLA_TRUTH, "l0": float(np.log(1e-3)), "a": -0.5, "b": 0.2, "c": 0.05, "s": -1.0}


def _cells(errors, distances, censored=None, bound=None):
    """Two internal splits of cells whose observed log optimum lies ``errors`` from a forecast of 0."""
    n = len(errors)
    return {
        "split": ["0.15"] * (n // 2) + ["0.3"] * (n - n // 2),
        "tunable": ["lr"] * n,
        "distance": list(distances),
        "forecast": [0.0] * n,
        "forecast_sd": [0.05] * n,
        "observed": list(errors),
        "censored": censored or ["none"] * n,
        "bound": bound or list(errors),
        "observed_sd": [0.1] * n,
    }


def test_observed_optimum_is_the_parabolas_vertex_inside_and_censored_at_an_edge():
    values = np.array([1e-3, 2e-3, 4e-3])
    x0 = np.log(2.5e-3)
    interior = observed_optimum(values, 3.0 + 0.05 * (np.log(values) - x0) ** 2)
    assert interior["censored"] == "none" and interior["observed"] == pytest.approx(x0)
    edge = observed_optimum(values, [3.0, 2.9, 2.85])  # still falling at the largest rate tried
    assert edge["censored"] == "above" and edge["bound"] == pytest.approx(np.log(np.sqrt(2e-3 * 4e-3)))
    assert observed_optimum(values, [2.8, 2.9, 3.0])["censored"] == "below"


def test_tau_grows_when_the_internal_optima_are_off_and_stays_small_when_they_are_right():
    d = np.array([0.8, 1.2, 1.6, 0.8, 1.2, 1.6])
    right = draw_tau(_cells(np.zeros(6), d), 4000, seed=0)
    off = draw_tau(
        _cells(0.5 * d * np.array([1, 1, 1, -1, -1, -1]), d), 4000, seed=0
    )  # 0.5 per e-fold, each split its way
    prior = TAU_PRIOR.sample(np.random.default_rng(0), 4000)
    assert np.median(right) < 0.6 * np.median(prior)
    assert np.median(off) > 0.3 > 3 * np.median(right)
    # a censored cell (the best rate tried at the edge, the optimum beyond it) also says the forecast is off
    censored = _cells(np.zeros(6), d, ["above"] * 6, list(0.5 * d))
    assert np.median(draw_tau(censored, 4000, seed=0)) > 0.2
    # no cell: the prior alone
    empty = {k: [] for k in COLUMNS}
    assert np.median(draw_tau(empty, 4000, seed=0)) == pytest.approx(np.median(prior), rel=0.1)


def test_tau_likelihood_is_the_joint_normal_of_the_loss_discrepancy_without_censoring():
    rng = np.random.default_rng(1)
    d, errors = rng.uniform(0.5, 2.0, 6), rng.normal(0.0, 0.3, 6)
    cells = _cells(errors, d)
    scale = np.hypot(0.05, 0.1) * np.ones(6)
    exact = kappa_log_likelihood(errors, scale, d, cells["split"], grid=np.geomspace(1e-3, 3.0, 401))
    np.testing.assert_allclose(tau_log_likelihood(cells), exact)
    # one cell censored far below its bound's side: it says nothing, as if it were left out
    far = {**cells, "censored": ["none"] * 5 + ["above"], "bound": [*errors[:5], -20.0]}
    kept = {k: list(v)[:5] for k, v in cells.items()}
    np.testing.assert_allclose(tau_log_likelihood(far), tau_log_likelihood(kept), atol=1e-6)


def _with_discrepancy(fit, tau, cells=None):
    n = fit.diagnostics.n_draws
    decision = {"cells": cells or {k: [] for k in COLUMNS}, "prior": TAU_PRIOR.to_dict(), "source": "internal splits"}
    fit.discrepancy = Discrepancy(
        observed_ranges(fit.runs, fit.law.inputs), np.full(n, 1e-4), pd.DataFrame(), 10.0, tau=tau, decision=decision
    )
    return fit


def test_the_best_rates_band_is_unchanged_inside_the_data_and_wider_beyond_it():
    runs = synthetic_tuning_sweep()
    plain = fake_fit(runs, "chinchilla_lr_asym", values=ASYM, spread=0.02)
    wide = _with_discrepancy(fake_fit(runs, "chinchilla_lr_asym", values=ASYM, spread=0.02), np.full(400, 0.2))
    points = pd.DataFrame({"N": [1e8, 1e9, 1e10], "D": [2e9, 2e10, 2e11]})  # inside, past the runs, far past
    before, after = tuning.tune(plain, points), tuning.tune(wide, points)
    for stat in ("median", "lower", "upper"):
        assert after[f"lr_opt_{stat}"].iloc[0] == before[f"lr_opt_{stat}"].iloc[0]
    log_width = {k: np.log(t["lr_opt_upper"] / t["lr_opt_lower"]).to_numpy() for k, t in (("b", before), ("a", after))}
    distance = wide.discrepancy.decision_distance(points)
    assert distance[0] == 0 and 0 < distance[1] < distance[2]
    expected = 2 * 1.645 * np.hypot(0.2 * distance, log_width["b"] / (2 * 1.645))
    np.testing.assert_allclose(log_width["a"][1:], expected[1:], rtol=0.15)  # parameters and discrepancy add
    assert after.attrs["band_includes"]["best"] == ["parameters", "extrapolation discrepancy"]
    assert (
        before.attrs["band_includes"]["best"] == ["parameters"] and before.attrs["best_calibration"]["source"] == "none"
    )
    assert after.attrs["best_calibration"]["tau_median"] == pytest.approx(0.2)
    # the loss given up by 2x off is the basin's shape, which the discrepancy moves but does not change
    np.testing.assert_allclose(after["lr_penalty_high_median"], before["lr_penalty_high_median"], rtol=2e-3)
    # a given rate is scored against the widened best: far beyond, being right is less sure
    given_before, given_after = (tuning.tune(f, points, given={"lr": 3e-4}) for f in (plain, wide))
    assert given_after["lr_p_within_2x"].iloc[0] == given_before["lr_p_within_2x"].iloc[0]
    assert given_after["given_penalty_upper"].iloc[2] > given_before["given_penalty_upper"].iloc[2]


def test_a_fit_without_decision_draws_takes_tau_from_its_prior_and_says_so():
    fit = _with_discrepancy(fake_fit(synthetic_tuning_sweep(), "chinchilla_lr_asym", values=ASYM), None)
    fit.discrepancy.decision = None  # calibrated before the decision discrepancy existed
    table = tuning.tune(fit, {"N": [1e10], "D": [2e11]})
    assert table.attrs["best_calibration"]["source"] == "prior only"
    assert table.attrs["best_calibration"]["tau_median"] == pytest.approx(np.exp(TAU_PRIOR.params["mu"]), rel=0.2)
    assert table["lr_opt_upper"].iloc[0] / table["lr_opt_lower"].iloc[0] > 2


def test_the_calibration_survives_settings_and_draws_round_trip():
    cells = _cells([0.1, -0.2, 0.3, 0.0], [1.0, 1.5, 1.0, 2.0], ["none", "none", "above", "none"])
    fit = _with_discrepancy(
        fake_fit(synthetic_tuning_sweep(), "chinchilla_lr_asym", values=ASYM), np.full(400, 0.15), cells
    )
    disc = fit.discrepancy
    settings = json.loads(json.dumps(disc.to_settings()))  # as a saved fit stores them
    back = Discrepancy.from_settings(settings, disc.posterior_draws())
    np.testing.assert_array_equal(back.tau, disc.tau)
    assert back.decision == disc.decision
    assert "decision_tau" in disc.posterior_draws()
    assert "calibrated on 4 internal cells" in back.describe()


@pytest.mark.slow
def test_a_fit_calibrates_tau_on_its_internal_splits_and_a_saved_fit_keeps_it(tmp_path):
    """End to end, tiny sampling: the internal splits' held-out cells (4 rates each) calibrate tau; save/load keeps it."""
    import bayescale as bs

    fit = bs.fit(synthetic_tuning_sweep(), "chinchilla_lr_asym", draws=100, tune=100, chains=2, progressbar=False)
    disc = fit.discrepancy
    cells = pd.DataFrame(disc.decision["cells"])
    assert disc.decision["source"] == "internal splits" and len(cells) >= 3 and (cells["distance"] > 0).any()
    assert len(disc.tau) == fit.diagnostics.n_draws
    # the sweep follows the card's own form: the internal forecasts of the best rate are near the observed ones
    interior = cells[cells["censored"] == "none"]
    assert (np.abs(interior["observed"] - interior["forecast"]) < 0.5).all()
    back = bs.Fit.load(fit.save(tmp_path / "lr.nc"))
    np.testing.assert_allclose(back.discrepancy.tau, disc.tau)
    assert back.discrepancy.decision == json.loads(json.dumps(disc.decision))
    far = {"N": [1e10], "D": [2e11]}
    pd.testing.assert_frame_equal(tuning.tune(back, far), tuning.tune(fit, far))


# -- the compute-optimal allocation's discrepancy (plan's N*, D*) ---------------------------------
def _allocation_fit(tau):
    """A Chinchilla fit of an IsoFLOP sweep up to 1e21 FLOPs with an allocation discrepancy of ``tau`` per e-fold."""
    fit = fake_fit(synthetic_sweep(), "chinchilla", spread=0.02)
    n = fit.diagnostics.n_draws
    decision = {"cells": {k: [] for k in COLUMNS}, "prior": TAU_PRIOR.to_dict(), "allocation_source": "internal splits"}
    fit.discrepancy = Discrepancy(
        observed_ranges(fit.runs, fit.law.inputs),
        np.full(n, 1e-4),
        pd.DataFrame(),
        10.0,
        decision=decision,
        allocation_tau=None if tau is None else np.full(n, tau),
    )
    return fit


def test_isoflop_cells_are_the_runs_of_one_budget_and_a_continuous_spread_forms_none():
    sweep = synthetic_sweep(outlier_fraction=0.0)
    cells = budget_cells(sweep)
    assert len(cells) == 7 and all(len(rows) == 9 and sweep["C"].iloc[rows].nunique() == 1 for rows in cells)
    rng = np.random.default_rng(0)
    n = np.exp(rng.uniform(np.log(1e7), np.log(1e9), 60))
    spread = pd.DataFrame({"N": n, "D": 20 * n * np.exp(rng.uniform(-1, 1, 60)), "loss": 3.0})
    for rows in budget_cells(spread):  # a continuous spread forms cells only where 3 sizes share a budget
        assert np.ptp(np.log(6 * spread["N"] * spread["D"]).iloc[rows]) <= 2 * BUDGET_TOLERANCE and len(rows) >= 3


def test_an_isoflop_cells_optimum_is_approach_2s_parabola_with_its_noise_in_the_sd():
    sizes = np.geomspace(1e8, 1e10, 15)
    x0, rng = np.log(1e9), np.random.default_rng(0)
    clean = 2.5 + 0.02 * (np.log(sizes) - x0) ** 2
    exact = isoflop_optimum(sizes, clean)
    assert exact["censored"] == "none" and exact["observed"] == pytest.approx(x0)
    noisy = [isoflop_optimum(sizes, clean + rng.normal(0, 0.02, 15)) for _ in range(200)]
    vertices, sds = np.array([o["observed"] for o in noisy]), np.array([o["observed_sd"] for o in noisy])
    # the delta method's sd is the vertex's real scatter under noise, not the grid's bracket (0.095 here)
    assert np.std(vertices) == pytest.approx(np.median(sds), rel=0.3)
    louder = [isoflop_optimum(sizes, clean + rng.normal(0, 0.06, 15))["observed_sd"] for _ in range(50)]
    assert np.median(louder) == pytest.approx(3 * np.median(sds), rel=0.3)
    # still falling at the largest size: censored, as the bracket says
    assert isoflop_optimum(sizes, 3.0 - 0.01 * np.log(sizes))["censored"] == "above"


def test_an_internal_cell_forecasts_the_laws_optimum_along_its_budget_and_observes_the_vertex():
    sweep = synthetic_sweep(noise=0.0, outlier_fraction=0.0)
    law = get_law("chinchilla")
    train, heldout = (
        Runs(part.reset_index(drop=True)) for part in (sweep[sweep["C"] < 1e20], sweep[sweep["C"] >= 1e20])
    )
    params = {k: np.full((50, 1), CHINCHILLA_TRUTH[k]) for k in law.param_names}
    rows = allocation_cells(law, params, train, heldout, "0.3")
    assert len(rows) == 3 and {row["tunable"] for row in rows} == {"N"}
    for row, flops in zip(rows, (1e20, 3e20, 1e21)):
        n_opt, _ = chinchilla_closed_form(CHINCHILLA_TRUTH, flops)
        assert row["forecast"] == pytest.approx(np.log(n_opt), abs=0.01)  # the law's own minimum along 6ND
        assert row["censored"] == "none" and abs(row["observed"] - row["forecast"]) < 2 * row["observed_sd"]
        assert row["distance"] > 0
    # a pooled split (parameters that differ between runs) says nothing about one allocation
    pooled = {**params, "E": np.tile(np.linspace(1.6, 1.8, len(heldout.frame)), (50, 1))}
    assert allocation_cells(law, pooled, train, heldout, "0.3") == []


def test_plans_allocation_band_is_unchanged_inside_the_runs_and_wider_beyond():
    plain, wide = _allocation_fit(None), _allocation_fit(0.2)
    plain.discrepancy = None
    inside, beyond = 1e20, 1e24
    for flops, same in ((inside, True), (beyond, False)):
        before, after = plan(plain, flops), plan(wide, flops)
        width = {k: np.log(p["N_opt"]["upper"] / p["N_opt"]["lower"]) for k, p in (("b", before), ("a", after))}
        distance = after["allocation_calibration"]["distance"]
        if same:
            assert distance == 0 and after["N_opt"] == before["N_opt"] and after["D_opt"] == before["D_opt"]
            continue
        assert distance > 2
        expected = 2 * 1.645 * np.hypot(0.2 * distance, width["b"] / (2 * 1.645))
        assert width["a"] == pytest.approx(expected, rel=0.15)  # parameters and discrepancy add
        # D* follows from the budget: the widened band of D* mirrors N*'s under 6ND
        assert after["D_opt"]["lower"] == pytest.approx(flops / 6 / after["N_opt"]["upper"], rel=0.02)
    assert before["band_includes"]["allocation"] == ["parameters"]
    assert after["band_includes"]["allocation"] == ["parameters", "extrapolation discrepancy"]
    assert after["allocation_calibration"]["source"] == "internal splits"
    assert after["allocation_calibration"]["tau_median"] == pytest.approx(0.2)
    # a fit calibrated before the allocation's discrepancy existed takes tau from its prior and says so
    assert plan(_allocation_fit(None), beyond)["allocation_calibration"]["source"] == "prior only"


def test_omega_is_the_spread_of_the_laws_optimum_against_the_observed_ones_inside_the_runs():
    def inside(errors):
        n = len(errors)
        return {
            **_cells(errors, np.zeros(n)),
            "tunable": ["N"] * n,
            "forecast_sd": [0.02] * n,
            "observed_sd": [0.04] * n,
        }

    rng = np.random.default_rng(2)
    off, right = draw_omega(inside(rng.normal(0, 0.3, 20)), 4000, 0), draw_omega(inside(np.zeros(20)), 4000, 0)
    assert np.median(off) == pytest.approx(0.3, rel=0.3) and np.median(right) < 0.05
    # omega widens plan's band of N* inside the runs too, where tau (per e-fold beyond them) adds nothing
    fit = _allocation_fit(0.2)
    narrow = plan(fit, 1e20)
    fit.discrepancy.allocation_omega = np.full(len(fit.discrepancy.allocation_tau), 0.3)
    wide = plan(fit, 1e20)
    assert narrow["allocation_calibration"]["distance"] == 0 and wide["allocation_calibration"]["omega_median"] == 0.3
    width = {k: np.log(p["N_opt"]["upper"] / p["N_opt"]["lower"]) for k, p in (("n", narrow), ("w", wide))}
    assert width["w"] == pytest.approx(2 * 1.645 * np.hypot(0.3, width["n"] / (2 * 1.645)), rel=0.15)


@pytest.mark.slow
def test_a_sweep_fit_calibrates_the_allocation_on_its_held_out_isoflop_cells(tmp_path):
    """End to end, tiny sampling: the internal splits' held-out budgets calibrate allocation_tau; save/load keeps it."""
    import bayescale as bs

    fit = bs.fit(synthetic_sweep(), "chinchilla", draws=100, tune=100, chains=2, progressbar=False)
    disc = fit.discrepancy
    cells = pd.DataFrame(disc.decision["cells"])
    assert disc.decision["allocation_source"] == "internal splits" and (cells["tunable"] == "N").sum() >= 2
    assert disc.tau is None and len(disc.allocation_tau) == fit.diagnostics.n_draws  # chinchilla tunes nothing
    inside = pd.DataFrame(disc.decision["allocation_inside"])  # the fit's own cells calibrate omega
    assert len(inside) >= 3 and (inside["distance"] == 0).all() and len(disc.allocation_omega) == len(disc.kappa)
    assert "allocation_tau" in disc.describe() and "internal cells" in disc.describe()
    back = bs.Fit.load(fit.save(tmp_path / "sweep.nc"))
    np.testing.assert_allclose(back.discrepancy.allocation_tau, disc.allocation_tau)
    np.testing.assert_allclose(back.discrepancy.allocation_omega, disc.allocation_omega)
    assert plan(back, 1e23)["N_opt"] == plan(fit, 1e23)["N_opt"]


@pytest.mark.slow
def test_on_epochs_runs_plans_band_holds_a_held_out_budgets_optimum_where_the_parameters_alone_miss(epoch_path):
    """Real data: fitted below 1.5e20 FLOPs, the budget of 9.8e20 (16 runs, 1.9 e-folds beyond) has its optimum at
    log N* 21.78 (Approach 2); the law's own band (parameters only) misses it, the allocation's discrepancy holds it."""
    import copy

    import bayescale as bs
    from bayescale.data.datasets import load_epoch_chinchilla

    frame = load_epoch_chinchilla(epoch_path).frame
    fit = bs.fit(frame[frame["C"] < 1.5e20].reset_index(drop=True), "chinchilla", progressbar=False)
    held = frame[frame["C"] >= 1.5e20].reset_index(drop=True)
    cell = next(held.iloc[rows] for rows in budget_cells(held) if held["C"].iloc[rows].median() > 9e20)
    by_size = cell.groupby("N")["loss"].mean()
    observed = isoflop_optimum(by_size.index.to_numpy(), by_size.to_numpy())["observed"]
    plain = copy.copy(fit)
    plain.discrepancy = None
    flops = float(cell["C"].median())
    alone, widened = ({k: np.log(v) for k, v in plan(f, flops)["N_opt"].items()} for f in (plain, fit))
    assert not alone["lower"] <= observed <= alone["upper"] and widened["lower"] <= observed <= widened["upper"]
    assert fit.discrepancy.decision["allocation_source"] == "internal splits"
