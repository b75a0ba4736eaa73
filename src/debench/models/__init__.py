"""Built-in model families; importing this package registers all of them."""

from debench.models import baselines, continuous, discrete, future, stochastic  # noqa: F401
