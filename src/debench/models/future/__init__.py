"""The survey's future directions as registered models: delay (Neural DDEs), fractional-order,
Lévy-driven and higher-order dynamics. Importing this package registers all of them."""

from debench.models.future import dde, fractional, higher_order, levy_sde  # noqa: F401
