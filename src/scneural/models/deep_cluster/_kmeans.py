"""Initial cluster centres of the DEC phase: k-means in Euclidean or cosine geometry, or the
latent means of given start clusters."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

Geometry = Literal["euclidean", "cosine"]
GEOMETRIES = ("euclidean", "cosine")


def check_geometry(init: str) -> None:
    """Raise a ``ValueError`` naming the ``init`` argument unless it is a known geometry."""
    if init not in GEOMETRIES:
        raise ValueError(
            f"init must be one of {GEOMETRIES} (the geometry of the initial k-means), got {init!r}"
        )


def kmeans_init(
    latent: np.ndarray,
    n_clusters: int,
    *,
    geometry: Geometry = "euclidean",
    n_init: int = 20,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means on the latent space: the initial cluster centres of the DEC phase.

    ``"euclidean"`` runs k-means on the latent codes (the authors' choice). ``"cosine"`` runs
    it on the codes scaled to unit length (spherical k-means), so cells group by the
    direction of their code and not its length.

    The centres live in the raw latent space, where the Student-t kernel of DEC measures
    distances: the k-means centres for ``"euclidean"``, the means of each cluster's raw codes
    for ``"cosine"``.

    Returns
    -------
    centres
        ``(n_clusters, n_latent)`` float32.
    labels
        k-means label of every cell.
    """
    from sklearn.cluster import KMeans

    check_geometry(geometry)
    latent = np.asarray(latent)
    kmeans = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=random_state)
    if geometry == "euclidean":
        kmeans.fit(latent)
        return np.asarray(kmeans.cluster_centers_, dtype=np.float32), kmeans.labels_
    norms = np.linalg.norm(latent, axis=1, keepdims=True)
    labels = kmeans.fit_predict(latent / np.clip(norms, 1e-12, None))
    return cluster_means(latent, labels, n_clusters).astype(np.float32), labels


def cluster_means(latent: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """The mean code of each cluster ``0 .. n_clusters - 1`` (a cell labelled ``-1`` is in
    none)."""
    return np.stack([latent[labels == c].mean(axis=0) for c in range(n_clusters)])


def check_start_labels(
    start_labels: Any, n_cells: int, n_clusters: int | None = None
) -> tuple[np.ndarray, int]:
    """Validate start clusters given as integer codes, one per cell.

    Parameters
    ----------
    start_labels
        Code of each cell's start cluster, ``0`` to ``k - 1``; ``-1`` for a cell without one
        (e.g. ``pandas.Categorical(labels).codes``).
    n_cells
        Number of cells the codes must cover.
    n_clusters
        The number of clusters asked for, if any: it must be ``k``.

    Returns
    -------
    codes
        The codes as a 1-D int64 array.
    k
        Number of start clusters.

    Raises
    ------
    ValueError
        If the codes are not one integer per cell, lie outside ``-1 .. k - 1``, leave a
        cluster without cells, hold fewer than 2 clusters, or ``n_clusters`` is not ``k``.
    """
    codes = np.asarray(start_labels)
    if codes.ndim != 1 or len(codes) != n_cells:
        raise ValueError(
            f"start_labels has shape {codes.shape}, but there are {n_cells} cells; give one "
            "code per cell (-1 for a cell without a start cluster)"
        )
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(
            f"start_labels must be integer cluster codes 0..k-1 (-1: none), got dtype "
            f"{codes.dtype}; e.g. pandas.Categorical(labels).codes"
        )
    codes = codes.astype(np.int64)
    if codes.size == 0 or codes.min() < -1:
        raise ValueError("start_labels must be codes 0..k-1, with -1 for a cell without one")
    k = int(codes.max()) + 1
    if k < 2:
        raise ValueError(
            f"start_labels holds {k} start cluster(s); DEC needs at least 2 to start from"
        )
    empty = np.flatnonzero(np.bincount(codes[codes >= 0], minlength=k) == 0)
    if len(empty):
        raise ValueError(
            f"start_labels has no cell in cluster(s) {empty.tolist()[:10]}; number the start "
            "clusters 0..k-1 without gaps (e.g. pandas.Categorical(labels)"
            ".remove_unused_categories().codes)"
        )
    if n_clusters is not None and n_clusters != k:
        raise ValueError(
            f"n_clusters={n_clusters}, but start_labels holds {k} start clusters; leave "
            "n_clusters out (it is taken from the start clusters)"
        )
    return codes, k


def start_label_centres(
    latent: np.ndarray, codes: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The DEC phase's initial centres from start clusters: the mean code of each.

    Cells with code ``-1`` add nothing to the means. Returns the centres (``(k, n_latent)``
    float32) and each cell's nearest centre, the partition DEC starts from (the Student-t
    kernel assigns every cell to its nearest centre).
    """
    from sklearn.metrics import pairwise_distances_argmin

    latent = np.asarray(latent, dtype=np.float64)
    centres = cluster_means(latent, codes, k)
    return centres.astype(np.float32), pairwise_distances_argmin(latent, centres)
