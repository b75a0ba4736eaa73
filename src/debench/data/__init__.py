"""Datasets: one cached uint8 array file per dataset, loaded onto the training device."""

from debench.data.cache import DATASETS, DatasetError, DatasetSpec, load_cached, prepare_dataset, register_dataset
from debench.data.device import DeviceData

__all__ = [
    "DATASETS", "DatasetError", "DatasetSpec", "DeviceData", "load_cached", "prepare_dataset", "register_dataset",
]

from debench.data import series, toy2d  # noqa: E402,F401  (register their datasets)
