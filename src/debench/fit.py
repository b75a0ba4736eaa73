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
ANY_TASK_TABLES = ("measurements",)  # measurement runs (kind: measure) train nothing: any task fits


def _toy(spec) -> bool:
    return spec.kind == "array" and len(spec.shape) == 1


def fits_dataset(model: str, dataset: str) -> str | None:
    """Why ``model`` does not fit ``dataset``, or None when it does.

    Args:
        model: a registered model name.
        dataset: a name in :data:`debench.data.cache.DATASETS`.

    Returns:
        None, or a verb phrase naming the mismatch (``"classifies images but ou_paths is not an
        image dataset"``), to follow the model's name.

    Raises:
        KeyError: an unknown dataset; :class:`debench.registry.UnknownModelError` for the model.
    """
    from debench.data.cache import DATASETS

    info, spec = model_info(model), DATASETS[dataset]
    tokens = model.split("_")
    for token, names in _TOKEN_DATASETS.items():
        if token in tokens and dataset not in names:
            return f"was built for {'/'.join(names)} (name token {token!r}), not {dataset}"
    if "toy" in tokens and not _toy(spec):
        return f"was built for 2-D toy data (name token 'toy'), not {dataset}"
    if info.task in ("classify", "generate") and "toy" not in tokens and spec.kind != "image":
        verb = "classifies" if info.task == "classify" else "generates"
        return f"{verb} images but {dataset} is not an image dataset"
    if info.task == "timeseries" and (spec.kind != "array" or len(spec.shape) != 2):
        return f"models time series but {dataset} is not a time-series dataset"
    return None


def fits_table(model: str, table: str) -> str | None:
    """Why ``model`` does not belong in report table ``table`` (its task differs), or None.

    Args:
        model: a registered model name.
        table: a report table name.

    Returns:
        None, or a verb phrase naming the mismatch, to follow the model's name.
    """
    if table in ANY_TASK_TABLES:
        return None
    want, task = TABLE_TASK.get(table, "classify"), model_info(model).task
    return None if task == want else f"has task {task!r} but table {table!r} compares {want!r} models"
