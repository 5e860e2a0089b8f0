"""Synthetic count data with known structure, for tests and examples."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse


def synthetic_counts(
    n_obs: int = 600,
    n_vars: int = 200,
    *,
    n_groups: int = 3,
    n_batches: int = 1,
    markers_per_group: int = 15,
    fold_change: float = 4.0,
    batch_effect: float = 1.5,
    dispersion: float = 5.0,
    seed: int = 0,
) -> ad.AnnData:
    """Negative-binomial counts where each group over-expresses its own marker genes.

    Parameters
    ----------
    n_obs, n_vars
        Cells and genes.
    n_groups
        Number of groups (``obs['group']``: ``"g0"``, ``"g1"``, ...).
    n_batches
        Number of batches (``obs['batch']``); each scales a random half of the genes.
    markers_per_group
        Genes over-expressed by each group.
    fold_change
        Mean fold change of a group's markers.
    batch_effect
        Fold change of the genes a batch scales.
    dispersion
        Negative-binomial inverse dispersion (larger: closer to Poisson).
    seed
        Random seed.

    Returns
    -------
    AnnData with integer counts in ``X`` (CSR, float32) and ``layers['counts']``,
    ``obs['group']``, ``obs['batch']`` (categorical) and ``var['marker_of']``.
    """
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, size=n_obs)
    batches = rng.integers(0, n_batches, size=n_obs)
    base = rng.gamma(shape=2.0, scale=0.5, size=n_vars)
    marker_of = np.full(n_vars, "", dtype=object)
    mean = np.tile(base, (n_obs, 1))
    for g in range(n_groups):
        genes = np.arange(g * markers_per_group, (g + 1) * markers_per_group) % n_vars
        marker_of[genes] = f"g{g}"
        mean[np.ix_(groups == g, genes)] *= fold_change
    for b in range(1, n_batches):
        genes = rng.choice(n_vars, size=n_vars // 2, replace=False)
        mean[np.ix_(batches == b, genes)] *= batch_effect
    library = rng.lognormal(mean=0.0, sigma=0.3, size=(n_obs, 1))
    mean = mean * library
    p = dispersion / (dispersion + mean)
    counts = rng.negative_binomial(dispersion, p).astype(np.float32)
    adata = ad.AnnData(
        X=sparse.csr_matrix(counts),
        obs=pd.DataFrame(
            {
                "group": pd.Categorical([f"g{g}" for g in groups]),
                "batch": pd.Categorical([f"b{b}" for b in batches]),
            },
            index=[f"cell{i}" for i in range(n_obs)],
        ),
        var=pd.DataFrame({"marker_of": marker_of}, index=[f"gene{j}" for j in range(n_vars)]),
    )
    adata.layers["counts"] = adata.X.copy()
    return adata


def synthetic_perturbation(
    n_obs: int = 800,
    n_vars: int = 200,
    *,
    n_types: int = 4,
    markers_per_type: int = 15,
    response_genes: int = 20,
    fold_change: float = 4.0,
    response_fold_change: float = 5.0,
    mean_count: float = 5.0,
    dispersion: float = 5.0,
    seed: int = 0,
) -> ad.AnnData:
    """Negative-binomial counts of cell types under control and a perturbation.

    Each type over-expresses its own markers; perturbed cells of every type multiply
    the means of the same ``response_genes`` genes by ``response_fold_change``, so the
    true response of a held-out type is known.

    Parameters
    ----------
    n_obs, n_vars
        Cells and genes; about half of the cells are perturbed.
    n_types
        Number of cell types (``obs['cell_type']``: ``"t0"``, ``"t1"``, ...).
    markers_per_type
        Genes over-expressed by each type.
    response_genes
        Genes that respond to the perturbation (the last ``response_genes`` genes).
    fold_change
        Mean fold change of a type's markers.
    response_fold_change
        Mean fold change of the response genes in perturbed cells.
    mean_count
        Average count of a gene before marker and response fold changes.
    dispersion
        Negative-binomial inverse dispersion (larger: closer to Poisson).
    seed
        Random seed.

    Returns
    -------
    AnnData with integer counts in ``X`` (CSR, float32), ``obs['cell_type']``
    (``"t0"``, ``"t1"``, ...) and ``obs['condition']`` (``"control"``/``"stimulated"``),
    both categorical, and ``var['response']`` (bool: whether a gene responds to the
    perturbation). Unlike :func:`synthetic_counts` there is no ``layers['counts']``.
    """
    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, size=n_obs)
    stimulated = rng.random(n_obs) < 0.5
    base = rng.gamma(shape=2.0, scale=mean_count / 2.0, size=n_vars)
    mean = np.tile(base, (n_obs, 1))
    for t in range(n_types):
        genes = np.arange(t * markers_per_type, (t + 1) * markers_per_type) % n_vars
        mean[np.ix_(types == t, genes)] *= fold_change
    response = np.zeros(n_vars, dtype=bool)
    response[n_vars - response_genes :] = True
    mean[np.ix_(stimulated, response)] *= response_fold_change
    mean = mean * rng.lognormal(mean=0.0, sigma=0.3, size=(n_obs, 1))
    p = dispersion / (dispersion + mean)
    counts = rng.negative_binomial(dispersion, p).astype(np.float32)
    return ad.AnnData(
        X=sparse.csr_matrix(counts),
        obs=pd.DataFrame(
            {
                "cell_type": pd.Categorical([f"t{t}" for t in types]),
                "condition": pd.Categorical(np.where(stimulated, "stimulated", "control")),
            },
            index=[f"cell{i}" for i in range(n_obs)],
        ),
        var=pd.DataFrame({"response": response}, index=[f"gene{j}" for j in range(n_vars)]),
    )
