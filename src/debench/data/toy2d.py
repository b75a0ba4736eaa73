"""2-D toy densities for continuous normalizing flows (filled in by the continuous family)."""
