"""Datasets: registry, verified fetching with a cache, IDX parsing, seeded splits and on-device batching."""

from fmnist.data.batches import DeviceData, pixel_stats
from fmnist.data.dataset import Dataset, load_dataset, stratified_split
from fmnist.data.fetch import ResolvedFile, cache_dir, download_file, mirrors, resolve_file
from fmnist.data.idx import DataFileError, encode_idx, parse_idx
from fmnist.data.registry import DATASETS, FASHION_MNIST, MNIST, DatasetSpec, FileSpec, get_dataset_spec

__all__ = [
    "DATASETS",
    "FASHION_MNIST",
    "MNIST",
    "DataFileError",
    "Dataset",
    "DatasetSpec",
    "DeviceData",
    "FileSpec",
    "ResolvedFile",
    "cache_dir",
    "download_file",
    "encode_idx",
    "get_dataset_spec",
    "load_dataset",
    "mirrors",
    "parse_idx",
    "pixel_stats",
    "resolve_file",
    "stratified_split",
]
