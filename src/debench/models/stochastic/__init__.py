"""Stochastic dynamics (stochastic depth, shake-shake, Neural SDEs, latent SDEs, score SDEs)."""
