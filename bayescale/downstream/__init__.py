"""Downstream accuracy: a metric law fitted on small models and chained with the loss forecast.

:mod:`~bayescale.downstream.metric` fits the law from loss to accuracy; :mod:`~bayescale.downstream.loss`
says which loss fit serves each point (one, one per group, a sweep's); :mod:`~bayescale.downstream.chain`
passes every posterior draw of the loss through the metric law, and backtests both steps;
:mod:`~bayescale.downstream.sensitivity` says whether the priors of either step carry an accuracy forecast.
"""

from bayescale.downstream.chain import backtest, chained, chained_levels, metric_at_loss
from bayescale.downstream.loss import (
    band_includes,
    describe_loss,
    describe_text,
    load_loss_fits,
    loss_mismatch,
    metric_band_includes,
    sweep_loss_fits,
)
from bayescale.downstream.metric import (
    ABOVE_CHANCE,
    MetricFit,
    above_chance,
    build_metric_model,
    chance_levels,
    check_metric,
    fit_metric,
    forecast_chances,
    metric_mode,
    question_counts,
)
from bayescale.downstream.sensitivity import accuracy_sensitivity

__all__ = [
    "ABOVE_CHANCE",
    "MetricFit",
    "above_chance",
    "accuracy_sensitivity",
    "backtest",
    "band_includes",
    "build_metric_model",
    "chance_levels",
    "chained",
    "chained_levels",
    "check_metric",
    "describe_loss",
    "describe_text",
    "fit_metric",
    "forecast_chances",
    "load_loss_fits",
    "loss_mismatch",
    "metric_at_loss",
    "metric_band_includes",
    "metric_mode",
    "question_counts",
    "sweep_loss_fits",
]
