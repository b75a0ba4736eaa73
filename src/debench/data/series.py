"""Time-series datasets for latent SDEs (filled in by the stochastic family)."""
