"""Datasets: one cached uint8 array file per dataset, loaded onto the training device."""

from debench.data.cache import DATASETS, DatasetError, load_cached, prepare_dataset
from debench.data.device import DeviceData

__all__ = ["DATASETS", "DatasetError", "DeviceData", "load_cached", "prepare_dataset"]
