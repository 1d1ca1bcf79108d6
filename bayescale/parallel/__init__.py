"""Fan-out of independent fits: local worker processes or a Dask cluster, behind one executor.

Imports only the foundation modules: any layer may fan out.
"""
