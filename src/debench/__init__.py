"""debench: a benchmark of deep networks inspired by differential equations.

The public surface is the model registry; training, tracking and reporting live in the
``debench.train``, ``debench.track`` and ``debench.report`` packages and the ``debench`` CLI.
"""

__all__ = ["create_model", "list_models", "model_info", "register_model"]


def __getattr__(name: str):
    # lazy, so that debench.report and the report commands of the CLI never import torch
    if name in __all__:
        from debench import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'debench' has no attribute {name!r}")
__version__ = "0.1.0"
