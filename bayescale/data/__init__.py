"""Data: the runs table (reading, column mapping, checks), learning-rate schedules, tunable inputs and the
demo and public datasets.

Imports only :mod:`bayescale.laws` and the foundation modules.
"""
