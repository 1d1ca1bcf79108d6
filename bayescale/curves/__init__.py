"""Learning curves: checkpoint tables, the temporal scaling law fitted jointly across runs, and forecasts
of the rest of a run.
"""
