"""The ``bayescale`` command line (click), a thin layer over the Python API."""
