"""Run records: atomic files, provenance, and the MLflow tracker (optional)."""
