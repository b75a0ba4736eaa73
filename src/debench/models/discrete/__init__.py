"""Discrete DE-inspired architectures: residual networks read as ODE/PDE discretizations."""

from debench.models.discrete import resnet  # noqa: F401
