"""Stochastic dynamics (stochastic depth, shake-shake, Neural SDEs, latent SDEs, score SDEs)."""

from debench.models.stochastic import depth, latent_sde, neural_sde, score_sde, shake_shake  # noqa: F401
