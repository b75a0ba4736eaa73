"""Continuous-depth models (Neural ODEs, ANODE, SONODE, CNFs); importing registers them."""

from debench.models.continuous import odenet  # noqa: F401
from debench.models.continuous import anode  # noqa: F401,E402
from debench.models.continuous import flows  # noqa: F401,E402
