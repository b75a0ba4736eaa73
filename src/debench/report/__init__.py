"""Aggregation of runs into tables beside the published numbers, plots and the HTML report."""
