"""Downstream accuracy: a metric law fitted on small models and chained with the loss forecast.

:mod:`~bayescale.downstream.metric` fits the law from loss to accuracy; :mod:`~bayescale.downstream.chain`
passes every posterior draw of the loss through it, and backtests both steps.
"""

from bayescale.downstream.chain import backtest, chained, chained_levels, metric_at_loss
from bayescale.downstream.metric import (
    MetricFit,
    above_chance,
    build_metric_model,
    chance_levels,
    check_metric,
    fit_metric,
    metric_mode,
    question_counts,
)

__all__ = [
    "MetricFit",
    "above_chance",
    "backtest",
    "build_metric_model",
    "chance_levels",
    "chained",
    "chained_levels",
    "check_metric",
    "fit_metric",
    "metric_at_loss",
    "metric_mode",
    "question_counts",
]
