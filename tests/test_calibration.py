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


def test_bnsl_forecast_of_the_last_three_points_holds():
    result = calibration.run_split(_split("bnsl 4-digit addition, last 3"), seed=20240417)
    assert result["n_train"] == 14 and result["n_test"] == 3
    scores = {m: calibration.scores(rows) for m, rows in result["methods"].items()}
    assert scores["default"]["coverage_0.9"] == 1.0 and scores["default"]["median_abs_rel_error"] < 0.02
    assert scores["default"]["interval_score_90"] >= scores["plain"]["interval_score_90"]  # wider beyond the data


def test_epoch_top_fifth_by_n_is_not_overconfident_and_beats_the_bootstrap():
    shared_file("epoch-chinchilla/svg_extracted_data.csv")
    result = calibration.run_split(_split("epoch top 20% N"), seed=20240417)
    scores = {m: calibration.scores(rows) for m, rows in result["methods"].items()}
    assert result["n_test"] == 48 and set(scores) == {"default", "plain", "bootstrap"}
    default, bootstrap = scores["default"], scores["bootstrap"]
    assert default["coverage_0.9"] >= 0.8 and 0.35 <= default["coverage_0.5"] <= 0.65, default
    assert default["interval_score_90"] < bootstrap["interval_score_90"], (default, bootstrap)
    assert default["median_abs_rel_error"] < 0.01
