"""A small subset of the calibration benchmark (benchmarks/calibration.py), sampling for real."""

import sys
from pathlib import Path

import pytest
from conftest import shared_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import calibration  # noqa: E402

pytestmark = pytest.mark.slow


def _split(name: str):
    return next(s for s in calibration.splits() if s.name == name)


@pytest.mark.slow
def test_epoch_beyond_the_compute_frontier_is_not_overconfident():
    """Top 10% by compute: inside the N and D ranges, beyond the largest C. Measured in the N-D box
    alone the distance was 0 and the 90% band held 0.75 (benchmarks/README.md); along C it holds."""
    shared_file("epoch-chinchilla/svg_extracted_data.csv")
    result = calibration.run_split(_split("epoch top 10% C"), seed=20240417)
    scores = {m: calibration.scores(rows) for m, rows in result["methods"].items()}
    assert result["n_test"] == 24 and set(scores) == {"default", "plain", "bootstrap"}
    default, plain, bootstrap = scores["default"], scores["plain"], scores["bootstrap"]
    # 90% holds; the 50% band is narrow on this split (0.21-0.25 since the cross-dataset prior, 0.42 before:
    # one systematic bend per split gives a band with the right 90% a narrow centre), a documented miss
    assert default["coverage_0.9"] >= 0.85 and default["coverage_0.5"] >= 0.2, default
    assert plain["coverage_0.9"] < 0.8 and bootstrap["coverage_0.9"] < 0.8  # what the discrepancy is for
    assert default["interval_score_90"] < plain["interval_score_90"], (default, plain)
    assert default["median_abs_rel_error"] < 0.01


def test_the_chance_that_a_right_forecast_meets_every_target_is_bounded_per_dataset():
    """Splits of one dataset share their data, so they meet the targets together at most as often as the least
    likely of them; datasets are independent. The bound multiplies those smallest chances."""

    def split(p, verdict_coverage):
        return {
            "n_test": 30,
            "scores": {"default": {"coverage_0.5": verdict_coverage, "coverage_0.8": 0.8, "coverage_0.9": 0.9}},
            "if_right": {
                "p_meets_targets": p,
                "range": {"0.5": [0.2, 0.8], "0.8": [0.6, 0.95], "0.9": [0.8, 1.0]},
                "pit": {"0.5": 0.5, "0.8": 0.5, "0.9": 0.5},
            },
        }

    results = {
        "epoch top 10% N": split(0.2, 0.5),
        "epoch top 20% N": split(0.6, 0.3),
        "revisiting vision c_5": split(0.5, 0.5),
        "revisiting LM": split(0.9, 0.5),
        "bnsl 4-digit addition, last 3": {**split(0.01, 0.5), "n_test": 3},
    }  # < 10 points: not counted
    out = calibration.against_right(results)
    assert out["splits"] == 4 and out["meet_targets"] == 3
    assert out["meet_targets_if_right"] == 2.2
    assert out["all_meet_if_right_at_most"] == pytest.approx(0.2 * 0.5 * 0.9)
