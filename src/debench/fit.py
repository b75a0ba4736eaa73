"""Which datasets and which report tables a registered model fits.

The registry records each model's task but not its datasets. The names carry them: a model
built for one dataset family says so in a name token (``resnet6_mnist``, ``odenet_cifar``,
``ffjord_toy``), the convention of every family module. A name without such a token fits every
dataset of its task's kind (the CIFAR ResNets also train on MNIST: the trainer sets the input
channels from the dataset).
"""

from __future__ import annotations

from debench.registry import model_info

# name token -> the datasets a model so named was built for
_TOKEN_DATASETS = {
    "mnist": ("mnist",),
    "cifar": ("cifar10", "cifar100"),
}
# report table -> the task of the models it compares (every other table compares classifiers)
TABLE_TASK = {"flows": "density", "latent_sde": "timeseries", "generative": "generate"}


def _toy(spec) -> bool:
    return spec.kind == "array" and len(spec.shape) == 1


def fits_dataset(model: str, dataset: str) -> str | None:
    """Why ``model`` does not fit ``dataset``, or None when it does.

    Args:
        model: a registered model name.
        dataset: a name in :data:`debench.data.cache.DATASETS`.

    Returns:
        None, or a phrase naming the mismatch (``"an MNIST model (name token 'mnist')"``).

    Raises:
        KeyError: an unknown dataset; :class:`debench.registry.UnknownModelError` for the model.
    """
    from debench.data.cache import DATASETS

    info, spec = model_info(model), DATASETS[dataset]
    tokens = model.split("_")
    for token, names in _TOKEN_DATASETS.items():
        if token in tokens and dataset not in names:
            return f"a {token.upper()} model (name token {token!r}) but {dataset} is not {'/'.join(names)}"
    if "toy" in tokens and not _toy(spec):
        return f"a toy 2-D model (name token 'toy') but {dataset} is not a 2-D toy dataset"
    if info.task in ("classify", "generate") and "toy" not in tokens and spec.kind != "image":
        return f"a {info.task} model for images but {dataset} is not an image dataset"
    if info.task == "timeseries" and (spec.kind != "array" or len(spec.shape) != 2):
        return f"a time-series model but {dataset} is not a time-series dataset"
    return None


def fits_table(model: str, table: str) -> str | None:
    """Why ``model`` does not belong in report table ``table`` (its task differs), or None."""
    want, task = TABLE_TASK.get(table, "classify"), model_info(model).task
    return None if task == want else f"a {task} model but table {table!r} compares {want} models"
