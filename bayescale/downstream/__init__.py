"""Downstream accuracy: a metric law fitted on small models and chained with the loss forecast."""
