"""Evaluation of fitted laws: leave-future-out backtests, PSIS-LOO comparison and stacking, tuning
backtests, and sweeps of many laws over many groups.
"""
