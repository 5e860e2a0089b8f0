"""Real single-cell data sets by name (``sn.datasets.load("worm_neuron_cell")``)."""

from ._registry import (
    DATA_DIR_ENV,
    REGISTRY,
    available,
    cache_dir,
    data_dirs,
    download,
    load,
    pbmc68k_reduced_counts,
    read_scdeepcluster_h5,
)
from ._synthetic import synthetic_counts, synthetic_perturbation

__all__ = [
    "DATA_DIR_ENV",
    "REGISTRY",
    "available",
    "cache_dir",
    "data_dirs",
    "download",
    "load",
    "pbmc68k_reduced_counts",
    "read_scdeepcluster_h5",
    "synthetic_counts",
    "synthetic_perturbation",
]
