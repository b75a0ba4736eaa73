"""Discrete DE-inspired architectures: residual networks read as ODE/PDE discretizations."""

from debench.models.discrete import resnet  # noqa: F401
from debench.models.discrete import chang, fractalnet, lm_resnet, momentum, pde_cnn, revnet, rk_resnet  # noqa: F401
