"""debench: a benchmark of deep networks inspired by differential equations.

The public surface is the model registry; training, tracking and reporting live in the
``debench.train``, ``debench.track`` and ``debench.report`` packages and the ``debench`` CLI.
"""

from debench.registry import create_model, list_models, model_info, register_model

__all__ = ["create_model", "list_models", "model_info", "register_model"]
__version__ = "0.1.0"
